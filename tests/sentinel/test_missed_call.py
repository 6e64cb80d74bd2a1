"""The classic AGI safety net (agi_scripts/missed_call.py) with a ``redis+sentinel://`` URL: each
missed call reaches the primary the sentinels name, before and after a failover; with no sentinel
answering it goes to the spool file. Real redis-server/redis-sentinel; integration tests."""
from __future__ import annotations

import json
from pathlib import Path

from ..unit.test_agi_safety_net_store import missed_call, record  # noqa: F401 — missed_call: a fixture
from .conftest import NOBODY


def test_missed_calls_reach_the_primary_the_sentinels_name_before_and_after_a_failover(cluster, missed_call):
    url = cluster.missed_call_url
    argv = ["missed_call.py", *url.split(",")]  # as Asterisk hands the dialplan's global over
    assert missed_call.redis_url_of(argv) == url
    assert missed_call.store(url, record(missed_call, "1764000000.1")) == "redis"
    old = cluster.kill_primary()
    new = cluster.wait_failover(old)
    where = missed_call.store(url, record(missed_call, "1764000000.2"))
    assert where == "redis", Path(missed_call.SPOOL).read_text()
    assert missed_call.store(url, record(missed_call, "1764000000.2")) == "duplicate"
    entries = cluster.client(new).xrange("hotline:missed:calls", "-", "+")
    assert [fields["call_id"] for _, fields in entries] == ["1764000000.1", "1764000000.2"]
    assert not Path(missed_call.SPOOL).exists()


def test_with_no_sentinel_answering_the_missed_call_goes_to_the_spool_file(missed_call):
    url = f"redis+sentinel://{NOBODY}/hotline/0"
    assert missed_call.store(url, record(missed_call)) == "spool"
    stored = json.loads(Path(missed_call.SPOOL).read_text())
    assert stored["call_id"] == "1764000000.7" and stored["spool_reason"] == "MasterNotFoundError"
