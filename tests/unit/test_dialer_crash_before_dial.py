"""A gateway killed between a job's lease (and its write-ahead "dialing" mark) and the Originate:
the call was never placed. The next instance must settle that attempt as failed (no record in
AstDB, no channel), retry it by the policy, and dial the citizen exactly once. task.Clock, the
scripted AMI and the real job store (private Redis), as in test_dialer_service."""
from __future__ import annotations

from twisted.internet import task

from gateway.dialer.service import DialerSettings
from gateway.lab.faultcount import doubled_dials

from .dialer_redis import _redis_server, dialer_redis  # noqa: F401 — fixtures
from .test_dialer_service import START, FakeAmi, Rig


def test_the_test_pause_holds_the_originate_until_it_ends(dialer_redis):
    rig = Rig(dialer_redis, settings=DialerSettings(min_talk=10, lease=60, test_pause=5))
    rig.add("cb-1")
    rig.tick()
    assert rig.store.get("cb-1").phase == "dialing"  # the write-ahead is done
    assert rig.ami.originates() == []
    rig.clock.advance(5)
    assert len(rig.ami.originates()) == 1


def test_a_gateway_killed_after_the_write_ahead_but_before_the_originate_dials_the_job_once(dialer_redis):
    ami = FakeAmi()
    dead_clock = task.Clock()  # the killed process's timers: never run again
    dead_clock.advance(START)
    first = Rig(dialer_redis, owner="gw-killed", clock=dead_clock, ami=ami,
                settings=DialerSettings(min_talk=10, lease=60, test_pause=5))
    first.add("cb-1")
    first.tick()
    assert first.store.get("cb-1").phase == "dialing" and ami.originates() == []
    del first  # SIGKILL inside the pause: no Originate was ever sent

    clock = task.Clock()
    clock.advance(START + 61)  # the dead instance's lease has run out
    second = Rig(dialer_redis, owner="gw-after", clock=clock, ami=ami)
    second.tick()
    clock.advance(0)  # the recovered attempt is settled from Asterisk: no record, no channel
    history = second.store.history("cb-1")
    assert [e["event"] for e in history if e["event"] in ("lease-recovered", "attempt")] == \
        ["lease-recovered", "attempt"], history
    assert [e for e in history if e["event"] == "attempt"][0]["outcome"] == "failed"
    assert second.store.get("cb-1").state == "pending" and ami.originates() == []
    for _ in range(20):  # past the failed backoff: the retry is the first real call
        clock.advance(60)
        second.tick()
        if ami.originates():
            break
    [(fields, _variables, _)] = ami.originates()
    ami.queue()
    ami.db[fields["ChannelId"]] = "result,1,90"
    clock.advance(400)
    second.tick()
    clock.advance(1)
    assert second.finals == [("cb-1", "connected")]
    assert len(ami.originates()) == 1
    assert doubled_dials(second.store.history("cb-1")) == 0
