"""agi_scripts/missed_call.py, run by the real Asterisk from the hang-up handler,
with the gateway stopped: no missed call is lost, none is recorded twice, and a
served call is not recorded at all."""
from __future__ import annotations

import json
import subprocess
import time

import redis

from gateway.lab import CallRequest, Lab

SPOOL = "/var/spool/asterisk/hotline/missed.jsonl"


def missed_entries(lab: Lab, call_id: str, wait: float = 5.0) -> list[dict]:
    client = redis.Redis.from_url(lab.settings.redis_url, decode_responses=True, socket_timeout=2)
    deadline = time.monotonic() + wait
    while True:
        entries = [fields for _id, fields in client.xrange("hotline:missed:calls", "-", "+") if fields["call_id"] == call_id]
        if entries or time.monotonic() > deadline:
            return entries
        time.sleep(0.2)


def test_abandoned_in_queue_is_recorded_without_the_gateway(gateway_down: Lab) -> None:
    result = gateway_down.call(CallRequest(hangup_after=4, agent_ring=15, caller="13811112222"))
    assert result.queue_joined and result.abandoned
    (entry,) = missed_entries(gateway_down, result.call_id)
    assert entry["caller"] == "13811112222" and entry["reached_queue"] == "1"
    assert entry["agi_status"] == "FAILURE", "the gateway was down for this call"
    assert 0 < float(entry["wait_seconds"]) < 10
    log = gateway_down.chroot.path("/var/log/asterisk/messages").read_text(errors="replace")
    assert "138****2222" in log, "the script logs the call, masked"
    assert "13811112222" not in log, "the number must only appear masked in Asterisk's log"


def test_served_call_is_not_a_missed_call(gateway_down: Lab) -> None:
    result = gateway_down.call(CallRequest(hangup_after=30))
    assert result.agent_answered
    assert missed_entries(gateway_down, result.call_id, wait=2.0) == []


def test_redis_down_missed_call_goes_to_the_spool_file(gateway_down: Lab) -> None:
    spool = gateway_down.chroot.path(SPOOL)
    before = spool.read_text().count("\n") if spool.exists() else 0
    port = str(redis.Redis.from_url(gateway_down.settings.redis_url).connection_pool.connection_kwargs["port"])
    subprocess.run(["redis-cli", "-p", port, "shutdown", "nosave"], capture_output=True, check=False)
    try:
        result = gateway_down.call(CallRequest(hangup_after=3, agent_ring=15, caller="13833334444"))
    finally:
        gateway_down.redis.ensure(lambda _m: None)
    lines = spool.read_text().splitlines()[before:]
    records = [json.loads(line) for line in lines]
    assert any(r["call_id"] == result.call_id and r["caller"] == "13833334444" for r in records), lines
