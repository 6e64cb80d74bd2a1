"""WAV reading and explicit resampling (pure, no Vosk)."""
import wave

import numpy as np
import pytest

from asr.audio import AudioError, StreamResampler, parse_sample_frequency, read_wav, resample


def _write(path, samples, rate=8000, channels=1, width=2):
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(channels)
        handle.setsampwidth(width)
        handle.setframerate(rate)
        handle.writeframes(samples)


def _tone(rate, seconds=1.0, freq=440.0):
    t = np.arange(int(rate * seconds)) / rate
    return (np.sin(2 * np.pi * freq * t) * 8000).astype("<i2")


@pytest.mark.parametrize("text, expected", [
    ("--use-energy=false\n--sample-frequency=8000\n", 8000),
    ("--sample-frequency = 16000.0\n", 16000),
    ("--use-energy=false\n--num-mel-bins=40\n", 16000),  # Kaldi's default
    ("--sample-frequency=8000\n--sample-frequency=16000\n", 16000),  # last wins, as in Kaldi
])
def test_sample_frequency_from_mfcc_conf(text, expected):
    assert parse_sample_frequency(text) == expected


def test_8khz_mono_wav_is_read_as_is(tmp_path):
    tone = _tone(8000)
    _write(tmp_path / "a.wav", tone.tobytes())
    audio = read_wav(tmp_path / "a.wav")
    assert audio.rate == 8000 and audio.duration == pytest.approx(1.0)
    assert audio.pcm == tone.tobytes()


def test_stereo_is_mixed_down_and_8bit_widened(tmp_path):
    tone = _tone(8000, 0.5)
    _write(tmp_path / "s.wav", np.repeat(tone, 2).tobytes(), channels=2)
    assert read_wav(tmp_path / "s.wav").pcm == tone.tobytes()
    _write(tmp_path / "u8.wav", bytes([128, 255, 0]), width=1)
    assert np.frombuffer(read_wav(tmp_path / "u8.wav").pcm, "<i2").tolist() == [0, 127 << 8, -128 << 8]


def test_missing_and_corrupt_files_are_audio_errors(tmp_path):
    with pytest.raises(AudioError, match="does not exist"):
        read_wav(tmp_path / "none.wav")
    (tmp_path / "bad.wav").write_bytes(b"RIFF....garbage")
    with pytest.raises(AudioError, match="not a PCM WAV"):
        read_wav(tmp_path / "bad.wav")


def test_resampling_8k_to_16k_doubles_the_samples_and_keeps_the_tone():
    tone = _tone(8000, 1.0, 440.0)
    up = np.frombuffer(resample(tone.tobytes(), 8000, 16000), "<i2")
    assert len(up) == 16000
    spectrum = np.abs(np.fft.rfft(up.astype(float)))
    assert np.argmax(spectrum) * 16000 / len(up) == pytest.approx(440.0, abs=2.0)
    assert resample(tone.tobytes(), 16000, 16000) == tone.tobytes()


def test_stream_resampler_matches_batch_length_with_odd_chunks():
    tone = _tone(8000, 1.0).tobytes()
    stream = StreamResampler(8000, 16000)
    out = b"".join(stream.feed(tone[i:i + 333]) for i in range(0, len(tone), 333)) + stream.flush()
    assert len(out) % 2 == 0
    assert abs(len(out) // 2 - 16000) <= 2
