"""Fuzzing recordings: RIFF/WAVE headers mutated, truncated or random, read with ``asr.audio.read_wav``.

A file is 16-bit mono PCM at a positive rate, or :class:`AudioError` with a message — never numpy's or the
wave module's own exceptions.
"""
from __future__ import annotations

import io
import struct
import wave

from hypothesis import example, given, settings
from hypothesis import strategies as st

from asr.audio import Audio, AudioError, read_wav

from .support import mutated, parse_or_reject, written


def _wav(channels: int, width: int, rate: int, frames: bytes) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as handle:
        handle.setnchannels(channels)
        handle.setsampwidth(width)
        handle.setframerate(rate)
        handle.writeframes(frames)
    return out.getvalue()


WAVS = st.builds(_wav, st.integers(1, 3), st.integers(1, 4), st.sampled_from([8000, 16000, 44100, 1]),
                 st.binary(max_size=64))
#: little-endian fields a header holds, dropped in at random offsets of the first 44 bytes
_FIELDS = [struct.pack("<I", n) for n in (0, 1, 3, 0xFFFF, 0xFFFFFFFF, 0xFFFE)] + [
    struct.pack("<H", n) for n in (0, 1, 2, 3, 5, 0xFFFE, 0xFFFF)] + [b"RIFF", b"WAVE", b"fmt ", b"data", b"LIST"]


@st.composite
def headers_overwritten(draw) -> bytes:
    data = bytearray(draw(WAVS))
    for _ in range(draw(st.integers(1, 3))):
        field = draw(st.sampled_from(_FIELDS))
        at = draw(st.integers(0, 44 - len(field)))
        data[at : at + len(field)] = field
    return bytes(data)


RECORDINGS = st.one_of(WAVS, headers_overwritten(), mutated(WAVS, tokens=_FIELDS),
                       WAVS.flatmap(lambda data: st.integers(0, len(data)).map(lambda n: data[:n])),
                       st.binary(max_size=80), st.binary(max_size=60).map(lambda b: b"RIFF" + b[:4] + b"WAVE" + b))


@settings(max_examples=300, deadline=None)
@given(RECORDINGS)
@example(_wav(1, 2, 8000, b"\x01\x02" * 10)[:-1])  # a recording cut mid-sample: numpy's ValueError
@example(b"RIFF\x00\x00\x00\x01WAVE" + b"\x00" * 23 + b"\x01")  # a chunk size past its chunk: wave's RuntimeError
def test_a_recording_is_pcm_or_an_audio_error(data):
    with written(data, ".wav") as path:
        audio, _ = parse_or_reject("wav", AudioError, read_wav, path, hide=[str(path)])
    if audio is not None:
        assert isinstance(audio, Audio) and audio.rate > 0 and len(audio.pcm) % 2 == 0 and audio.duration >= 0
