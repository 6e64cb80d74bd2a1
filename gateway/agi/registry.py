"""AGI script name → handler, registered explicitly (no import side effects)."""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator

from .session import AgiSession

__all__ = ["DuplicateScript", "Handler", "ScriptRegistry"]

Handler = Callable[[AgiSession], Awaitable[None]]


class DuplicateScript(ValueError):
    """Two handlers for one script name: refused at start-up, not mid-call."""


class ScriptRegistry:
    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def register(self, name: str, handler: Handler) -> None:
        key = name.strip("/")
        if not key:
            raise ValueError("AGI script name may not be empty")
        if key in self._handlers:
            raise DuplicateScript(f"AGI script {key!r} is already registered")
        self._handlers[key] = handler

    def get(self, name: str) -> Handler | None:
        return self._handlers.get(name.strip("/"))

    def __contains__(self, name: str) -> bool:
        return name.strip("/") in self._handlers

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._handlers))
