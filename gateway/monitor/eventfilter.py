"""The gateway AMI user's event filter: every subscription on its one AMI session.

The gateway's AMI session serves the monitor (:func:`.events.subscription_table`)
and the dialer (``Dialer.subscriptions()``, added to the same router by
``gateway/app.py``). Asterisk must send this user exactly the union of those
events — ``asterisk_conf/manager.conf`` holds it as ``eventfilter`` lines, and
``tests/unit/test_manager_eventfilter.py`` checks the file against this module.

Tooling, not runtime: nothing at run time imports this module (it reaches up
to the dialer to read its table, which runtime code in ``monitor/`` must not).
"""
from __future__ import annotations

from ..ami.router import eventfilter_lines
from .events import USER_EVENTS, AmiEventAdapter, subscription_table
from .model import HotlineState

__all__ = ["gateway_event_names", "gateway_eventfilter_lines", "gateway_user_events"]


def _dialer_events() -> tuple[set[str], set[str]]:
    """The dialer's subscribed event names and the UserEvent names it reads."""
    from ..dialer.originate import USER_EVENT
    from ..dialer.service import Dialer

    # subscriptions() only names bound methods: no collaborator is needed to read it
    table = Dialer.subscriptions(object.__new__(Dialer))
    return set(table), {USER_EVENT} if "UserEvent" in table else set()


def gateway_event_names() -> set[str]:
    """Every AMI event name the gateway's session consumes."""
    names = set(subscription_table(AmiEventAdapter(HotlineState(), lambda: 0.0)))
    return names | _dialer_events()[0]


def gateway_user_events() -> set[str]:
    """The UserEvent names (``UserEvent:`` header) the gateway reads."""
    return set(USER_EVENTS) | _dialer_events()[1]


def gateway_eventfilter_lines() -> list[str]:
    return eventfilter_lines(gateway_event_names(), gateway_user_events())
