"""The call-centre state model: queues, calls, agents, channels and trunks.

Pure and synchronous: no reactor, no Prometheus, no I/O (it only logs). It is fed domain
calls (``caller_joined``, ``agent_connected``, ``channel_hungup`` …) by the
AMI adapters (:mod:`.events`), by the resync snapshots (:mod:`.resync`) and by
the queue_log replay (:mod:`.queue_log`), and it reports each counted outcome
to an :class:`OutcomeSink` (the Prometheus metrics).

Per-call accounting (one record per queue caller channel, keyed by Uniqueid):

* **offered** once, the first time the call is seen in a queue — a caller the
  dialplan puts back into the queue after a ``Queue()`` timeout is the same
  call and is not offered again;
* **answered** once, at the first AgentConnect/CONNECT, with the wait from the
  *first* queue entry (the citizen's wait, across re-entries); answered within
  the service level when that wait is at most ``service_level`` seconds;
* **abandoned** only when the caller's channel ends unanswered. Asterisk 22
  sends QueueCallerAbandon on a ``Queue()`` timeout too, so that event is only
  a hint (position, time); it becomes an abandon when the channel hangs up,
  and is dropped when the dialplan reports the queue exit (``HotlinePath``
  ``queue-exit``) or the caller re-enters the queue. A queue_log ``ABANDON``
  is authoritative. Short abandon (秒挂): waited less than ``short_abandon``.

Every outcome is counted once: finished calls are remembered (bounded by
``retention``) so a resync or a queue_log replay that sees them again is a
no-op. Resync snapshots carry a *mark* (the model's event sequence number when
the snapshot was asked for): anything the live events changed after the mark
wins over the older snapshot.
"""
from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping

from twisted.logger import Logger

from . import records
from .records import (
    DEVICE_UNKNOWN,
    DIAL_OUTCOMES,
    HANGUP_CAUSE_LABELS,
    AbandonedCall,
    MemberSnapshot,
    NullSink,
    OpenCall,
    OutcomeSink,
    QueueSnapshot,
    QueueView,
    Registration,
    TrunkView,
    WaitingEntry,
    _bounded,
    _Call,
    _Channel,
    _Hint,
    _Member,
    hangup_cause_label,
    trunk_of_channel,
)
from .trunks import TrunkBook

# the records are re-exported: the model's users import them from here
__all__ = ["HotlineState", *records.__all__]

log = Logger()

# -- the model -------------------------------------------------------------------


class HotlineState:
    """Queues, calls, members, channels and trunks, with per-call accounting."""

    def __init__(
        self,
        sink: OutcomeSink | None = None,
        *,
        service_level: float = 15.0,
        short_abandon: float = 5.0,
        trunks: Iterable[str] = (),
        trunk_capacity: Mapping[str, int] | None = None,
        retention: int = 100_000,
        abandoned_kept: int = 1000,
    ) -> None:
        if service_level <= 0 or short_abandon < 0:
            raise ValueError("service_level must be positive and short_abandon not negative")
        self.sink: OutcomeSink = sink or NullSink()
        self.service_level = service_level
        self.short_abandon = short_abandon
        self.retention = retention
        self.last_event_time: float | None = None
        #: set by the queue_log replay while it feeds history
        self.replaying = False
        self._seq = 0
        self._queues: set[str] = set()
        self._calls: dict[str, _Call] = {}
        #: finished calls → when (the latest event time known when they ended; None: unknown)
        self._finished: OrderedDict[str, float | None] = OrderedDict()
        self._members: dict[str, dict[str, _Member]] = {}
        self._channels: dict[str, _Channel] = {}
        self._recent_hangups: OrderedDict[str, int] = OrderedDict()
        #: calls whose channel a periodic CoreShowChannels did not list → the mark of that list
        self._missing: dict[str, int] = {}
        self._trunks = TrunkBook(self.sink, trunks, trunk_capacity)
        self._abandoned: deque[AbandonedCall] = deque(maxlen=abandoned_kept)
        self._abandon_listeners: list[Callable[[AbandonedCall], None]] = []
        self._answer_listeners: list[Callable[[str, str, str, float], None]] = []
        self._lost_listeners: list[Callable[[AbandonedCall], None]] = []

    # -- bookkeeping ----------------------------------------------------------------
    def mark(self) -> int:
        """The current event sequence number (taken before asking for a snapshot)."""
        return self._seq

    def _tick(self, at: float | None) -> int:
        self._seq += 1
        if at is not None and (self.last_event_time is None or at > self.last_event_time):
            self.last_event_time = at
        return self._seq

    def _touch(self, call: _Call, seq: int) -> None:
        """Remember that a live event changed ``call`` (replayed history does not count:
        it is older than any snapshot taken after the reconnect)."""
        if not self.replaying:
            call.seq = seq

    def _see_queue(self, queue: str) -> None:
        if queue and queue not in self._queues:
            self._queues.add(queue)
            self.sink.queue_seen(queue)

    def is_finished(self, uniqueid: str) -> bool:
        return uniqueid in self._finished

    def _call(self, uniqueid: str, queue: str, joined_at: float, caller: str = "") -> _Call | None:
        """The active record, a new one (counted as offered), or None if finished."""
        if not uniqueid or uniqueid in self._finished:
            return None
        call = self._calls.get(uniqueid)
        if call is None:
            self._see_queue(queue)
            call = _Call(uniqueid, queue, joined_at, caller=caller)
            self._calls[uniqueid] = call
            self.sink.offered(queue)
        elif caller and not call.caller:
            call.caller = caller
        return call

    def _end(self, call: _Call, at: float | None = None) -> None:
        self._calls.pop(call.uniqueid, None)
        known = [t for t in (at, self.last_event_time) if t is not None]
        self._finished[call.uniqueid] = max(known) if known else None
        _bounded(self._finished, self.retention)

    def _answer(self, call: _Call, at: float, member: str) -> None:
        wait = max(0.0, at - call.joined_at)
        call.outcome = "answered"
        call.answered_at = at
        call.member = member
        call.waiting = False
        call.hint = None
        self.sink.answered(call.queue, wait, wait <= self.service_level)
        _notify(self._answer_listeners, call.uniqueid, call.caller, call.queue, at)

    def _abandon(self, call: _Call, at: float, position: int, original_position: int) -> None:
        wait = max(0.0, at - call.joined_at)
        short = wait < self.short_abandon
        call.outcome = "abandoned"
        call.waiting = False
        self.sink.abandoned(call.queue, wait, short)
        record = AbandonedCall(
            call.uniqueid,
            call.queue,
            call.joined_at,
            at,
            wait,
            position or call.position,
            original_position or call.original_position,
            short,
            caller=call.caller,
        )
        self._abandoned.append(record)
        _notify(self._abandon_listeners, record)

    # -- calls ------------------------------------------------------------------------
    def caller_joined(self, uniqueid: str, queue: str, at: float, position: int = 0, caller: str = "") -> None:
        """QueueCallerJoin / ENTERQUEUE: the caller is (again) waiting in ``queue``."""
        seq = self._tick(at)
        call = self._call(uniqueid, queue, at, caller)
        if call is None:
            return
        self._touch(call, seq)
        if call.outcome is not None:
            return
        call.waiting = True
        call.hint = None  # back in the queue: an earlier "abandon" was a timeout
        if position:
            call.position = position
            call.original_position = call.original_position or position

    def caller_left(self, uniqueid: str, at: float | None = None) -> None:
        """QueueCallerLeave: no longer in the waiting list (answered, gone or timed out)."""
        seq = self._tick(at)
        call = self._calls.get(uniqueid)
        if call is not None:
            call.waiting = False
            self._touch(call, seq)

    def abandon_reported(
        self, uniqueid: str, queue: str, at: float, position: int = 0, original_position: int = 0,
        hold_time: float | None = None,
    ) -> None:
        """QueueCallerAbandon: left ``Queue()`` unanswered — hung up *or* timed out."""
        seq = self._tick(at)
        call = self._call(uniqueid, queue, at - (hold_time or 0.0))
        if call is None or call.outcome is not None:
            return
        self._touch(call, seq)
        call.waiting = False
        call.hint = _Hint(at, position, original_position)

    def queue_exited(self, uniqueid: str, at: float | None = None) -> None:
        """The dialplan went on after ``Queue()`` (timeout, full …): the caller is still there."""
        seq = self._tick(at)
        call = self._calls.get(uniqueid)
        if call is not None:
            call.hint = None
            call.waiting = False
            self._touch(call, seq)

    def agent_connected(
        self, uniqueid: str, queue: str, at: float, member: str = "", hold_time: float | None = None
    ) -> None:
        """AgentConnect / CONNECT: an agent answered."""
        seq = self._tick(at)
        call = self._call(uniqueid, queue, at - (hold_time or 0.0))
        if call is None:
            return
        self._touch(call, seq)
        if call.outcome is None:
            self._answer(call, at, member)

    def agent_ring_no_answer(self, queue: str, at: float | None = None) -> None:
        """AgentRingNoAnswer: an agent was rung and did not pick up."""
        self._tick(at)
        self._see_queue(queue)
        self.sink.ring_no_answer(queue)

    def call_abandoned(
        self, uniqueid: str, queue: str, at: float, position: int = 0, original_position: int = 0,
        wait: float | None = None,
    ) -> None:
        """queue_log ABANDON: the caller hung up while waiting (authoritative)."""
        self._tick(at)
        call = self._call(uniqueid, queue, at - (wait or 0.0))
        if call is None or call.outcome is not None:
            return
        self._abandon(call, at, position, original_position)
        self._end(call)

    def agent_rung(self, queue: str, at: float | None = None) -> None:
        """AgentCalled: a call is offered to (rings) an agent."""
        self._tick(at)
        self._see_queue(queue)
        self.sink.agent_rung(queue)

    def agent_completed(self, uniqueid: str, talk_time: float, at: float | None = None) -> None:
        """AgentComplete: the agent part of an answered call is over (talk time counted once)."""
        seq = self._tick(at)
        call = self._calls.get(uniqueid)
        if call is None or call.outcome != "answered" or call.completed:
            return
        call.completed = True
        self._touch(call, seq)
        self.sink.completed(call.queue, max(0.0, talk_time))

    def call_completed(self, uniqueid: str, talk_time: float | None = None, at: float | None = None) -> None:
        """queue_log COMPLETEAGENT/COMPLETECALLER: an answered call is over."""
        if talk_time is not None:
            self.agent_completed(uniqueid, talk_time, at)
        else:
            self._tick(at)
        call = self._calls.get(uniqueid)
        if call is not None and call.outcome == "answered":
            self._end(call)

    # -- channels -----------------------------------------------------------------------
    def channel_created(self, uniqueid: str, channel: str, at: float | None = None) -> None:
        seq = self._tick(at)
        if uniqueid:
            self._channels[uniqueid] = _Channel(channel, self._trunks.of_channel(channel), seq)

    def channel_hungup(self, uniqueid: str, at: float, channel: str = "", cause: int | None = None) -> None:
        """Hangup: the end of a channel — and of its queue call, if it had one.

        ``cause`` (Q.850) of a trunk channel whose dial failed is counted by
        :meth:`dial_end`'s failure (whichever of the two events comes first).
        """
        seq = self._tick(at)
        known = self._channels.pop(uniqueid, None)
        self._recent_hangups[uniqueid] = seq
        _bounded(self._recent_hangups, 10_000)
        self._trunks.channel_hungup(uniqueid, channel, known.trunk if known is not None else None, cause)
        call = self._calls.get(uniqueid)
        if call is None:
            return
        if call.outcome is None:
            hint = call.hint
            if hint is not None:
                self._abandon(call, hint.at, hint.position, hint.original_position)
            else:
                self._abandon(call, at, call.position, call.original_position)
        self._end(call)

    @property
    def active_channels(self) -> int:
        return len(self._channels)

    # -- members --------------------------------------------------------------------------
    def member_changed(
        self,
        queue: str,
        interface: str,
        at: float | None = None,
        *,
        name: str | None = None,
        status: int | None = None,
        paused: bool | None = None,
        in_call: bool | None = None,
    ) -> None:
        """QueueMemberStatus/Pause/Added: update what the event tells (None: unchanged)."""
        seq = self._tick(at)
        if not queue or not interface:
            return
        self._see_queue(queue)
        members = self._members.setdefault(queue, {})
        member = members.get(interface)
        if member is None:
            member = members[interface] = _Member(interface, name or interface, DEVICE_UNKNOWN, False, False)
        if name:
            member.name = name
        if status is not None:
            member.status = status
        if paused is not None:
            member.paused = paused
        if in_call is not None:
            member.in_call = in_call
        member.seq = seq

    def member_removed(self, queue: str, interface: str, at: float | None = None) -> None:
        self._tick(at)
        self._members.get(queue, {}).pop(interface, None)

    # -- trunks (the TrunkBook's; this clock ticks and channels learn their trunk) -------------------
    @property
    def trunks(self) -> frozenset[str]:
        return self._trunks.names

    def _add_trunk(self, trunk: str) -> None:
        if self._trunks.add(trunk):
            for channel in self._channels.values():
                channel.trunk = channel.trunk or self._trunks.of_channel(channel.name)

    def apply_registrations(self, registrations: Iterable[Registration]) -> None:
        """PJSIPShowRegistrationsOutbound: which registration is which trunk, and its state."""
        self._tick(None)
        for registration in registrations:
            self._add_trunk(registration.trunk)
            self._trunks.registration(registration)

    def registry_event(self, client_uri: str, server_uri: str, status: str, at: float | None = None) -> str | None:
        """Registry event; returns the trunk it was about (None: not a known registration)."""
        self._tick(at)
        return self._trunks.registry_event(client_uri, server_uri, status)

    def contact_status(
        self, endpoint: str, aor: str, uri: str, status: str, rtt_usec: float | None = None, at: float | None = None
    ) -> str | None:
        """ContactStatus of a trunk's contact; returns the trunk (None: not a trunk)."""
        self._tick(at)
        return self._trunks.contact_status(endpoint, aor, uri, status, rtt_usec)

    def dial_end(
        self, dest_channel: str, dial_status: str, at: float | None = None, dest_uniqueid: str = ""
    ) -> str | None:
        """DialEnd towards a trunk: counts the outbound call's outcome.

        A failure (not answered, not cancelled by our side) is also counted by
        the hangup cause of the trunk channel (``dest_uniqueid``), read from
        its Hangup event — usually the next event about it.
        """
        self._tick(at)
        return self._trunks.dial_end(dest_channel, dial_status, dest_uniqueid)

    # -- resync snapshots --------------------------------------------------------------------
    def apply_queue_snapshot(self, queues: Iterable[QueueSnapshot], mark: int, now: float) -> None:
        """QueueStatus after a (re)connect. Live changes after ``mark`` win."""
        self._tick(None)
        listed: set[str] = set()
        for queue in queues:
            listed.add(queue.name)
            self._see_queue(queue.name)
            old = self._members.get(queue.name, {})
            members = {i: m for i, m in old.items() if m.seq > mark}
            for m in queue.members:
                if m.interface not in members:
                    members[m.interface] = _Member(m.interface, m.name, m.status, m.paused, m.in_call, mark)
            self._members[queue.name] = members
            waiting = set()
            for entry in queue.entries:
                waiting.add(entry.uniqueid)
                known = entry.uniqueid in self._calls
                call = self._call(entry.uniqueid, queue.name, now - entry.wait, entry.caller)
                if call is None or (known and call.seq > mark) or call.outcome is not None:
                    continue
                call.waiting = True
                call.position = entry.position or call.position
                call.original_position = call.original_position or entry.position
            for call in self._calls.values():
                if call.queue == queue.name and call.waiting and call.seq <= mark and call.uniqueid not in waiting:
                    call.waiting = False
        for name in list(self._members):
            if name not in listed:
                self._members[name] = {i: m for i, m in self._members[name].items() if m.seq > mark}

    def refresh_queues(self, queues: Iterable[QueueSnapshot], mark: int, now: float) -> None:
        """A periodic QueueStatus: correct waiting callers and members, count nothing.

        Callers listed but unknown are left alone (their join event may still be
        on its way; a reconnect's resync adopts such callers).
        """
        known = [
            QueueSnapshot(q.name, q.members, tuple(e for e in q.entries if e.uniqueid in self._calls))
            for q in queues
        ]
        self.apply_queue_snapshot(known, mark, now)

    def apply_channel_snapshot(
        self, channels: Mapping[str, str], mark: int, now: float, close_calls: bool = True
    ) -> int:
        """CoreShowChannels after a (re)connect (apply after the queue_log replay).

        Calls whose channel is gone ended while we were away: with a pending
        abandon hint they are abandoned; otherwise their outcome is unknown
        (counted as untracked, never guessed). With ``close_calls`` false (the
        replay that could settle them failed and will be retried) they are
        left open. Returns how many were closed.
        """
        self._apply_channels(channels, mark)
        self._missing = {}
        closed = 0
        if not close_calls:
            return closed
        for call in list(self._calls.values()):
            if call.uniqueid in self._channels or call.seq > mark:
                continue
            self._close_unseen(call, "ended while AMI was away", now)
            closed += 1
        return closed

    def reconcile_channels(self, channels: Mapping[str, str], mark: int, now: float) -> int:
        """A periodic CoreShowChannels on a live session: forget what lost events left open.

        Asterisk drops events for a consumer slow to read (manager.conf
        ``writetimeout``) without closing the session, so a lost Hangup would
        keep a call open — never counted, not even as untracked — and its
        channel on a trunk forever. Channels are corrected at once. A call is
        closed only when its channel is missing from two lists in a row with
        no event about it in between: a Hangup published just before a list
        was taken may still be on its way behind the reply. Closed as after a
        reconnect: abandoned on a pending abandon hint, otherwise untracked.
        Returns how many calls were closed.
        """
        self._apply_channels(channels, mark)
        missing: dict[str, int] = {}
        closed = 0
        for call in list(self._calls.values()):
            if call.uniqueid in self._channels or call.seq > mark:
                continue
            first_missed = self._missing.get(call.uniqueid)
            if first_missed is not None and call.seq <= first_missed:
                self._close_unseen(call, "is gone but its end was never reported (events dropped?)", now)
                closed += 1
            else:
                missing[call.uniqueid] = mark
        self._missing = missing
        return closed

    def _apply_channels(self, channels: Mapping[str, str], mark: int) -> None:
        """The channel list as Asterisk shows it; live changes after ``mark`` win."""
        self._tick(None)
        fresh: dict[str, _Channel] = {}
        for uniqueid, name in channels.items():
            if self._recent_hangups.get(uniqueid, -1) > mark:
                continue
            fresh[uniqueid] = _Channel(name, self._trunks.of_channel(name), mark)
        for uniqueid, channel in self._channels.items():
            if channel.seq > mark:
                fresh[uniqueid] = channel
        self._channels = fresh

    def _close_unseen(self, call: _Call, why: str, now: float) -> None:
        """End a call whose channel is gone without our seeing how: never guessed."""
        if call.outcome is None:
            if call.hint is not None:
                self._abandon(call, call.hint.at, call.hint.position, call.hint.original_position)
            else:
                self.sink.untracked(call.queue)
                log.warn("queue call {uniqueid} {why}; outcome unknown", uniqueid=call.uniqueid, why=why)
                if call.waiting:
                    # still waiting when last seen: the citizen was cut off with the call (a PBX
                    # crash) and never reached anyone — counted untracked, but called back
                    wait = max(0.0, now - call.joined_at)
                    _notify(self._lost_listeners, AbandonedCall(
                        call.uniqueid, call.queue, call.joined_at, now, wait, call.position,
                        call.original_position, False, caller=call.caller))
        self._end(call, now)

    # -- checkpoint (process restarts) -------------------------------------------------------------
    def unfinished_calls(self) -> list[OpenCall]:
        """The calls still open, as a checkpoint keeps them."""
        return [
            OpenCall(
                c.uniqueid, c.queue, c.joined_at, c.outcome == "answered", c.completed, c.position,
                c.original_position,
                (c.hint.at, c.hint.position, c.hint.original_position) if c.hint is not None else None,
                caller=c.caller,
            )
            for c in self._calls.values()
        ]

    def finished_since(self, at: float) -> list[str]:
        """Uniqueids of the calls that ended at or after ``at`` (or at an unknown time)."""
        return [uid for uid, ended in self._finished.items() if ended is None or ended >= at]

    def restore(self, calls: Iterable[OpenCall], finished: Iterable[str], at: float | None = None) -> int:
        """Adopt what a previous process counted (its checkpoint), counting nothing again.

        ``calls`` were open (offered, maybe answered, by that process): their
        outcome is still to be counted once — by the queue_log replay, a
        snapshot or a live event. ``finished`` calls were counted: a replay
        that sees them again is a no-op. Calls this process already knows win.
        Returns how many calls were adopted.
        """
        self._tick(None)
        for uniqueid in finished:
            if uniqueid and uniqueid not in self._calls and uniqueid not in self._finished:
                self._finished[uniqueid] = at
        _bounded(self._finished, self.retention)
        adopted = 0
        for c in calls:
            if not c.uniqueid or c.uniqueid in self._calls or c.uniqueid in self._finished:
                continue
            self._see_queue(c.queue)
            call = _Call(c.uniqueid, c.queue, c.joined_at, caller=c.caller, position=c.position,
                         original_position=c.original_position, completed=c.completed)
            if c.answered:
                call.outcome = "answered"
            else:
                call.waiting = True  # as last seen; the resync's queue snapshot corrects it
            if c.abandon_hint is not None:
                call.hint = _Hint(*c.abandon_hint)
            self._calls[c.uniqueid] = call
            adopted += 1
        return adopted

    # -- views ----------------------------------------------------------------------------------
    def queue_views(self, now: float) -> dict[str, QueueView]:
        views = {}
        for queue in sorted(self._queues):
            waiting = [c for c in self._calls.values() if c.queue == queue and c.waiting]
            members = self._members.get(queue, {}).values()
            views[queue] = QueueView(
                waiting=len(waiting),
                longest_wait=max((max(0.0, now - c.joined_at) for c in waiting), default=0.0),
                logged_in=sum(m.logged_in for m in members),
                available=sum(m.available for m in members),
                paused=sum(m.logged_in and m.paused for m in members),
                in_call=sum(m.on_call for m in members),
            )
        return views

    def trunk_views(self) -> dict[str, TrunkView]:
        counts: dict[str, int] = {}
        for channel in self._channels.values():
            if channel.trunk is not None:
                counts[channel.trunk] = counts.get(channel.trunk, 0) + 1
        return self._trunks.views(counts)

    @property
    def open_calls(self) -> int:
        """Calls the model has not closed yet (waiting, ringing or talking)."""
        return len(self._calls)

    def waiting_calls(self) -> list[str]:
        """Uniqueids of the callers waiting right now (tests, debugging)."""
        return [c.uniqueid for c in self._calls.values() if c.waiting]

    # -- abandoned-call list ------------------------------------------------------------------------
    @property
    def abandoned_calls(self) -> list[AbandonedCall]:
        """The most recent abandoned calls, oldest first."""
        return list(self._abandoned)

    def add_abandon_listener(self, listener: Callable[[AbandonedCall], None]) -> None:
        """``listener(call)`` for every abandon as it is counted (the callback dialer)."""
        self._abandon_listeners.append(listener)

    def add_lost_listener(self, listener: Callable[[AbandonedCall], None]) -> None:
        """``listener(call)`` for a caller who was waiting in a queue when the call vanished
        unseen (the PBX went down): not counted as an abandon, but the citizen was not served."""
        self._lost_listeners.append(listener)

    def add_answer_listener(self, listener: Callable[[str, str, str, float], None]) -> None:
        """``listener(uniqueid, caller, queue, at)`` when a queue call is answered (cancels a pending callback)."""
        self._answer_listeners.append(listener)


def _notify(listeners: list[Callable], *args) -> None:
    for listener in list(listeners):
        try:
            listener(*args)
        except Exception:  # a listener bug must not break the accounting
            log.failure("listener {listener!r} failed", listener=listener)
