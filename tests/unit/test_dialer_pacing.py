"""Pacing: concurrent outbound channels, calls per second, the inbound reserve, free agents."""
from __future__ import annotations

from twisted.internet import task

from gateway.dialer.pacing import Pacer, TrunkLimit


def pacer(channels=10, reserve=4, max_outbound=5, rate=2.0, inbound=0, agents=0):
    clock = task.Clock()
    state = {"channels": inbound, "agents": agents}
    p = Pacer(clock, {"carrier": TrunkLimit(channels, reserve, max_outbound, rate)},
              trunk_channels=lambda trunk: state["channels"], available_agents=lambda queue: state["agents"])
    return p, clock, state


def take_all(p, clock, limit=100):
    slots = []
    for _ in range(limit):
        clock.advance(1)
        slot = p.acquire("carrier")
        if slot is None:
            break
        slots.append(slot)
    return slots


def test_outbound_calls_never_exceed_the_configured_concurrent_channels():
    p, clock, _ = pacer(max_outbound=3)
    assert len(take_all(p, clock)) == 3
    assert p.why_not("carrier") == "outbound channels"


def test_inbound_reserve_is_never_taken_by_outbound_calls():
    p, clock, state = pacer(channels=10, reserve=4, max_outbound=10, inbound=5)
    slots = take_all(p, clock)
    assert len(slots) == 1  # 5 inbound + 1 outbound = 6 = channels - reserve
    assert p.why_not("carrier") == "inbound reserve"


def test_outbound_calls_not_yet_visible_on_the_trunk_still_count_against_the_reserve():
    p, clock, state = pacer(channels=10, reserve=4, max_outbound=10, inbound=0)
    slots = take_all(p, clock)
    assert len(slots) == 6  # nothing inbound: up to channels - reserve, even before the monitor sees them


def test_a_burst_of_inbound_calls_stops_new_outbound_calls_until_it_passes():
    p, clock, state = pacer(channels=10, reserve=2, max_outbound=8)
    state["channels"] = 8
    clock.advance(5)
    assert p.acquire("carrier") is None
    state["channels"] = 3
    assert p.acquire("carrier") is not None


def test_calls_per_second_is_a_token_bucket_on_the_injected_clock():
    p, clock, _ = pacer(max_outbound=100, channels=200, reserve=0, rate=2.0)
    clock.advance(10)
    started = 0
    while p.acquire("carrier") is not None:
        started += 1
    assert started == 2  # burst of one second's worth
    assert p.why_not("carrier") == "call rate"
    assert p.next_token_in("carrier") == 0.5
    clock.advance(0.5)
    assert p.acquire("carrier") is not None


def test_a_released_slot_can_be_used_again():
    p, clock, _ = pacer(max_outbound=1)
    clock.advance(1)
    slot = p.acquire("carrier")
    clock.advance(1)
    assert p.acquire("carrier") is None
    p.release(slot)
    assert p.acquire("carrier") is not None


def test_agent_first_calls_need_a_free_agent_not_held_by_another_call():
    p, clock, state = pacer(agents=1)
    clock.advance(1)
    assert p.take_agent("12345")
    assert not p.take_agent("12345")
    state["agents"] = 2
    assert p.take_agent("12345")
    p.give_agent("12345")
    assert p.agent_free("12345")


def test_unknown_trunks_never_get_a_slot():
    p, clock, _ = pacer()
    assert p.acquire("other") is None
