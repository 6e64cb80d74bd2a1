"""Redis with Sentinel for the several-node lab: one primary, one replica, three sentinels.

Debian's ``redis-server`` and ``redis-sentinel`` on loopback ports, each in the
foreground of its own session with its own directory under the lab's state
directory, recorded by pid. The data nodes keep an append-only file written
with ``appendfsync always`` (the docker stack's setting), so a restarted node
loses nothing it acknowledged. Sentinels use quorum 2 and declare a primary down
after ``down_after_ms``; ``primary()`` asks them where the primary is now.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis

from . import procs
from .errors import LabError

__all__ = ["SentinelSet"]

Report = Callable[[str], None]


class SentinelSet:
    def __init__(
        self,
        state_dir: Path,
        host: str = "127.0.0.1",
        data_ports: tuple[int, int] = (6380, 6381),
        sentinel_ports: tuple[int, ...] = (26380, 26381, 26382),
        master: str = "hotline",
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 5000,
    ) -> None:
        self.dir = state_dir / "redis-sentinel"
        self.host = host
        self.data_ports = data_ports
        self.sentinel_ports = sentinel_ports
        self.master = master
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self._children: dict[int, subprocess.Popen] = {}

    # -- addresses -------------------------------------------------------------------
    @property
    def sentinels(self) -> str:
        """HOTLINE_REDIS_SENTINELS: ``host:port,host:port,...``."""
        return ",".join(f"{self.host}:{port}" for port in self.sentinel_ports)

    @property
    def missed_call_url(self) -> str:
        """The classic AGI safety net's Redis (agi_scripts/missed_call.py): through the sentinels."""
        return f"redis+sentinel://{self.sentinels}/{self.master}/0"

    def primary(self, timeout: float = 1.0) -> tuple[str, int] | None:
        """Where the sentinels say the primary is (None: no sentinel answered)."""
        for port in self.sentinel_ports:
            try:
                client = redis.Redis(self.host, port, socket_timeout=timeout, socket_connect_timeout=timeout)
                reply = client.execute_command("SENTINEL", "get-master-addr-by-name", self.master)
            except redis.RedisError:
                continue
            if reply:
                return reply[0].decode(), int(reply[1])
        return None

    def client(self, port: int, timeout: float = 1.0) -> redis.Redis:
        return redis.Redis(self.host, port, socket_timeout=timeout, socket_connect_timeout=timeout,
                           decode_responses=True)

    def primary_client(self, timeout: float = 1.0) -> redis.Redis:
        address = self.primary(timeout)
        if address is None:
            raise LabError(f"no sentinel of {self.sentinels} answered")
        return self.client(address[1], timeout)

    # -- processes -------------------------------------------------------------------
    def _pid_file(self, port: int) -> Path:
        return self.dir / f"{port}.pid"

    def pid(self, port: int) -> int | None:
        pid = procs.read_pid(self._pid_file(port))
        if pid is None or not procs.pid_alive(pid):
            return None
        args = procs.process_cmdline(pid)
        # redis-server names its port in argv; a sentinel's is in its config directory's name
        return pid if args and "redis" in args[0] and any(str(port) in arg for arg in args) else None

    def running(self) -> bool:
        return all(self.pid(port) is not None for port in (*self.data_ports, *self.sentinel_ports))

    def _spawn(self, port: int, argv: list[str]) -> None:
        with open(self.dir / f"{port}.log", "a") as log, open("/dev/null", "rb") as null:
            child = subprocess.Popen(argv, cwd=self.dir / str(port), stdin=null, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self._children[port] = child
        procs.write_pid(self._pid_file(port), child.pid)

    def start_data_node(self, port: int, replica_of: int | None = None) -> None:
        workdir = self.dir / str(port)
        workdir.mkdir(parents=True, exist_ok=True)
        argv = ["redis-server", "--bind", self.host, "--port", str(port), "--dir", str(workdir),
                "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--daemonize", "no"]
        if replica_of is not None:
            argv += ["--replicaof", self.host, str(replica_of)]
        self._spawn(port, argv)

    def start_sentinel(self, port: int, primary_port: int) -> None:
        workdir = self.dir / str(port)
        workdir.mkdir(parents=True, exist_ok=True)
        conf = workdir / "sentinel.conf"
        # Sentinel rewrites its own file (known replicas, epochs): written once, kept across restarts
        if not conf.exists():
            conf.write_text(
                f"bind {self.host}\nport {port}\ndir {workdir}\ndaemonize no\n"
                "sentinel resolve-hostnames no\n"
                f"sentinel monitor {self.master} {self.host} {primary_port} 2\n"
                f"sentinel down-after-milliseconds {self.master} {self.down_after_ms}\n"
                f"sentinel failover-timeout {self.master} {self.failover_timeout_ms}\n"
                f"sentinel parallel-syncs {self.master} 1\n"
            )
        self._spawn(port, ["redis-sentinel", str(conf)])

    def start(self, report: Report, timeout: float = 30.0, fresh: bool = False) -> None:
        """Start what is not running: primary, replica, then the three sentinels.

        The data (append-only files) is kept from one start to the next, as a real
        deployment keeps it; ``fresh`` starts from empty data (a test run)."""
        if not fresh and self.running() and self.primary() is not None:
            report(f"redis-sentinel: already running ({self.sentinels}, primary {self.primary()})")
            return
        self.stop(lambda _m: None)
        if fresh:
            shutil.rmtree(self.dir, ignore_errors=True)
        for path in self.dir.glob("*/sentinel.conf"):
            path.unlink()
        self.dir.mkdir(parents=True, exist_ok=True)
        primary_port, replica_port = self.data_ports
        self.start_data_node(primary_port)
        self.start_data_node(replica_port, replica_of=primary_port)
        for port in self.sentinel_ports:
            self.start_sentinel(port, primary_port)
        self.wait_ready(timeout)
        report(f"redis-sentinel: primary {self.host}:{primary_port}, replica {replica_port}, "
               f"sentinels {self.sentinels} (master '{self.master}'), state in {self.dir}")

    def wait_ready(self, timeout: float) -> None:
        """Until the sentinels know the primary and the replica is in sync with it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            address = self.primary()
            if address is not None:
                try:
                    info = self.client(address[1]).info("replication")
                    if info.get("connected_slaves", 0) >= 1:
                        return
                except redis.RedisError:
                    pass
            time.sleep(0.2)
        raise LabError(f"Redis with Sentinel did not come up within {timeout:.0f} s; logs in {self.dir}")

    def kill(self, port: int) -> int | None:
        """SIGKILL one process (a fault); returns its pid."""
        pid = self.pid(port)
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            procs.wait_pid_gone(pid, 5.0, reap=self._children.get(port))
        return pid

    def restart_data_node(self, port: int) -> None:
        """Start a killed data node again as a replica of the current primary
        (as an operator would after a failover; Sentinel also reconfigures it)."""
        current = self.primary()
        replica_of = current[1] if current and current[1] != port else None
        self.start_data_node(port, replica_of=replica_of)

    def stop(self, report: Report) -> None:
        for port in (*self.sentinel_ports, *self.data_ports):
            pid = self.pid(port)
            if pid is not None:
                outcome = procs.stop_pid(pid, 5.0)
                report(f"redis {port}: stopped (pid {pid}, {outcome})")
            child = self._children.pop(port, None)
            if child is not None:
                child.poll()
            procs.remove_pid(self._pid_file(port))
