"""Pacing as this process sees it from the live monitor: the inbound reserve, agents to spare, slots given back."""
from __future__ import annotations

import pytest

from gateway.dialer.pacing import Pacer, QueueLoad, Slot, TrunkLimit


def pacer(channels=10, reserve=4, max_outbound=5, rate=2.0, inbound=0, queues=None, margin=1):
    state = {"channels": inbound, "queues": dict(queues or {})}
    p = Pacer({"carrier": TrunkLimit(channels, reserve, max_outbound, rate)},
              trunk_channels=lambda trunk: state["channels"], queue_loads=lambda: state["queues"], agent_margin=margin)
    return p, state


def test_a_trunk_whose_reserve_the_monitor_sees_taken_refuses_without_asking_redis():
    p, state = pacer(channels=10, reserve=4, inbound=6)
    assert p.why_not("carrier") == "inbound reserve" and p.trunk_room("carrier") == 0
    state["channels"] = 5
    assert p.why_not("carrier") is None and p.trunk_room("carrier") == 1


def test_unknown_trunks_and_a_zero_outbound_limit_never_get_room():
    p, _ = pacer()
    assert p.why_not("other") == "unknown trunk" and p.trunk_room("other") == 0
    p, _ = pacer(max_outbound=0)
    assert p.why_not("carrier") == "outbound channels" and p.trunk_room("carrier") == 0


def test_agents_to_spare_are_available_agents_minus_callers_already_waiting_minus_the_margin():
    p, state = pacer(queues={"12345": QueueLoad(available=2, waiting=1), "elderly": QueueLoad(available=1, waiting=1)})
    assert p.agent_bases() == {"12345": 1, "elderly": 0}
    p, state = pacer(queues={"12345": QueueLoad(available=3, waiting=1)}, margin=2)
    assert p.agent_bases() == {"12345": 1}


def test_a_margin_below_one_is_refused():
    with pytest.raises(ValueError):
        pacer(margin=0)


def test_a_slot_reaching_the_queue_drops_only_its_agent_hold():
    p, _ = pacer()
    slot = Slot("carrier", "s1", "12345")
    queued = p.release_agent(slot)
    assert queued == Slot("carrier", "s1") and p.release_agent(queued) is queued
    p.release(queued, refund=False)
    [hold, call] = p.take_releases()
    assert (hold.call, hold.slot.agent_queue) == (False, "12345") and (call.call, call.refund) == (True, False)
    assert p.take_releases() == []
