"""Vosk engine: one ``Model`` per process, one recognizer per stream.

Batch (``transcribe_file``/``transcribe_pcm``) and streaming (``open_stream`` →
``feed`` partial/segment results → ``finish``) share one decoding path. Word
times and confidences are kept. A grammar (a list of phrases) restricts the
recognizer to those words plus ``[unk]`` — for spoken menus and yes/no.

Nothing here touches Twisted: the worker runs these blocking calls in its
decoding thread.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .audio import Audio, StreamResampler, model_sample_rate, read_wav

__all__ = ["Cancelled", "EngineError", "Transcript", "VoskEngine", "Word", "parse_result"]

#: audio fed to the recognizer per call in batch mode (seconds): small enough to stop promptly
BATCH_CHUNK_SECONDS = 0.5
UNK = "[unk]"


class EngineError(RuntimeError):
    """The model cannot be loaded or a grammar is unusable."""


class Cancelled(Exception):
    """Decoding was stopped on request (the worker is shutting down)."""


@dataclass(frozen=True)
class Word:
    word: str
    start: float
    end: float
    conf: float

    def as_dict(self) -> dict:
        return {"word": self.word, "start": self.start, "end": self.end, "conf": self.conf}


@dataclass(frozen=True)
class Transcript:
    text: str
    words: tuple[Word, ...] = ()
    #: audio duration in seconds (at the input rate)
    duration: float = 0.0
    #: wall-clock seconds spent decoding
    elapsed: float = 0.0
    sample_rate: int = 0
    grammar: tuple[str, ...] | None = None

    @property
    def confidence(self) -> float:
        """Duration-weighted mean word confidence (0.0 when nothing was recognised)."""
        if not self.words:
            return 0.0
        weights = [max(w.end - w.start, 0.01) for w in self.words]
        return sum(w.conf * k for w, k in zip(self.words, weights)) / sum(weights)

    @property
    def real_time_factor(self) -> float:
        return self.elapsed / self.duration if self.duration > 0 else 0.0

    def as_dict(self) -> dict:
        return {
            "text": self.text,
            "confidence": round(self.confidence, 4),
            "words": [w.as_dict() for w in self.words],
            "duration": round(self.duration, 3),
            "elapsed": round(self.elapsed, 3),
            "real_time_factor": round(self.real_time_factor, 4),
            "sample_rate": self.sample_rate,
        }


def parse_result(raw: str) -> tuple[str, list[Word]]:
    """A Vosk ``Result()``/``FinalResult()`` JSON → (text, words)."""
    data = json.loads(raw or "{}")
    words = [
        Word(str(item["word"]), float(item["start"]), float(item["end"]), min(max(float(item.get("conf", 1.0)), 0.0), 1.0))
        for item in data.get("result", ())
    ]
    text = str(data.get("text", "")).strip()
    return text, words


@dataclass
class StreamEvent:
    """What one ``feed`` produced: a finished segment (endpoint reached) or a partial hypothesis."""

    partial: str = ""
    segment: str | None = None
    words: list[Word] = field(default_factory=list)


class RecognizerStream:
    """One recognizer over one audio stream (never shared between streams or threads)."""

    def __init__(self, engine: "VoskEngine", input_rate: int, grammar: Sequence[str] | None) -> None:
        self._engine = engine
        self.input_rate = input_rate
        self.grammar = tuple(grammar) if grammar is not None else None
        self._recognizer = engine.new_recognizer(self.grammar)
        self._resampler = StreamResampler(input_rate, engine.sample_rate)
        self._texts: list[str] = []
        self._words: list[Word] = []
        self._bytes_in = 0
        self._elapsed = 0.0
        self._closed = False

    def _accept(self, pcm: bytes) -> StreamEvent:
        if not pcm:
            return StreamEvent(partial=self._partial())
        started = time.perf_counter()
        ended = self._recognizer.AcceptWaveform(pcm)
        if ended:
            text, words = parse_result(self._recognizer.Result())
            event = StreamEvent(segment=text, words=words)
            self._collect(text, words)
        else:
            event = StreamEvent(partial=self._partial())
        self._elapsed += time.perf_counter() - started
        return event

    def _partial(self) -> str:
        return str(json.loads(self._recognizer.PartialResult() or "{}").get("partial", ""))

    def _collect(self, text: str, words: list[Word]) -> None:
        if text:
            self._texts.append(text)
        self._words.extend(words)

    def feed(self, chunk: bytes) -> StreamEvent:
        """Feed 16-bit mono PCM at ``input_rate``; returns the partial or the finished segment."""
        if self._closed:
            raise EngineError("stream already finished")
        self._bytes_in += len(chunk)
        started = time.perf_counter()
        pcm = self._resampler.feed(chunk)
        self._elapsed += time.perf_counter() - started
        return self._accept(pcm)

    def finish(self) -> Transcript:
        """Flush and return the whole transcript (every segment, words with absolute times)."""
        if not self._closed:
            started = time.perf_counter()
            tail = self._resampler.flush()
            if tail:
                self._recognizer.AcceptWaveform(tail)
            text, words = parse_result(self._recognizer.FinalResult())
            self._collect(text, words)
            self._elapsed += time.perf_counter() - started
            self._closed = True
            self._recognizer = None  # free the decoder now: long-running workers must not grow
        return Transcript(
            text=" ".join(self._texts),
            words=tuple(self._words),
            duration=self._bytes_in / 2 / self.input_rate,
            elapsed=self._elapsed,
            sample_rate=self._engine.sample_rate,
            grammar=self.grammar,
        )


class VoskEngine:
    """Loads the model once; hands out a fresh recognizer per stream."""

    def __init__(self, model_path: str | Path, vosk_module=None) -> None:
        path = Path(model_path)
        if not str(model_path) or not (path / "am").is_dir() and not (path / "final.mdl").exists():
            raise EngineError(
                f"no Vosk model at {model_path!r}: set asr.model_path (HOTLINE_ASR_MODEL_PATH) to an "
                "unpacked model directory, e.g. after `hotline-asr model fetch cn`"
            )
        if vosk_module is None:
            import vosk as vosk_module
            vosk_module.SetLogLevel(-1)
        self._vosk = vosk_module
        self.model_path = str(path)
        self.sample_rate = model_sample_rate(path)
        started = time.perf_counter()
        try:
            self.model = vosk_module.Model(str(path))
        except Exception as exc:  # vosk raises a bare Exception on a bad model directory
            raise EngineError(f"cannot load the Vosk model at {path}: {exc}") from exc
        self.load_seconds = time.perf_counter() - started

    # -- grammar ---------------------------------------------------------------
    def known(self, word: str) -> bool:
        return self.model.vosk_model_find_word(word) >= 0

    def check_grammar(self, phrases: Iterable[str]) -> tuple[str, ...]:
        """The phrases whose every word is in the model's vocabulary, plus ``[unk]`` if the model has it.

        Raises ``EngineError`` when none is usable (Vosk would then recognise nothing).
        """
        usable = [p.strip() for p in phrases if p.strip() and p.strip() != UNK
                  and all(self.known(w) for w in p.split())]
        if not usable:
            raise EngineError("no grammar phrase is in the model's vocabulary")
        return (*usable, UNK) if self.known(UNK) else tuple(usable)

    def new_recognizer(self, grammar: Sequence[str] | None = None):
        rate = float(self.sample_rate)
        if grammar is None:
            recognizer = self._vosk.KaldiRecognizer(self.model, rate)
        else:
            # Vosk reads the grammar bytes as-is: \\u escapes would not match the vocabulary
            recognizer = self._vosk.KaldiRecognizer(self.model, rate, json.dumps(list(grammar), ensure_ascii=False))
        recognizer.SetWords(True)
        return recognizer

    # -- streaming & batch -----------------------------------------------------
    def open_stream(self, input_rate: int, grammar: Sequence[str] | None = None) -> RecognizerStream:
        checked = self.check_grammar(grammar) if grammar is not None else None
        return RecognizerStream(self, input_rate, checked)

    def transcribe_pcm(self, audio: Audio, grammar: Sequence[str] | None = None,
                       should_stop: Callable[[], bool] | None = None) -> Transcript:
        stream = self.open_stream(audio.rate, grammar)
        step = max(int(audio.rate * BATCH_CHUNK_SECONDS) * 2, 2)
        for offset in range(0, len(audio.pcm), step):
            if should_stop is not None and should_stop():
                raise Cancelled()
            stream.feed(audio.pcm[offset:offset + step])
        return stream.finish()

    def transcribe_file(self, path: str | Path, grammar: Sequence[str] | None = None,
                        should_stop: Callable[[], bool] | None = None) -> Transcript:
        return self.transcribe_pcm(read_wav(path), grammar, should_stop)
