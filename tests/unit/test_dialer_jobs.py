"""The Redis job store against a real (private) redis-server: order, merging, leases, caps, races."""
from __future__ import annotations

import threading

import pytest

from gateway.dialer.jobs import JobStore, NewJob

from .dialer_redis import _redis_server, dialer_redis  # noqa: F401 — fixtures

NOW = 1_800_000_000.0


def job(job_id, number="13800138000", original=NOW - 100, campaign="callback", expires=NOW + 86400):
    e164 = "+86" + number.lstrip("0")
    return NewJob(job_id, campaign, number, e164, original, original, expires)


def store(client, owner="a"):
    return JobStore(client, key_prefix="t", owner=owner)


def test_due_jobs_are_claimed_first_in_first_out_by_original_time(dialer_redis):
    s = store(dialer_redis)
    s.add(job("late", "13800000002", original=NOW - 10), NOW)
    s.add(job("early", "13800000001", original=NOW - 50), NOW)
    s.add(job("future", "13800000003", original=NOW + 60), NOW)
    assert [j.id for j in s.claim(NOW, 10, 30)] == ["early", "late"]


def mode_job(job_id, number, original, mode, queue="12345"):
    e164 = "+86" + number.lstrip("0")
    return NewJob(job_id, "callback", number, e164, original, original, NOW + 86400, mode=mode, queue=queue)


def test_jobs_of_a_gated_mode_wait_for_room_in_their_queue_while_the_jobs_behind_them_go(dialer_redis):
    s = store(dialer_redis)
    s.add(mode_job("cb-1", "13800000001", NOW - 50, "citizen-first"), NOW)
    s.add(mode_job("sv-1", "13800000002", NOW - 40, "survey"), NOW)
    s.add(mode_job("cb-2", "13800000003", NOW - 30, "agent-first"), NOW)
    s.add(mode_job("cb-3", "13800000004", NOW - 20, "citizen-first", queue="elderly"), NOW)
    s.add(mode_job("sv-2", "13800000005", NOW - 10, "survey"), NOW)
    gated = ("citizen-first", "agent-first")
    assert [j.id for j in s.claim(NOW, 10, 30, gated_modes=gated, room={"12345": 0})] == ["sv-1", "sv-2"]
    assert [j.id for j in s.claim(NOW, 10, 30, gated_modes=gated, room={"12345": 1, "elderly": 1})] == [
        "cb-1", "cb-3"]  # one each: the first in line of each queue; a queue the room does not name gets none
    assert [j.id for j in s.claim(NOW, 10, 30, gated_modes=gated, room={})] == []
    assert [j.id for j in s.claim(NOW, 10, 30)] == ["cb-2"]  # no room given: no gate


def test_a_gated_claim_stops_at_its_limit_and_its_scan(dialer_redis):
    s = store(dialer_redis)
    for i in range(6):
        s.add(mode_job(f"cb-{i}", f"1380000000{i}", NOW - 100 + i, "citizen-first"), NOW)
    s.add(mode_job("sv-1", "13900000001", NOW - 50, "survey"), NOW)
    s.add(mode_job("sv-2", "13900000002", NOW - 40, "survey"), NOW)
    gated = ("citizen-first",)
    assert [j.id for j in s.claim(NOW, 1, 30, gated_modes=gated, room={}, scan=5)] == []
    assert [j.id for j in s.claim(NOW, 1, 30, gated_modes=gated, room={})] == ["sv-1"]
    assert s.counts()["due"] == 7


def test_adding_the_same_job_twice_is_a_no_op(dialer_redis):
    s = store(dialer_redis)
    assert s.add(job("cb-1"), NOW) == ("added", "cb-1")
    assert s.add(job("cb-1"), NOW) == ("exists", "cb-1")
    assert len(s.claim(NOW, 10, 30)) == 1


def test_a_repeat_from_the_same_number_within_the_window_merges_and_keeps_the_earlier_place(dialer_redis):
    s = store(dialer_redis)
    s.add(job("cb-1", original=NOW - 10), NOW, merge_window=600)
    s.add(job("other", "13900000000", original=NOW - 20), NOW, merge_window=600)
    assert s.add(job("cb-2", original=NOW - 30), NOW, merge_window=600) == ("merged", "cb-1")
    merged = s.get("cb-1")
    assert merged.merged == 1 and merged.original_at == NOW - 30
    assert [j.id for j in s.claim(NOW, 10, 30)] == ["cb-1", "other"]


def test_a_repeat_after_the_merge_window_is_a_new_job(dialer_redis):
    s = store(dialer_redis)
    s.add(job("cb-1"), NOW - 1000, merge_window=600)
    assert s.add(job("cb-2"), NOW, merge_window=600) == ("added", "cb-2")


def test_write_ahead_dialing_counts_the_attempt_and_records_history(dialer_redis):
    s = store(dialer_redis)
    s.add(job("cb-1"), NOW)
    s.claim(NOW, 1, 30)
    assert s.mark_dialing("cb-1", "att-1", NOW, 30, cap=3) == ("ok", 1)
    assert s.finish("cb-1", NOW + 40, {"event": "attempt", "outcome": "busy"}, retry_at=NOW + 300) == 1
    got = s.get("cb-1")
    assert got.state == "pending" and got.attempts == 1 and got.due_at == NOW + 300
    assert [h["event"] for h in s.history("cb-1")] == ["scheduled", "dialing", "attempt"]


def test_a_number_is_not_dialled_more_than_the_cap_in_24_hours_across_jobs(dialer_redis):
    s = store(dialer_redis)
    for i in range(3):
        s.add(job(f"j{i}", campaign=f"c{i}"), NOW)
    claimed = s.claim(NOW, 3, 30)
    assert s.mark_dialing(claimed[0].id, "a0", NOW, 30, cap=2)[0] == "ok"
    assert s.mark_dialing(claimed[1].id, "a1", NOW + 10, 30, cap=2)[0] == "ok"
    status, frees_at = s.mark_dialing(claimed[2].id, "a2", NOW + 20, 30, cap=2)
    assert status == "capped" and frees_at == NOW + 86400


def test_a_number_on_the_do_not_call_list_is_never_dialled(dialer_redis):
    s = store(dialer_redis)
    s.add(job("cb-1"), NOW)
    s.add_dnc("+8613800138000")
    s.claim(NOW, 1, 30)
    assert s.mark_dialing("cb-1", "att", NOW, 30, cap=3) == ("dnc", None)


def test_a_pending_callback_is_cancelled_at_once_and_its_number_is_free_again(dialer_redis):
    s = store(dialer_redis)
    s.add(job("cb-1"), NOW, merge_window=600)
    assert s.cancel(s.open_job("callback", "+8613800138000"), NOW, "answered-again") == 2
    assert s.get("cb-1").outcome == "cancelled"
    assert s.claim(NOW, 10, 30) == []
    assert s.add(job("cb-2"), NOW, merge_window=600) == ("added", "cb-2")



def test_every_open_job_of_a_number_is_cancelled_in_one_step_not_only_the_newest(dialer_redis):
    """Merge window (here 600 s) shorter than expiry: a number can hold two pending jobs."""
    s = store(dialer_redis)
    s.add(job("cb-old"), NOW - 1000, merge_window=600)
    assert s.add(job("cb-new"), NOW, merge_window=600) == ("added", "cb-new")
    s.add(job("cb-other", "13900139000"), NOW, merge_window=600)
    assert s.open_jobs("callback", "+8613800138000") == {"cb-old", "cb-new"}
    assert s.cancel_open("callback", "+8613800138000", NOW, "answered-again") == {"cb-old": 2, "cb-new": 2}
    assert s.get("cb-old").outcome == s.get("cb-new").outcome == "cancelled"
    assert [j.id for j in s.claim(NOW, 10, 30)] == ["cb-other"]
    assert s.open_jobs("callback", "+8613800138000") == set()
    assert s.open_job("callback", "+8613800138000") is None
    assert s.cancel_open("callback", "+8613800138000", NOW, "answered-again") == {}


def test_cancelling_a_numbers_open_jobs_stops_the_retries_of_a_call_in_progress_once(dialer_redis):
    s = store(dialer_redis)
    s.add(job("cb-old", original=NOW - 1100), NOW - 1000, merge_window=600)
    assert [j.id for j in s.claim(NOW - 1000, 1, 30)] == ["cb-old"]
    s.mark_dialing("cb-old", "att", NOW - 1000, 30, cap=3)
    s.add(job("cb-new"), NOW, merge_window=600)
    assert s.cancel_open("callback", "+8613800138000", NOW, "answered-again") == {"cb-old": 1, "cb-new": 2}
    assert s.open_jobs("callback", "+8613800138000") == {"cb-old"}  # still open until its call ends
    assert s.cancel_open("callback", "+8613800138000", NOW + 1, "answered-again") == {}  # asked once
    assert s.finish("cb-old", NOW + 5, {"outcome": "no_answer"}, retry_at=NOW + 600) == 2
    assert s.get("cb-old").outcome == "cancelled"
    assert s.open_jobs("callback", "+8613800138000") == set()


def test_a_numbers_open_set_follows_finish_expiry_and_cancel_of_each_job(dialer_redis):
    s = store(dialer_redis)
    for i, created in enumerate((NOW - 2000, NOW - 1000, NOW)):
        s.add(job(f"cb-{i}", original=NOW - 3000 + i), created, merge_window=600)
    assert s.open_jobs("callback", "+8613800138000") == {"cb-0", "cb-1", "cb-2"}
    claimed = [j.id for j in s.claim(NOW, 2, 30)]
    assert claimed == ["cb-0", "cb-1"]
    s.finish("cb-0", NOW, None, final="connected")
    s.finish("cb-1", NOW, None, final="expired")
    assert s.open_jobs("callback", "+8613800138000") == {"cb-2"}
    assert s.cancel("cb-2", NOW, "api") == 2
    assert s.open_jobs("callback", "+8613800138000") == set()


def test_cancelling_a_number_also_finds_a_job_written_before_open_sets_existed(dialer_redis):
    """A job stored by an older gateway has only the newest-job pointer; it is cancelled too."""
    s = store(dialer_redis)
    s.add(job("cb-legacy"), NOW, merge_window=600)
    dialer_redis.hdel("t:dialer:job:cb-legacy", "open_set")
    dialer_redis.delete("t:dialer:open-set:callback:+8613800138000")
    assert s.cancel_open("callback", "+8613800138000", NOW, "answered-again") == {"cb-legacy": 2}
    assert s.open_job("callback", "+8613800138000") is None

def test_cancelling_a_call_in_progress_only_stops_retries(dialer_redis):
    s = store(dialer_redis)
    s.add(job("cb-1"), NOW)
    s.claim(NOW, 1, 30)
    s.mark_dialing("cb-1", "att", NOW, 30, cap=3)
    assert s.cancel("cb-1", NOW, "api") == 1
    assert s.finish("cb-1", NOW + 5, {"outcome": "no_answer"}, retry_at=NOW + 600) == 2
    assert s.get("cb-1").outcome == "cancelled"


def test_a_final_outcome_is_written_once(dialer_redis):
    s = store(dialer_redis)
    s.add(job("cb-1"), NOW)
    s.claim(NOW, 1, 30)
    assert s.finish("cb-1", NOW, None, final="connected") == 2
    assert s.finish("cb-1", NOW, None, final="expired") == 0
    assert s.get("cb-1").outcome == "connected"


def test_a_lease_that_expires_before_dialing_goes_back_to_its_place_in_line(dialer_redis):
    crashed, survivor = store(dialer_redis, "crashed"), store(dialer_redis, "survivor")
    crashed.add(job("cb-1", original=NOW - 100), NOW)
    crashed.claim(NOW, 1, 30)
    assert survivor.claim(NOW + 1, 1, 30) == []
    assert survivor.recover(NOW + 31, 30) == []  # requeued, nothing to settle
    again = survivor.claim(NOW + 31, 1, 30)
    assert [j.id for j in again] == ["cb-1"] and again[0].attempts == 0
    assert crashed.mark_dialing("cb-1", "late", NOW + 32, 30, cap=3) == ("lost", None)


def test_a_crashed_dialing_lease_is_taken_over_for_settling_not_redialled(dialer_redis):
    crashed, survivor = store(dialer_redis, "crashed"), store(dialer_redis, "survivor")
    crashed.add(job("cb-1"), NOW)
    crashed.claim(NOW, 1, 30)
    crashed.mark_dialing("cb-1", "att-1", NOW, 30, cap=3)
    assert survivor.recover(NOW + 10, 30) == []  # lease still valid
    orphans = survivor.recover(NOW + 31, 30)
    assert [(j.id, j.attempt_id, j.phase) for j in orphans] == [("cb-1", "att-1", "dialing")]
    assert survivor.claim(NOW + 31, 10, 30) == []  # not back in the due index: nobody dials it again
    assert crashed.finish("cb-1", NOW + 40, {"outcome": "answered"}, final="connected") == 0  # fenced off
    assert survivor.finish("cb-1", NOW + 40, {"outcome": "answered"}, final="connected") == 2


def test_an_attempt_in_progress_is_taken_over_only_by_an_instance_of_the_node_that_placed_it(dialer_redis):
    """Several nodes: the attempt's outcome is in the AstDB of the node that dialled it, so only
    that node's instances may settle it; another node's instance leaves it (no second dial)."""
    crashed = JobStore(dialer_redis, key_prefix="t", owner="gw1", node="ast1")
    other_node = JobStore(dialer_redis, key_prefix="t", owner="gw2", node="ast2")
    same_node = JobStore(dialer_redis, key_prefix="t", owner="gw1-restarted", node="ast1")
    for job_id in ("cb-1", "cb-2"):
        crashed.add(job(job_id, number="1380013800" + job_id[-1]), NOW)
    crashed.claim(NOW, 2, 30)
    crashed.mark_dialing_many([("cb-1", "att-1")], NOW, 30, cap=3)
    assert other_node.recover(NOW + 31, 30) == []  # cb-1 left to ast1; cb-2 (never dialled) requeued
    assert [j.id for j in other_node.claim(NOW + 31, 10, 30)] == ["cb-2"]
    orphans = same_node.recover(NOW + 32, 30)
    assert [(j.id, j.attempt_id) for j in orphans] == [("cb-1", "att-1")]
    assert dialer_redis.hget("t:dialer:job:cb-1", "node") == "ast1"


def test_renewing_keeps_a_long_call_leased(dialer_redis):
    owner, other = store(dialer_redis, "owner"), store(dialer_redis, "other")
    owner.add(job("cb-1"), NOW)
    owner.claim(NOW, 1, 30)
    owner.mark_dialing("cb-1", "att", NOW, 30, cap=3)
    assert owner.renew(["cb-1"], NOW + 25, 30) == 1
    assert other.recover(NOW + 40, 30) == []
    assert other.renew(["cb-1"], NOW + 41, 30) == 0


def test_two_instances_racing_for_the_same_jobs_dial_each_exactly_once(dialer_redis):
    import redis

    s = store(dialer_redis)
    for i in range(300):
        s.add(job(f"cb-{i}", f"138{i:08d}", original=NOW - 1000 + i), NOW)
    dialled: dict[str, list[str]] = {"a": [], "b": []}

    def worker(owner):
        client = redis.Redis(port=dialer_redis.connection_pool.connection_kwargs["port"], decode_responses=True)
        mine = JobStore(client, key_prefix="t", owner=owner)
        while True:
            jobs = mine.claim(NOW, 7, 30)
            if not jobs:
                return
            for j in jobs:
                status, _ = mine.mark_dialing(j.id, f"{owner}-{j.id}", NOW, 30, cap=3)
                if status == "ok":
                    dialled[owner].append(j.id)
                    mine.finish(j.id, NOW, {"outcome": "answered"}, final="connected")

    threads = [threading.Thread(target=worker, args=(o,)) for o in dialled]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    everything = dialled["a"] + dialled["b"]
    assert len(everything) == 300 and len(set(everything)) == 300


def test_listing_shows_the_most_recent_first_filtered_by_state(dialer_redis):
    s = store(dialer_redis)
    s.add(job("old", "13800000001", original=NOW - 200), NOW - 10)
    s.add(job("new", "13800000002"), NOW)
    assert [j.id for j in s.list("callback")] == ["new", "old"]
    s.claim(NOW, 1, 30)
    assert [j.id for j in s.list("callback", state="pending")] == ["new"]


@pytest.mark.parametrize("bad", [{"final": None, "retry_at": None}])
def test_finish_needs_a_final_outcome_or_a_retry_time(dialer_redis, bad):
    with pytest.raises(ValueError):
        store(dialer_redis).finish("x", NOW, None, **bad)


def test_a_batch_write_ahead_checks_and_writes_each_job_on_its_own(dialer_redis):
    s = store(dialer_redis)
    s.add(job("ok-1", "13800000001"), NOW)
    s.add(job("dnc", "13800000002"), NOW)
    s.add(job("capped", "13800000003", campaign="c2"), NOW)
    s.add(job("ok-2", "13800000004"), NOW)
    s.add_dnc("+8613800000002")
    s.claim(NOW, 4, 30)
    s.add(job("not-mine", "13800000005"), NOW)  # pending, never claimed: its lease is lost
    marks = s.mark_dialing_many([("ok-1", "a1"), ("dnc", "a2"), ("capped", "a3"), ("ok-2", "a4"),
                                 ("not-mine", "a5")], NOW, 30, cap=0)
    assert marks == [("ok", 1), ("dnc", None), ("ok", 1), ("ok", 1), ("lost", None)]
    s.finish("capped", NOW + 1, None, retry_at=NOW + 2)
    # the same number twice in one batch: the second one sees the first one's dial
    s.add(job("same", "13800000003", campaign="c3"), NOW)
    assert {j.id for j in s.claim(NOW + 2, 10, 30)} == {"not-mine", "capped", "same"}
    assert s.mark_dialing_many([("capped", "a6"), ("same", "a7")], NOW + 2, 30, cap=2) == [
        ("ok", 2), ("capped", NOW + 86400)]
    assert s.get("ok-2").phase == "dialing" and s.get("ok-2").attempt_id == "a4"
    assert [h["event"] for h in s.history("ok-1")] == ["scheduled", "dialing"]
    assert s.mark_dialing_many([], NOW, 30, cap=3) == []


def test_a_batch_finish_gives_each_job_its_own_result(dialer_redis):
    s = store(dialer_redis)
    for i in range(3):
        s.add(job(f"j{i}", f"1380000000{i}"), NOW)
    s.claim(NOW, 3, 30)
    results = s.finish_many([
        ("j0", NOW + 1, {"event": "attempt", "outcome": "connected"}, "connected", None),
        ("j1", NOW + 1, None, None, NOW + 300),
        ("j0", NOW + 2, None, "connected", None),  # already finished: not ours any more
        ("nope", NOW + 2, None, "expired", None),
    ])
    assert results == [2, 1, 0, 0]
    assert s.get("j0").outcome == "connected" and s.get("j1").state == "pending" and s.get("j1").due_at == NOW + 300
    assert s.get("j2").state == "leased"
    assert s.finish_many([]) == []
    with pytest.raises(ValueError):
        s.finish_many([("j2", NOW, None, None, None)])
