"""WAV reading and explicit resampling of telephone audio to the model's rate.

Asterisk records voice messages as 8 kHz, 16-bit mono WAV; small Vosk models are
16 kHz models. Vosk would resample internally if asked, but we do it here, once,
with soxr (high quality), so the model always sees audio at the rate its
features were trained on and the conversion is visible and testable.
"""
from __future__ import annotations

import re
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

__all__ = ["Audio", "AudioError", "StreamResampler", "model_sample_rate", "parse_sample_frequency",
           "read_wav", "resample"]

#: Kaldi's default --sample-frequency when a model's mfcc.conf does not set one
KALDI_DEFAULT_RATE = 16000
_FREQ = re.compile(r"^\s*--sample-frequency\s*=\s*([0-9.]+)\s*$", re.MULTILINE)


class AudioError(ValueError):
    """The audio is missing, unreadable or in a format we do not take."""


@dataclass(frozen=True)
class Audio:
    pcm: bytes  # signed 16-bit little-endian mono
    rate: int

    @property
    def duration(self) -> float:
        return len(self.pcm) / 2 / self.rate if self.rate else 0.0


def parse_sample_frequency(conf_text: str, default: int = KALDI_DEFAULT_RATE) -> int:
    """The ``--sample-frequency`` of a Kaldi mfcc.conf text (the last one wins), else ``default``."""
    found = _FREQ.findall(conf_text)
    return int(float(found[-1])) if found else default


def model_sample_rate(model_path: str | Path) -> int:
    """The rate a Vosk model's features expect, read from ``conf/mfcc.conf``."""
    conf = Path(model_path) / "conf" / "mfcc.conf"
    try:
        return parse_sample_frequency(conf.read_text())
    except FileNotFoundError:
        return KALDI_DEFAULT_RATE


def read_wav(path: str | Path) -> Audio:
    """A PCM WAV file as 16-bit mono (channels averaged; 8-bit and 32-bit samples converted)."""
    try:
        with wave.open(str(path), "rb") as handle:
            channels, width, rate = handle.getnchannels(), handle.getsampwidth(), handle.getframerate()
            frames = handle.readframes(handle.getnframes())
    except FileNotFoundError:
        raise AudioError(f"recording {path} does not exist") from None
    except (wave.Error, EOFError, RuntimeError) as exc:  # RuntimeError: wave's word for a chunk size past the chunk
        why = str(exc) or ("cut short" if isinstance(exc, EOFError) else "a chunk size that does not fit the file")
        raise AudioError(f"recording {path} is not a PCM WAV file: {why}") from None
    except OSError as exc:
        raise AudioError(f"recording {path} cannot be read: {exc.strerror or exc}") from None
    if rate <= 0 or channels <= 0:
        raise AudioError(f"recording {path}: bad header (rate {rate}, channels {channels})")
    frames = frames[: len(frames) - len(frames) % width]  # a recording cut mid-sample: its whole samples
    if width == 2:
        samples = np.frombuffer(frames, dtype="<i2")
    elif width == 1:
        samples = ((np.frombuffer(frames, dtype=np.uint8).astype(np.int16) - 128) << 8).astype("<i2")
    elif width == 4:
        samples = (np.frombuffer(frames, dtype="<i4") >> 16).astype("<i2")
    else:
        raise AudioError(f"recording {path}: {8 * width}-bit samples are not supported")
    usable = len(samples) - len(samples) % channels
    if channels > 1:
        samples = samples[:usable].reshape(-1, channels).mean(axis=1).astype("<i2")
    return Audio(samples.tobytes(), rate)


def resample(pcm: bytes, from_rate: int, to_rate: int) -> bytes:
    """16-bit mono PCM converted from ``from_rate`` to ``to_rate`` (unchanged when equal)."""
    if from_rate == to_rate or not pcm:
        return pcm
    samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2")
    return soxr.resample(samples, from_rate, to_rate, quality="HQ").astype("<i2").tobytes()


class StreamResampler:
    """Chunk-by-chunk resampling for streams (keeps filter state and odd bytes between chunks)."""

    def __init__(self, from_rate: int, to_rate: int) -> None:
        self.from_rate, self.to_rate = from_rate, to_rate
        self._carry = b""
        self._stream = None if from_rate == to_rate else soxr.ResampleStream(
            from_rate, to_rate, 1, dtype="int16", quality="HQ")

    def feed(self, chunk: bytes, last: bool = False) -> bytes:
        data = self._carry + chunk
        cut = len(data) - len(data) % 2
        data, self._carry = data[:cut], data[cut:]
        if self._stream is None:
            return data
        samples = np.frombuffer(data, dtype="<i2")
        return self._stream.resample_chunk(samples, last=last).astype("<i2").tobytes()

    def flush(self) -> bytes:
        return self.feed(b"", last=True)
