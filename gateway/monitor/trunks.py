"""The trunks' part of the state model: which trunks there are, their registration and contacts, and how the
calls the hotline dials through them end (DialEnd, with the Q.850 cause of a failure from the trunk channel's
Hangup, whichever of the two events comes first).

Pure and synchronous like :class:`.model.HotlineState`, which owns one :class:`TrunkBook`, ticks its event
clock and keeps its channels' trunk labels current.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping

from .records import (
    DIAL_OUTCOMES,
    OutcomeSink,
    Registration,
    TrunkView,
    _NOT_FAILURES,
    _bounded,
    _Contact,
    hangup_cause_label,
    trunk_of_channel,
)

__all__ = ["TrunkBook"]

#: failed dials / trunk hangups kept while waiting for their other half
_PENDING_KEPT = 1000


class TrunkBook:
    """Trunks by name: registration state, contact reachability and RTT, capacity, dial outcomes."""

    def __init__(self, sink: OutcomeSink, trunks: Iterable[str] = (), capacity: Mapping[str, int] | None = None):
        self.sink = sink
        self._trunks: set[str] = set(trunks)
        self._capacity: dict[str, int] = dict(capacity or {})
        self._trunks.update(self._capacity)
        for trunk in sorted(self._trunks):
            self.sink.trunk_seen(trunk)
        self._registered: dict[str, bool] = {}
        self._registration_uris: dict[tuple[str, str], str] = {}
        self._contacts: dict[str, dict[str, _Contact]] = {}
        #: failed dials to a trunk waiting for their channel's Hangup (its cause): dest uniqueid → trunk
        self._failed_dials: OrderedDict[str, str] = OrderedDict()
        #: Q.850 causes of trunk channels hung up with no failed DialEnd seen (yet): uniqueid → cause
        self._trunk_hangups: OrderedDict[str, int | None] = OrderedDict()

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._trunks)

    def of_channel(self, channel: str) -> str | None:
        """The trunk a channel name belongs to (``PJSIP/carrier-0000001a`` → ``carrier``), if any."""
        return trunk_of_channel(channel, self._trunks)

    def add(self, trunk: str) -> bool:
        """Know a trunk (counted from now on); True when it was new."""
        if not trunk or trunk in self._trunks:
            return False
        self._trunks.add(trunk)
        self.sink.trunk_seen(trunk)
        return True

    def registration(self, registration: Registration) -> None:
        """One PJSIPShowRegistrationsOutbound entry (its trunk already added)."""
        self._registration_uris[(registration.client_uri, registration.server_uri)] = registration.trunk
        self._registered[registration.trunk] = registration.registered

    def registry_event(self, client_uri: str, server_uri: str, status: str) -> str | None:
        """Registry event; returns the trunk it was about (None: not a known registration)."""
        trunk = self._registration_uris.get((client_uri, server_uri))
        if trunk is None:
            matches = {t for (_, server), t in self._registration_uris.items() if server == server_uri}
            trunk = matches.pop() if len(matches) == 1 else None
        if trunk is None:
            return None
        self._registered[trunk] = status.lower() == "registered"
        return trunk

    def contact_status(self, endpoint: str, aor: str, uri: str, status: str, rtt_usec: float | None) -> str | None:
        """ContactStatus of a trunk's contact; returns the trunk (None: not a trunk)."""
        trunk = endpoint if endpoint in self._trunks else aor if aor in self._trunks else None
        if trunk is None:
            return None
        contacts = self._contacts.setdefault(trunk, {})
        state = status.lower()
        if state == "removed":
            contacts.pop(uri, None)
        elif state == "reachable":
            rtt = rtt_usec / 1e6 if rtt_usec is not None and rtt_usec >= 0 else None
            contacts[uri] = _Contact(True, rtt)
        elif state == "unreachable":
            contacts[uri] = _Contact(False, None)
        else:  # Created, Updated, Unknown, Unqualified: reachability not known
            previous = contacts.get(uri)
            contacts[uri] = previous if previous is not None and state == "updated" else _Contact(None, None)
        return trunk

    def dial_end(self, dest_channel: str, dial_status: str, dest_uniqueid: str = "") -> str | None:
        """DialEnd towards a trunk: counts the outbound call's outcome, and a failure by its hangup cause."""
        trunk = self.of_channel(dest_channel)
        if trunk is None or not dial_status:
            return None
        status = dial_status.upper()
        self.sink.trunk_call(trunk, DIAL_OUTCOMES.get(status, "other"))
        if status not in _NOT_FAILURES and dest_uniqueid:
            if dest_uniqueid in self._trunk_hangups:
                self.sink.trunk_failure(trunk, hangup_cause_label(self._trunk_hangups.pop(dest_uniqueid)))
            else:
                self._failed_dials[dest_uniqueid] = trunk
                _bounded(self._failed_dials, _PENDING_KEPT)
        return trunk

    def channel_hungup(self, uniqueid: str, channel: str, known_trunk: str | None, cause: int | None) -> None:
        """A channel ended (``known_trunk``: the trunk its Newchannel gave it). A trunk channel's cause completes
        a failed dial, or waits for the DialEnd that may still come."""
        failed = self._failed_dials.pop(uniqueid, None)
        if failed is not None:
            self.sink.trunk_failure(failed, hangup_cause_label(cause))
        elif uniqueid and (self.of_channel(channel) or known_trunk):
            self._trunk_hangups[uniqueid] = cause
            _bounded(self._trunk_hangups, _PENDING_KEPT)

    def views(self, channels: Mapping[str, int]) -> dict[str, TrunkView]:
        """Every trunk's state; ``channels``: trunk → channels up on it now."""
        views = {}
        for trunk in sorted(self._trunks):
            contacts = self._contacts.get(trunk, {}).values()
            known = [c.reachable for c in contacts if c.reachable is not None]
            rtts = [c.rtt for c in contacts if c.reachable and c.rtt is not None]
            views[trunk] = TrunkView(
                registered=self._registered.get(trunk),
                reachable=any(known) if known else None,
                rtt=max(rtts) if rtts else None,
                channels=channels.get(trunk, 0),
                capacity=self._capacity.get(trunk),
            )
        return views
