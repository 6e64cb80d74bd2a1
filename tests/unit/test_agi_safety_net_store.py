"""The classic AGI safety net (agi_scripts/missed_call.py) stores each missed call once, and in the
spool file when Redis is away — tested against a private redis-server (the dialer tests' one)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from .dialer_redis import PORT, _redis_server, dialer_redis  # noqa: F401 — fixtures

SCRIPT = Path(__file__).resolve().parents[2] / "agi_scripts" / "missed_call.py"


@pytest.fixture
def missed_call(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("missed_call_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "SPOOL", str(tmp_path / "spool" / "missed.jsonl"))
    return module


class FakeAgi:
    def __init__(self, variables, env):
        self.variables, self.env = variables, env

    def get_variable(self, name):
        return self.variables.get(name, "")


def record(module, call_id="1764000000.7"):
    agi = FakeAgi({"HOTLINE_CALL_ID": call_id, "HOTLINE_QUEUE_JOINED": "1764000000.0", "QUEUESTATUS": "",
                   "HANGUPCAUSE": "16"}, {"agi_callerid": "13800138000", "agi_channel": "PJSIP/carrier-0001"})
    return module.build_record(agi, 1764000012.5)


def test_a_rerun_of_the_hang_up_handler_adds_nothing(missed_call, dialer_redis):
    url = f"redis://127.0.0.1:{PORT}/0"
    first = record(missed_call)
    assert first["wait_seconds"] == "12.5" and first["reached_queue"] == "1"
    assert missed_call.store(url, first) == "redis"
    assert missed_call.store(url, record(missed_call)) == "duplicate"
    entries = dialer_redis.xrange("hotline:missed:calls", "-", "+")
    assert len(entries) == 1 and entries[0][1]["call_id"] == "1764000000.7"
    assert entries[0][1]["caller"] == "13800138000"
    assert missed_call.store(url, record(missed_call, "1764000000.8")) == "redis"  # another call: stored
    assert dialer_redis.xlen("hotline:missed:calls") == 2


def test_redis_away_the_call_goes_to_the_spool_file_and_nothing_is_lost(missed_call):
    where = missed_call.store("redis://127.0.0.1:1/0", record(missed_call))
    assert where == "spool"
    [line] = Path(missed_call.SPOOL).read_text().splitlines()
    stored = json.loads(line)
    assert stored["call_id"] == "1764000000.7" and stored["caller"] == "13800138000"
    assert stored["spool_reason"]  # why it is in the spool (the gateway replays it)


def test_the_log_line_masks_the_callers_number(missed_call):
    assert missed_call.mask("13800138000") == "138****8000"
    assert missed_call.mask("110") == "110"


def test_a_sentinel_url_split_at_its_commas_by_asterisk_is_joined_again(missed_call):
    argv = ["missed_call.py", "redis+sentinel://10.0.0.1:26379", "10.0.0.2:26379", "10.0.0.3:26379/hotline/2"]
    url = missed_call.redis_url_of(argv)
    assert url == "redis+sentinel://10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379/hotline/2"
    assert missed_call.parse_sentinel_url(url) == {
        "sentinels": [("10.0.0.1", 26379), ("10.0.0.2", 26379), ("10.0.0.3", 26379)], "master": "hotline",
        "db": 2, "username": None, "password": None,
    }
    assert missed_call.redis_url_of(["missed_call.py", "redis://127.0.0.1:6380/1"]) == "redis://127.0.0.1:6380/1"
    assert missed_call.redis_url_of(["missed_call.py"]) == "redis://127.0.0.1:6379/0"


def test_a_sentinel_url_carries_the_primarys_credentials_and_defaults_to_db_0(missed_call):
    parts = missed_call.parse_sentinel_url("redis+sentinel://app:p%40ss@[::1]:26379/calls")
    assert parts == {"sentinels": [("::1", 26379)], "master": "calls", "db": 0, "username": "app",
                     "password": "p@ss"}


@pytest.mark.parametrize("url", ["redis+sentinel://h:1", "redis+sentinel://h:1/m/x", "redis+sentinel://h/m/0",
                                 "redis+sentinel://h:1/m/0/extra"])
def test_a_bad_sentinel_url_sends_the_call_to_the_spool_file(missed_call, url):
    with pytest.raises(ValueError):
        missed_call.parse_sentinel_url(url)
    assert missed_call.store(url, record(missed_call)) == "spool"
    assert json.loads(Path(missed_call.SPOOL).read_text())["spool_reason"] == "ValueError"
