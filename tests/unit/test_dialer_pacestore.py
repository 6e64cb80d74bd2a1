"""Pacing every gateway instance shares, in Redis (private redis-server): concurrent outbound calls,
calls per second, agent holds, leases that let a crashed instance's slots come back."""
from __future__ import annotations

from gateway.dialer.pacestore import PaceStore
from gateway.dialer.pacing import TrunkLimit

from .dialer_redis import _redis_server, dialer_redis  # noqa: F401 — fixtures

T0 = 1_800_000_000.0
LEASE = 60.0


class Shared:
    """The shared store as one instance uses it: ids, limits and lease filled in."""

    def __init__(self, client, channels=30, reserve=10, max_outbound=5, rate=100.0):
        self.store = PaceStore(client, key_prefix="t")
        self.limit = TrunkLimit(channels, reserve, max_outbound, rate)
        self.n = 0

    def ids(self, n):
        self.n += n
        return [f"s{i}" for i in range(self.n - n, self.n)]

    def take(self, now, want=1, room=None, bases=None):
        room = self.limit.channels - self.limit.reserve if room is None else room
        return self.store.acquire("carrier", self.limit, now, self.ids(want), room, LEASE, bases)

    def commit(self, now, unused=(), holds=()):
        return self.store.commit("carrier", self.limit, now, LEASE, unused, holds)

    def release(self, now, **kwargs):
        return self.store.release("carrier", self.limit, now, **kwargs)


def test_outbound_calls_in_flight_never_exceed_max_outbound_across_requests(dialer_redis):
    shared = Shared(dialer_redis, max_outbound=3)
    first, _ = shared.take(T0, want=2)
    second, _ = shared.take(T0 + 1, want=5)
    assert len(first) == 2 and len(second) == 1
    assert shared.take(T0 + 2)[0] == []
    shared.release(T0 + 3, spent=first[:1])
    assert len(shared.take(T0 + 3)[0]) == 1
    assert shared.store.in_flight("carrier", T0 + 3) == 3


def test_calls_in_flight_count_against_the_inbound_reserve_on_top_of_the_monitor(dialer_redis):
    shared = Shared(dialer_redis, max_outbound=10)
    granted, _ = shared.take(T0, want=10, room=4)  # channels - reserve - channels up by the monitor
    assert len(granted) == 4
    assert shared.take(T0 + 1, room=4)[0] == []


def test_calls_per_second_is_a_token_bucket_with_a_one_second_burst(dialer_redis):
    shared = Shared(dialer_redis, max_outbound=100, rate=2.0)
    assert len(shared.take(T0, want=10)[0]) == 2  # a full bucket: one second's worth
    assert shared.take(T0 + 0.25)[0] == []
    assert len(shared.take(T0 + 0.5, want=10)[0]) == 1
    assert len(shared.take(T0 + 100, want=10)[0]) == 2  # never more than the burst after a pause


def test_slots_given_back_unused_or_without_a_call_return_their_tokens_spent_ones_do_not(dialer_redis):
    shared = Shared(dialer_redis, rate=1.0)
    [unused], _ = shared.take(T0)
    assert shared.commit(T0, unused=[unused]) == set()
    [never_dialled], _ = shared.take(T0)
    assert shared.release(T0, refund=[never_dialled]) == 1
    [dialled], _ = shared.take(T0)
    assert shared.release(T0, spent=[dialled]) == 0
    assert shared.take(T0)[0] == [] and shared.store.in_flight("carrier", T0) == 0


def test_a_slot_released_twice_returns_its_token_once(dialer_redis):
    shared = Shared(dialer_redis, rate=1.0)
    [slot], _ = shared.take(T0)
    assert shared.release(T0, refund=[slot]) == 1
    assert shared.release(T0, refund=[slot]) == 0
    assert len(shared.take(T0, want=5)[0]) == 1


def test_a_crashed_instances_slots_come_back_when_their_lease_runs_out(dialer_redis):
    shared = Shared(dialer_redis, max_outbound=2)
    crashed, _ = shared.take(T0, want=2)
    alive, _ = shared.take(T0 + 30)
    assert alive == []
    assert len(shared.take(T0 + LEASE + 1)[0]) == 1 and len(crashed) == 2


def test_renewed_slots_and_holds_stay_while_their_calls_run(dialer_redis):
    shared = Shared(dialer_redis, max_outbound=1)
    [slot], _ = shared.take(T0, bases={"12345": 1})
    assert shared.commit(T0, holds=[(slot, "12345", 1)]) == set()
    shared.store.renew("carrier", T0 + 50, LEASE, [slot], [("12345", slot)])
    assert shared.take(T0 + LEASE + 1)[0] == []
    assert shared.store.held("12345", T0 + LEASE + 1) == 1


def test_an_agent_hold_is_refused_once_every_instance_holds_the_agents_to_spare(dialer_redis):
    shared = Shared(dialer_redis)
    a, room = shared.take(T0, bases={"12345": 1})
    assert room == {"12345": 1}
    b, room_b = shared.take(T0, bases={"12345": 1})  # a second instance, same monitor view, before a commits
    assert shared.commit(T0, holds=[(a[0], "12345", 1)]) == set()
    assert shared.commit(T0, holds=[(b[0], "12345", 1)]) == {b[0]}  # its slot and token are given back
    assert shared.store.in_flight("carrier", T0) == 1
    assert shared.take(T0, bases={"12345": 1})[1] == {"12345": 0}
    shared.release(T0 + 1, holds=[("12345", a[0])])  # the call now waits in the queue
    assert shared.take(T0 + 1, bases={"12345": 1})[1] == {"12345": 1}


def test_a_clock_behind_the_buckets_never_refills_it(dialer_redis):
    shared = Shared(dialer_redis, max_outbound=100, rate=1.0)
    assert len(shared.take(T0 + 10)[0]) == 1
    assert shared.take(T0 + 9.5)[0] == []  # another instance's clock, half a second late
    assert shared.take(T0 + 10.5)[0] == []
    assert len(shared.take(T0 + 11)[0]) == 1
