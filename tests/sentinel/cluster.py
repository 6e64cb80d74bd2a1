"""Redis with Sentinel for tests: one primary, one replica, three sentinels, in a directory of their own.

The processes themselves (configuration files, start, SIGKILL, stop) are the
several-node lab's :class:`gateway.lab.sentinelctl.SentinelSet`, so the lab and
the tests run Redis with Sentinel alike: ``--save ""``, ``appendonly yes``,
``appendfsync always`` on the data nodes; ``sentinel monitor <master> … 2``,
``down-after-milliseconds`` 1000, ``failover-timeout`` 5000, ``resolve-hostnames
no``. What tests need on top is here: the ports checked free first, a start
that waits until a failover is possible (every sentinel knows the replica and
the two other sentinels), the primary killed and the promotion awaited.
Nothing here needs pytest: the class can move next to the lab's as it is.
"""
from __future__ import annotations

import socket
import time
from pathlib import Path

import redis

from gateway.lab.sentinelctl import SentinelSet

__all__ = ["SentinelCluster"]


class SentinelCluster:
    def __init__(self, directory: Path, *, host: str = "127.0.0.1", data_ports: tuple[int, int] = (6470, 6471),
                 sentinel_ports: tuple[int, ...] = (26470, 26471, 26472), master: str = "hotline",
                 down_after_ms: int = 1000, failover_timeout_ms: int = 5000) -> None:
        self.nodes = SentinelSet(Path(directory), host, data_ports, sentinel_ports, master, down_after_ms,
                                 failover_timeout_ms)
        self.log: list[str] = []

    # -- addresses -------------------------------------------------------------------
    @property
    def host(self) -> str:
        return self.nodes.host

    @property
    def master(self) -> str:
        return self.nodes.master

    @property
    def sentinels(self) -> str:
        """``host:port,host:port,host:port``, as HOTLINE_REDIS_SENTINELS takes it."""
        return self.nodes.sentinels

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The sentinels' (host, port)."""
        return [(self.host, port) for port in self.nodes.sentinel_ports]

    @property
    def data_addresses(self) -> list[tuple[str, int]]:
        """The primary's and the replica's (host, port), as started (before any failover)."""
        return [(self.host, port) for port in self.nodes.data_ports]

    def url(self, db: int = 0) -> str:
        """HOTLINE_REDIS_URL beside the sentinels: only its db (and password) count."""
        return f"redis://{self.host}:{self.nodes.data_ports[0]}/{db}"

    @property
    def missed_call_url(self) -> str:
        """The AGI safety net's ``redis+sentinel://`` URL."""
        return self.nodes.missed_call_url

    def environment(self, db: int = 0) -> dict[str, str]:
        return {"HOTLINE_REDIS_SENTINELS": self.sentinels, "HOTLINE_REDIS_SENTINEL_MASTER": self.master,
                "HOTLINE_REDIS_URL": self.url(db)}

    def primary(self) -> tuple[str, int] | None:
        """Where the sentinels say the primary is now (None: no sentinel answered)."""
        return self.nodes.primary(timeout=0.5)

    def client(self, address: tuple[str, int], db: int = 0) -> redis.Redis:
        return redis.Redis(address[0], address[1], db=db, socket_timeout=2, socket_connect_timeout=2,
                           decode_responses=True)

    # -- processes -------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> None:
        for port in (*self.nodes.data_ports, *self.nodes.sentinel_ports):
            with socket.socket() as probe:
                if probe.connect_ex((self.host, port)) == 0:
                    raise RuntimeError(f"port {port} is taken: cannot start Redis with Sentinel there")
        nodes = self.nodes
        nodes.dir.mkdir(parents=True, exist_ok=True)
        primary_port, replica_port = nodes.data_ports
        nodes.start_data_node(primary_port)
        primary = self.client((self.host, primary_port))
        self._wait(timeout, lambda: self._answers(primary), "the primary to start")
        primary.config_set("repl-diskless-sync-delay", 0)  # the replica's first sync at once, not after 5 s
        nodes.start_data_node(replica_port, replica_of=primary_port)
        # the sentinels start once the replica is in sync: their first INFO of the primary then lists it
        # (otherwise they learn of it only at the next INFO, 10 s later)
        self._wait(timeout, lambda: self._replica_in_sync((self.host, replica_port)), "the replica to sync")
        for port in nodes.sentinel_ports:
            nodes.start_sentinel(port, primary_port)
        self._wait(timeout, self._failover_possible, "every sentinel to know the replica and the other sentinels")

    def kill_primary(self) -> tuple[str, int]:
        """SIGKILL the current primary; returns its address."""
        address = self.primary()
        if address is None:
            raise RuntimeError(f"no sentinel of {self.sentinels} answered")
        self.nodes.kill(address[1])
        return address

    def wait_failover(self, old: tuple[str, int], timeout: float = 30.0) -> tuple[str, int]:
        """Until the failover is over: the promoted replica says ROLE master and every sentinel lists it
        as the master, up (``SENTINEL MASTER``, what redis-py's Sentinel client reads: it finds no
        master while a sentinel still lists the old one, down). Returns its address."""
        found: list[tuple[str, int]] = []

        def promoted() -> bool:
            address = self.primary()
            if address is None or address == old:
                return False
            found[:] = [address]
            return self._role(address) == "master" and all(
                state is not None and (state["ip"], state["port"]) == address
                and not (state["is_sdown"] or state["is_odown"])
                for state in map(self._master_state, self.nodes.sentinel_ports)
            )

        self._wait(timeout, promoted, f"a primary other than {old[0]}:{old[1]}")
        return found[0]

    def stop(self) -> None:
        self.nodes.stop(self.log.append)

    # -- internals -------------------------------------------------------------------
    def _master_state(self, sentinel_port: int) -> dict | None:
        try:
            return redis.Redis(self.host, sentinel_port, socket_timeout=1, decode_responses=True).sentinel_master(
                self.master)
        except redis.RedisError:
            return None

    def _failover_possible(self) -> bool:
        states = [self._master_state(port) for port in self.nodes.sentinel_ports]
        return all(state is not None and int(state.get("num-slaves", 0)) >= 1
                   and int(state.get("num-other-sentinels", 0)) >= 2 for state in states)

    @staticmethod
    def _answers(client: redis.Redis) -> bool:
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False

    def _replica_in_sync(self, address: tuple[str, int]) -> bool:
        try:
            return self.client(address).info("replication").get("master_link_status") == "up"
        except redis.RedisError:
            return False

    def _role(self, address: tuple[str, int]) -> str | None:
        try:
            return self.client(address).execute_command("ROLE")[0]
        except redis.RedisError:
            return None

    @staticmethod
    def _wait(timeout: float, condition, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(0.1)
