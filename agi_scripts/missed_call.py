#!/usr/bin/env python3
"""Classic AGI safety net: record a missed (abandoned / unanswered) 12345 call.

Run by Asterisk itself from the inbound channel's hang-up handler
([hotline-missed] in extensions.conf), so a missed call is recorded even while
the gateway is stopped. Dependencies: pyst2 and redis only.

    AGI(hotline/missed_call.py,REDIS_URL)

REDIS_URL is a redis-py URL (``redis://[[user]:password@]host:port/db``) or,
with Redis Sentinel, ``redis+sentinel://[[user]:password@]host:port,host:port/master/db``:
the sentinels are asked for the primary of ``master`` (credentials and db are the
primary's). Asterisk splits application arguments at commas, so the sentinel
list arrives as several arguments: they are joined again.

Writes, idempotently per call id:
  hotline:missed:calls   STREAM  one entry per missed call (for the callback dialer)
  hotline:missed:seen:ID STRING  guard so a re-run of the handler adds nothing
If Redis does not answer, the record is appended to a JSON-lines spool file
(/var/spool/asterisk/hotline/missed.jsonl) that the gateway replays: the call
is never lost. The caller's number is stored (the callback needs it) but never
printed to Asterisk's log; the log line shows it masked.
"""
from __future__ import annotations

import json
import os
import sys
import time
from urllib.parse import unquote

SPOOL = os.environ.get("HOTLINE_MISSED_SPOOL", "/var/spool/asterisk/hotline/missed.jsonl")
PREFIX = "hotline"
SENTINEL_SCHEME = "redis+sentinel://"
#: seconds to connect and to answer, each sentinel and the primary (the hang-up handler must not linger)
TIMEOUT = 1.0
FIELDS = (
    "HOTLINE_CALL_ID",
    "QUEUESTATUS",
    "HOTLINE_QUEUE_JOINED",
    "HOTLINE_QUEUE_ATTEMPT",
    "HOTLINE_NEXT",
    "HOTLINE_CHOICES",
    "AGISTATUS",
    "HANGUPCAUSE",
    "DIALSTATUS",
)


def mask(number: str) -> str:
    digits = "".join(ch for ch in number if ch.isdigit())
    if len(digits) <= 6:
        return number
    tail = 4 if len(digits) >= 10 else 2
    return digits[:3] + "*" * (len(digits) - 3 - tail) + digits[-tail:]


def build_record(agi, now: float) -> dict:
    values = {name: (agi.get_variable(name) or "") for name in FIELDS}
    caller = agi.env.get("agi_callerid", "")
    if caller in ("", "unknown"):
        caller = agi.get_variable("CALLERID(num)") or ""
    joined = values["HOTLINE_QUEUE_JOINED"]
    try:
        wait = max(0.0, now - float(joined)) if joined else None
    except ValueError:
        wait = None
    call_id = values["HOTLINE_CALL_ID"] or agi.env.get("agi_uniqueid", "")
    return {
        "call_id": call_id,
        "caller": caller,
        "channel": agi.env.get("agi_channel", ""),
        "missed_at": f"{now:.3f}",
        "reached_queue": "1" if joined else "0",
        "wait_seconds": "" if wait is None else f"{wait:.1f}",
        "queue_status": values["QUEUESTATUS"],
        "queue_attempts": values["HOTLINE_QUEUE_ATTEMPT"],
        "agi_status": values["AGISTATUS"],
        "hangup_cause": values["HANGUPCAUSE"],
        "choices": values["HOTLINE_CHOICES"],
        "source": "agi-safety-net",
    }


def redis_url_of(argv: list[str]) -> str:
    """The REDIS_URL argument: Asterisk splits a redis+sentinel:// URL's sentinel list at its commas."""
    return ",".join(argv[1:]) or "redis://127.0.0.1:6379/0"


def parse_sentinel_url(url: str) -> dict:
    """``redis+sentinel://[[user]:password@]host:port[,host:port…]/master[/db]`` → its parts; ValueError if bad."""
    if not url.startswith(SENTINEL_SCHEME):
        raise ValueError("not a redis+sentinel:// URL")
    userinfo, _, rest = url[len(SENTINEL_SCHEME):].rpartition("@")
    hosts, _, path = rest.partition("/")
    names = [part for part in path.split("/") if part]
    if not names or len(names) > 2 or (len(names) == 2 and not names[1].isdigit()):
        raise ValueError("expected /master or /master/db after the sentinels")
    sentinels = []
    for entry in hosts.split(","):
        host, _, port = entry.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ValueError("a sentinel is not host:port")
        sentinels.append((host.strip("[]"), int(port)))
    username, _, password = userinfo.partition(":")
    return {
        "sentinels": sentinels, "master": names[0], "db": int(names[1]) if len(names) == 2 else 0,
        "username": unquote(username) or None, "password": unquote(password) if password else None,
    }


def connect(redis_url: str):
    """A redis-py client of ``redis_url``: the URL's server, or the primary the sentinels name."""
    import redis

    if not redis_url.startswith(SENTINEL_SCHEME):
        return redis.Redis.from_url(redis_url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)
    from redis.sentinel import Sentinel

    parts = parse_sentinel_url(redis_url)
    sentinel = Sentinel(parts["sentinels"], sentinel_kwargs={"socket_timeout": TIMEOUT,
                                                             "socket_connect_timeout": TIMEOUT})
    options = {"username": parts["username"]} if parts["username"] else {}
    return sentinel.master_for(parts["master"], socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT,
                               db=parts["db"], password=parts["password"], **options)


def store(redis_url: str, record: dict) -> str:
    """Redis first (idempotent); the spool file if Redis is away. Returns where it went."""
    try:
        client = connect(redis_url)
        guard = f"{PREFIX}:missed:seen:{record['call_id']}"
        if not client.set(guard, "1", nx=True, ex=7 * 24 * 3600):
            return "duplicate"
        try:
            client.xadd(f"{PREFIX}:missed:calls", record)
        except Exception:
            client.delete(guard)
            raise
        return "redis"
    except Exception as exc:  # noqa: BLE001 — any failure: keep the call in the spool
        os.makedirs(os.path.dirname(SPOOL), exist_ok=True)
        with open(SPOOL, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({**record, "spool_reason": type(exc).__name__}, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return "spool"


def main(argv: list[str]) -> int:
    import asterisk.agi

    devnull = open(os.devnull, "w")
    agi = asterisk.agi.AGI(stderr=devnull)  # pyst2 prints its debugging to stderr
    redis_url = redis_url_of(argv)
    record = build_record(agi, time.time())
    where = store(redis_url, record)
    agi.verbose(f"hotline missed call {record['call_id']} from {mask(record['caller'])}: {where}", 2)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
