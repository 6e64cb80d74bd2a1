"""Structured logging setup (twisted.logger), with phone numbers masked."""
from __future__ import annotations

import sys
from typing import IO

from constantly import NamedConstant
from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    formatEventAsClassicLogText,
    globalLogBeginner,
    jsonFileLogObserver,
)

from .masking import mask_text

#: the lowest level ``start_logging`` writes; ``None`` until logging starts
#: (Twisted keeps every event from before that in its start-up buffer)
_min_level: NamedConstant | None = None


def enabled(level: NamedConstant) -> bool:
    """Whether an event at ``level`` would be written.

    For hot paths (every call) to skip building an event, and its arguments,
    that the level filter would only drop. Masking is untouched: it happens
    when an event is written.
    """
    return _min_level is None or level >= _min_level


def _text_observer(stream: IO[str]):
    def observe(event) -> None:
        text = formatEventAsClassicLogText(event)
        if text:
            stream.write(mask_text(text))
            stream.flush()

    return observe


def start_logging(level: str = "info", fmt: str = "text", stream: IO[str] | None = None) -> None:
    stream = stream or sys.stdout
    observer = jsonFileLogObserver(stream) if fmt == "json" else _text_observer(stream)
    global _min_level
    min_level = LogLevel.levelWithName(level.lower())
    predicate = LogLevelFilterPredicate(defaultLogLevel=min_level)
    globalLogBeginner.beginLoggingTo([FilteringLogObserver(observer, [predicate])], redirectStandardIO=False)
    _min_level = min_level
