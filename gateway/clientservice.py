"""Shared work-around for ``twisted.application.internet.ClientService`` (AMI and Redis clients)."""
from __future__ import annotations

__all__ = ["mute_disconnect_notice"]


def mute_disconnect_notice(proxy: object) -> None:
    """Work around ClientService's state machine for rejected connections.

    ClientService (Twisted ≤ 26.x) has no transition for a connection that
    closes while ``prepareConnection`` is pending or after it failed (automat
    raises ``NoTransition`` inside ``connectionLost``), and it leaves a
    rejected connection open. Our clients close rejected connections
    themselves, so the proxy's disconnect notice for them is dropped here. If
    Twisted changes this private attribute the only effect is a logged traceback.
    """
    if hasattr(proxy, "_lostNotification"):
        proxy._lostNotification = lambda reason: None  # private attribute: see the docstring
