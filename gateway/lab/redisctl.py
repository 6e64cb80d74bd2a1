"""Make sure a Redis answers at HOTLINE_REDIS_URL; start one only if needed.

A Redis the lab did not start is never stopped by it: the lab records a pid
file only for the redis-server it launched itself.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import redis

from . import procs
from .errors import LabError

__all__ = ["RedisControl"]

Report = Callable[[str], None]

_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


class RedisControl:
    def __init__(self, url: str, state_dir: Path) -> None:
        self.url = url
        self.state_dir = state_dir
        self.pid_file = state_dir / "redis.pid"
        self.log_file = state_dir / "redis.log"

    def client(self, timeout: float = 1.0) -> redis.Redis:
        return redis.Redis.from_url(
            self.url, socket_timeout=timeout, socket_connect_timeout=timeout, decode_responses=True
        )

    def ping(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def started_by_lab(self) -> int | None:
        pid = procs.read_pid(self.pid_file)
        return pid if procs.pid_alive(pid) else None

    def ensure(self, report: Report) -> None:
        if self.ping():
            owner = "started by the lab" if self.started_by_lab() else "not started by the lab"
            report(f"redis: answering at {self.url} ({owner})")
            return
        parsed = urlparse(self.url)
        if parsed.scheme != "redis" or (parsed.hostname or "127.0.0.1") not in _LOCAL_HOSTS:
            raise LabError(f"no Redis answers at {self.url}, and the lab only starts a local one")
        if not shutil.which("redis-server"):
            raise LabError("no Redis answers and redis-server is not installed (apt-get install redis-server)")
        port = parsed.port or 6379
        self.state_dir.mkdir(parents=True, exist_ok=True)
        procs.remove_pid(self.pid_file)
        procs.run(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "yes",
                "--pidfile",
                str(self.pid_file),
                "--logfile",
                str(self.log_file),
            ],
            timeout=30,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.ping():
                report(f"redis: started redis-server on 127.0.0.1:{port} (pid {procs.read_pid(self.pid_file)})")
                return
            time.sleep(0.1)
        raise LabError(f"redis-server did not answer within 10 s; see {self.log_file}")

    def stop_if_ours(self, report: Report) -> None:
        pid = self.started_by_lab()
        if pid is None:
            procs.remove_pid(self.pid_file)
            return
        report(f"redis: stopping the redis-server the lab started (pid {pid}): {procs.stop_pid(pid)}")
        procs.remove_pid(self.pid_file)

    def read_drafts(self, call_id: str, key_prefix: str = "hotline") -> list[dict]:
        """The draft work orders stored for a call's voice messages (``<prefix>:draft:<recording id>``;
        recording ids start with the call id, dots as dashes)."""
        pattern = f"{key_prefix}:draft:{call_id.replace('.', '-')}-*"
        try:
            client = self.client()
            keys = sorted(client.scan_iter(match=pattern, count=1000))
            values = [client.get(key) for key in keys]
        except redis.RedisError:
            return []
        drafts = []
        for value in values:
            try:
                drafts.append(json.loads(value))
            except (TypeError, ValueError):
                continue
        return drafts

    def read_call(self, call_id: str, key_prefix: str = "hotline") -> dict[str, str] | None:
        try:
            data = self.client().hgetall(f"{key_prefix}:call:{call_id}")
        except redis.RedisError:
            return None
        return data or None
