"""What runs after every AMI (re)connect: snapshots and the queue_log replay.

Order matters, so that nothing is missed and nothing is counted twice:

1. take the model's *mark* (live events after it are newer than any snapshot);
2. ``QueueStatus`` → members and waiting callers (new callers: offered once);
3. ``PJSIPShowRegistrationsOutbound`` → which registration is which trunk;
   then each trunk's contacts, reachability and qualify RTT (``Getvar`` of
   ``PJSIP_ENDPOINT``/``PJSIP_AOR``/``PJSIP_CONTACT``): Asterisk sends
   ContactStatus only when a contact's state *changes*, so without this a
   (re)connected gateway would not know the trunk's reachability until the
   next change. (``PJSIPShowContacts`` would need the ``system`` class.)
4. ``CoreShowChannels`` → the live channels (kept, applied in step 6);
5. after a *re*connect: replay queue_log from the last event seen before the
   loss (minus a margin: queue_log has whole seconds) — it settles the calls
   that were answered or abandoned while we were away;
6. apply the channel snapshot: a call whose channel is gone and that the
   replay did not settle is closed (abandoned if Asterisk had reported it so,
   otherwise "untracked", never guessed) — unless the replay failed: then the
   calls stay open for the next resync's replay.

Each step that fails is logged and skipped; the others still run.

A fresh process starts its counters at zero and Prometheus treats that as a
reset, so replaying history the previous process had counted would count those
calls twice. Before the first resync of a process, the previous process's
checkpoint (:mod:`.checkpoint`, ``restore``) is read: the calls it left open are
adopted without being counted again, the calls it had just finished are
remembered, and step 5 replays queue_log from its position — so the calls
that ended while no gateway was running are counted, once. With no checkpoint
(first start ever, or Redis unreadable) nothing is replayed on the first
connection.

While a session lives, ``QueueStatus`` and ``CoreShowChannels`` are asked
again every ``refresh_interval`` seconds: Asterisk drops events for a consumer
that is slow to read (manager.conf ``writetimeout``) without closing the
session. A lost QueueCallerLeave must not keep a "waiting" caller — and the
longest-wait alert — forever: the waiting list and the members are corrected
(nothing counted). A lost Hangup must not keep a call open forever either: a
call whose channel is missing from two lists in a row, with no event about it
in between, is closed — abandoned if Asterisk had reported it so, otherwise
counted as untracked (see ``HotlineState.reconcile_channels``).
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol as TypingProtocol

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from ..ami.client import ActionSender
from ..ami.codec import AmiMessage
from .checkpoint import Checkpoint
from .model import HotlineState, MemberSnapshot, QueueSnapshot, Registration, WaitingEntry
from .queue_log import parse_lines, replay

__all__ = ["Resync", "channel_snapshot", "queue_snapshots", "registrations"]

log = Logger()

ReadQueueLog = Callable[[float], Awaitable[list[str]]]
#: reads the previous process's checkpoint (None: none); must not fail
Restore = Callable[[], Awaitable[Checkpoint | None]]


class ResyncObserver(TypingProtocol):
    def resynced(self, outcome: str) -> None: ...

    def replayed(self, entries: int) -> None: ...


def _int(value: str, default: int = 0) -> int:
    try:
        return int(value)
    except ValueError:
        return default


def queue_snapshots(messages: Iterable[AmiMessage]) -> list[QueueSnapshot]:
    """QueueStatus reply (QueueParams, QueueMember, QueueEntry events) → one snapshot per queue."""
    members: dict[str, list[MemberSnapshot]] = {}
    entries: dict[str, list[WaitingEntry]] = {}
    order: list[str] = []

    def queue_of(message: AmiMessage) -> str:
        name = message.get("Queue")
        if name and name not in members:
            members[name], entries[name] = [], []
            order.append(name)
        return name

    for m in messages:
        if m.name == "QueueParams":
            queue_of(m)
        elif m.name == "QueueMember" and queue_of(m):
            interface = m.get("Location") or m.get("Interface") or m.get("StateInterface")
            if interface:
                members[m.get("Queue")].append(
                    MemberSnapshot(
                        interface,
                        m.get("Name") or m.get("MemberName") or interface,
                        _int(m.get("Status")),
                        m.get("Paused") == "1",
                        m.get("InCall") == "1",
                    )
                )
        elif m.name == "QueueEntry" and queue_of(m) and m.get("Uniqueid"):
            entries[m.get("Queue")].append(
                WaitingEntry(m.get("Uniqueid"), _int(m.get("Position")), float(_int(m.get("Wait"))),
                             caller=m.get("CallerIDNum"))
            )
    return [QueueSnapshot(name, tuple(members[name]), tuple(entries[name])) for name in order]


def channel_snapshot(messages: Iterable[AmiMessage]) -> dict[str, str]:
    """CoreShowChannels reply → {uniqueid: channel name}."""
    return {m.get("Uniqueid"): m.get("Channel") for m in messages if m.name == "CoreShowChannel" and m.get("Uniqueid")}


def registrations(messages: Iterable[AmiMessage]) -> list[Registration]:
    """PJSIPShowRegistrationsOutbound reply → registrations (trunk = its endpoint, else its name)."""
    found = []
    for m in messages:
        if m.name != "OutboundRegistrationDetail":
            continue
        trunk = m.get("Endpoint") or m.get("ObjectName")
        if trunk:
            found.append(Registration(trunk, m.get("ClientUri"), m.get("ServerUri"), m.get("Status") == "Registered"))
    return found


class Resync:
    """The ``on_ready`` hook of the AMI client (and ``on_lost`` via :meth:`connection_lost`)."""

    def __init__(
        self,
        state: HotlineState,
        *,
        now: Callable[[], float],
        read_queue_log: ReadQueueLog | None = None,
        margin: float = 2.0,
        observer: ResyncObserver | None = None,
        clock: IReactorTime | None = None,
        refresh_interval: float = 0.0,
        restore: Restore | None = None,
    ) -> None:
        self.state = state
        self._restore = restore
        self.now = now
        self.read_queue_log = read_queue_log
        self.margin = margin
        self.observer = observer
        self.clock = clock
        self.refresh_interval = refresh_interval
        self._refresh_call: IDelayedCall | None = None
        #: replay from here at the next resync (None: nothing missed yet)
        self.replay_since: float | None = None
        self._session_started: float | None = None
        #: a session is up and its events are being counted
        self._live = False

    def replay_position(self) -> float | None:
        """Where a process started after this one should replay queue_log from (for the checkpoint)."""
        if self.replay_since is not None:
            return self.replay_since
        if self._live:
            return self.now()
        return self.state.last_event_time

    def connection_lost(self) -> None:
        """Remember where the live stream stopped (the earliest, if several losses)."""
        self._cancel_refresh()
        self._live = False
        last = self.state.last_event_time
        if last is None:
            last = self._session_started if self._session_started is not None else self.now()
        if self.replay_since is None or last < self.replay_since:
            self.replay_since = last

    def __call__(self, ami: ActionSender) -> defer.Deferred:
        return defer.Deferred.fromCoroutine(self.run(ami))

    async def run(self, ami: ActionSender) -> str:
        """One resync; returns ``ok``, ``partial`` or ``failed`` (also reported to the observer)."""
        if self._restore is not None:
            restore, self._restore = self._restore, None
            await self._adopt(restore)
        self._session_started = self.now()
        self._live = True
        mark = self.state.mark()
        failures = 0

        queues = await self._list(ami, "QueueStatus")
        if queues is None:
            failures += 1
        else:
            self.state.apply_queue_snapshot(queue_snapshots(queues), mark, self.now())

        regs = await self._list(ami, "PJSIPShowRegistrationsOutbound")
        if regs is None:
            failures += 1
        else:
            self.state.apply_registrations(registrations(regs))
        await self._trunk_contacts(ami)

        channels = await self._list(ami, "CoreShowChannels")
        if channels is None:
            failures += 1

        replayed = True
        if self.replay_since is not None and self.read_queue_log is not None:
            since = self.replay_since - self.margin
            try:
                lines = await self.read_queue_log(since)
            except Exception:  # an unreadable queue_log must not stop the rest of the resync
                failures += 1
                replayed = False
                log.failure("queue_log replay from {since} failed", since=since)
            else:
                applied = replay(self.state, parse_lines(lines), since)
                self.replay_since = None
                log.info("queue_log: replayed {n} entries from {since}", n=applied, since=since)
                if self.observer is not None:
                    self.observer.replayed(applied)

        if channels is not None:
            # calls gone while away are closed only once the replay had its say
            closed = self.state.apply_channel_snapshot(
                channel_snapshot(channels), mark, self.now(), close_calls=replayed
            )
            if closed:
                log.info("resync: {n} queue call(s) ended while AMI was away", n=closed)

        outcome = "ok" if failures == 0 else "failed" if failures >= 3 else "partial"
        if self.observer is not None:
            self.observer.resynced(outcome)
        self._schedule_refresh(ami)
        return outcome

    async def _adopt(self, restore: Restore) -> None:
        """The previous process's checkpoint: its open calls, its last finished ones, its position."""
        checkpoint = await restore()
        if checkpoint is None:
            return
        adopted = self.state.restore(checkpoint.calls, checkpoint.finished, checkpoint.position)
        if self.replay_since is None or checkpoint.position < self.replay_since:
            self.replay_since = checkpoint.position
        log.info("resync: adopted {n} open call(s) from the previous process; replaying from {since}",
                 n=adopted, since=checkpoint.position)

    # -- periodic queue refresh ------------------------------------------------------------
    def _schedule_refresh(self, ami: ActionSender) -> None:
        self._cancel_refresh()
        if self.clock is not None and self.refresh_interval > 0 and not getattr(ami, "closed", False):
            self._refresh_call = self.clock.callLater(self.refresh_interval, self._refresh, ami)

    def _cancel_refresh(self) -> None:
        if self._refresh_call is not None and self._refresh_call.active():
            self._refresh_call.cancel()
        self._refresh_call = None

    def _refresh(self, ami: ActionSender) -> None:
        self._refresh_call = None
        defer.Deferred.fromCoroutine(self.refresh(ami)).addErrback(
            lambda failure: log.failure("queue refresh failed", failure)
        )

    async def refresh(self, ami: ActionSender) -> None:
        """QueueStatus and CoreShowChannels again: correct what lost events left behind."""
        mark = self.state.mark()
        queues = await self._list(ami, "QueueStatus")
        if queues is not None:
            self.state.refresh_queues(queue_snapshots(queues), mark, self.now())
        channels = await self._list(ami, "CoreShowChannels")
        if channels is not None:
            closed = self.state.reconcile_channels(channel_snapshot(channels), mark, self.now())
            if closed:
                log.warn("refresh: closed {n} queue call(s) whose channel is gone unreported", n=closed)
        self._schedule_refresh(ami)

    async def _trunk_contacts(self, ami: ActionSender) -> None:
        """Each trunk's contacts as Asterisk knows them now (see step 3 above).

        Best effort: without func_pjsip_* (Getvar answers an error) the trunk's
        reachability stays unknown until the next ContactStatus; the resync's
        outcome is not affected.
        """
        for trunk in sorted(self.state.trunks):
            aors = await self._getvar(ami, f"PJSIP_ENDPOINT({trunk},aors)")
            for aor in _split(aors):
                for contact in _split(await self._getvar(ami, f"PJSIP_AOR({aor},contact)")):
                    status = await self._getvar(ami, f"PJSIP_CONTACT({contact},status)")
                    uri = await self._getvar(ami, f"PJSIP_CONTACT({contact},uri)")
                    rtt = await self._getvar(ami, f"PJSIP_CONTACT({contact},rtt)")
                    if status and uri:
                        self.state.contact_status(trunk, aor, uri, status, _usec(rtt))

    async def _getvar(self, ami: ActionSender, expression: str) -> str | None:
        try:
            reply = await ami.send_action("Getvar", {"Variable": expression})
        except Exception as exc:  # a missing function module must not stop the resync
            log.debug("resync: Getvar {expr} failed: {error}", expr=expression, error=str(exc))
            return None
        return reply.get("Value")

    async def _list(self, ami: ActionSender, action: str) -> list[AmiMessage] | None:
        try:
            return await ami.send_action(action, event_list=True)
        except Exception as exc:  # one failed action must not stop the others
            log.warn("resync: {action} failed: {error}", action=action, error=str(exc) or type(exc).__name__)
            return None


def _split(value: str | None) -> list[str]:
    """A comma-separated list from a dialplan function (PJSIP_AOR ... contact)."""
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def _usec(value: str | None) -> float | None:
    try:
        number = float(value or "")
    except ValueError:
        return None
    return number if number >= 0 else None
