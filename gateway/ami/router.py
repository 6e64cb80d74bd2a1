"""Event routing: AMI event name → handlers, with every handler isolated.

The subscription table itself (which events the gateway consumes and who
handles them) is built in one place by the consumer — see
:func:`gateway.monitor.events.subscription_table`. The same table yields the
``manager.conf`` event filter (:func:`eventfilter_lines`), so what Asterisk
sends and what the gateway handles cannot drift apart.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from twisted.logger import Logger

from .codec import AmiMessage

__all__ = ["EventRouter", "Handler", "eventfilter_lines"]

log = Logger()

Handler = Callable[[AmiMessage], None]


class EventRouter:
    """Calls the handlers subscribed to an event's name; ignores the rest.

    A handler that raises is logged and counted (``on_error``); the other
    handlers of the event still run and the connection stays up.
    """

    def __init__(
        self,
        table: Mapping[str, Handler | Iterable[Handler]] | None = None,
        on_event: Callable[[], None] | None = None,
        on_error: Callable[[], None] | None = None,
    ) -> None:
        self._handlers: dict[str, list[Handler]] = {}
        self._on_event = on_event
        self._on_error = on_error
        for name, handlers in (table or {}).items():
            for handler in [handlers] if callable(handlers) else handlers:
                self.subscribe(name, handler)

    def subscribe(self, name: str, handler: Handler) -> None:
        if not name or any(ch in name for ch in ",()\r\n"):
            raise ValueError(f"not an AMI event name: {name!r}")
        self._handlers.setdefault(name, []).append(handler)

    def names(self) -> frozenset[str]:
        return frozenset(self._handlers)

    def dispatch(self, message: AmiMessage) -> None:
        handlers = self._handlers.get(message.name)
        if not handlers:
            return
        if self._on_event is not None:
            self._on_event()
        for handler in handlers:
            try:
                handler(message)
            except Exception:  # one bad handler or odd event must not stop the others
                if self._on_error is not None:
                    self._on_error()
                log.failure("AMI handler {handler!r} failed on {event}", handler=handler, event=message.name)


def eventfilter_lines(names: Iterable[str], user_events: Iterable[str] = ("HotlinePath",)) -> list[str]:
    """``manager.conf`` advanced event filters (Asterisk ≥ 22.1) for ``names``.

    A ``UserEvent`` subscription is narrowed to the ``user_events`` names (one
    include line each; include filters are OR-ed). The AMI ``Filter`` action
    would set these per session, but it needs the ``system`` write class, which
    the gateway's least-privilege user does not hold; ``eventfilter`` lines in
    the user's ``manager.conf`` section need no privilege at all. Replies to
    actions (QueueStatus lists …) are written straight to the session and are
    not filtered.
    """
    lines = []
    for name in sorted(set(names)):
        if name == "UserEvent":
            for user_event in sorted(set(user_events)):
                lines.append(
                    f"eventfilter(action(include),name(UserEvent),header(UserEvent),method(exact)) = {user_event}"
                )
        else:
            lines.append(f"eventfilter(action(include),name({name})) =")
    return lines
