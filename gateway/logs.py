"""Structured logging setup (twisted.logger), with phone numbers masked."""
from __future__ import annotations

import sys
from typing import IO

from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    formatEventAsClassicLogText,
    globalLogBeginner,
    jsonFileLogObserver,
)

from .masking import mask_text


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
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.levelWithName(level.lower()))
    globalLogBeginner.beginLoggingTo([FilteringLogObserver(observer, [predicate])], redirectStandardIO=False)
