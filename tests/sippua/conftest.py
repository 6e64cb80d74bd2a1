"""The SIPp scenarios of sipp/ against SIPp stand-ins for the hotline — no Asterisk.

Real processes on loopback: the citizen (a UAC of sipp/, run by
gateway.lab.sipp) on 127.0.0.60, the stand-in hotline (a UAS of this folder)
on 127.0.0.61, whose SDP sends the citizen's RTP to a Python UDP socket of
the test (``rtp_sink``) so the test sees every packet's payload type.

Fixtures:

* ``rtp_sink``  — :class:`RtpSink` on 127.0.0.61 (closed after the test).
* ``stand_in``  — ``stand_in("uas_hotline", calls=1, **keys)`` → :class:`StandIn`:
                  starts the UAS (bounded by -m, -timeout, -recv_timeout) and
                  kills it after the test if it has not ended.
* ``citizen``   — ``citizen("citizen_key", stand_in, calls=1, digit="9", **keys)``
                  → SippResult of a run_sipp against the stand-in.

Everything here is `integration` (real processes and sockets); it needs the
Debian package sip-tester and skips without it.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gateway.lab.sipp import SippResult, SippRun, run_sipp, scenario_keys, scenario_path

_HERE = os.path.dirname(os.path.abspath(__file__))

CITIZEN_IP = "127.0.0.60"
HOTLINE_IP = "127.0.0.61"


def pytest_collection_modifyitems(items) -> None:
    """Everything under tests/sippua is `integration` (deselect with -m "not integration")."""
    for item in items:
        if str(item.fspath).startswith(_HERE + os.sep):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def _needs_sipp() -> None:
    if shutil.which("sipp") is None:
        pytest.skip("sipp is not installed (apt-get install sip-tester)")


def free_udp_port(host: str, span: int = 1) -> int:
    """A UDP port on ``host`` that is free now, with ``span`` - 1 free ports after it."""
    for _ in range(50):
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind((host, 0))
        port = probe.getsockname()[1]
        probe.close()
        if port + span < 65536 and all(_udp_free(host, port + n) for n in range(span)):
            return port
    raise RuntimeError(f"no run of {span} free UDP ports on {host}")


def _udp_free(host: str, port: int) -> bool:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.bind((host, port))
    except OSError:
        return False
    finally:
        probe.close()
    return True


@dataclass(frozen=True)
class RtpPacket:
    payload_type: int
    payload: bytes

    @property
    def event(self) -> int | None:
        """RFC 4733: the event code (0-9, 10 = *, 11 = #) of a telephone-event packet."""
        return self.payload[0] if self.payload_type == 101 and self.payload else None


@dataclass
class RtpSink:
    """The stand-in hotline's media address: a UDP socket that keeps every RTP packet."""

    host: str = HOTLINE_IP
    packets: list[RtpPacket] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind((self.host, 0))
        self._socket.settimeout(0.1)
        self.port = self._socket.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._socket.recv(2048)
            except TimeoutError:
                continue
            if len(data) >= 12 and data[0] >> 6 == 2:
                self.packets.append(RtpPacket(data[1] & 0x7F, data[12:]))

    def payload_types(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for packet in self.packets:
            counts[packet.payload_type] = counts.get(packet.payload_type, 0) + 1
        return counts

    def events(self) -> set[int]:
        return {packet.event for packet in self.packets if packet.event is not None}

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._socket.close()


@pytest.fixture
def rtp_sink() -> Iterator[RtpSink]:
    sink = RtpSink()
    yield sink
    sink.close()


@dataclass
class StandIn:
    """A running stand-in hotline (SIPp UAS) and the SIP messages it saw."""

    process: subprocess.Popen
    port: int
    messages: Path

    @property
    def target(self) -> str:
        return f"{HOTLINE_IP}:{self.port}"

    def finish(self, timeout: float = 20) -> int:
        """Wait for the UAS to end by itself (its -m calls done); its exit code."""
        return self.process.wait(timeout=timeout)

    def received(self, start: str) -> list[str]:
        """Every message the stand-in received that starts with ``start``, as text (its -trace_msg log)."""
        text = self.messages.read_text(errors="replace") if self.messages.exists() else ""
        found = []
        for entry in re.split(r"^-{20,} .*$", text, flags=re.MULTILINE):
            where, _, message = entry.strip("\n").partition("\n\n")
            if "received" in where and message.startswith(start):
                found.append(message)
        return found

    def requests(self, method: str) -> list[str]:
        return self.received(f"{method} sip:")


@pytest.fixture
def stand_in(tmp_path: Path, rtp_sink: RtpSink) -> Iterator[Callable[..., StandIn]]:
    started: list[StandIn] = []

    def start(name: str, calls: int = 1, **keys: str) -> StandIn:
        port = free_udp_port(HOTLINE_IP)
        workdir = tmp_path / f"uas-{len(started)}"
        workdir.mkdir()
        messages = workdir / "messages.log"
        cmd = ["sipp", "-sf", os.path.join(_HERE, f"{name}.xml"), "-key", "rtp_sink_port", str(rtp_sink.port)]
        for key, value in keys.items():
            cmd += ["-key", key, value]
        cmd += [
            "-i", HOTLINE_IP, "-bind_local", "-p", str(port), "-mp", str(free_udp_port(HOTLINE_IP)),
            "-m", str(calls), "-timeout", "30s", "-recv_timeout", "20000", "-nostdin",
            "-trace_msg", "-message_file", str(messages), "-trace_err", "-error_file", str(workdir / "errors.log"),
        ]  # fmt: skip
        process = subprocess.Popen(
            cmd, cwd=workdir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=(workdir / "stderr.log").open("w"),
        )  # fmt: skip
        uas = StandIn(process, port, messages)
        started.append(uas)
        deadline = time.monotonic() + 5
        while _udp_free(HOTLINE_IP, port):  # listening once its port is taken
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the stand-in {name} did not start: {(workdir / 'stderr.log').read_text()}")
            time.sleep(0.02)
        return uas

    yield start
    for uas in started:
        if uas.process.poll() is None:
            uas.process.kill()
        uas.process.wait(timeout=5)


@pytest.fixture
def citizen(tmp_path: Path) -> Callable[..., SippResult]:
    runs: list[int] = []

    def call(
        name: str, hotline: StandIn, calls: int = 1, rate: float = 10.0, timeout_s: int = 20,
        digit: str | None = None, **keys: object,
    ) -> SippResult:  # fmt: skip
        runs.append(1)
        run = SippRun(
            scenario_path(name), hotline.target, scenario_keys(name, digit, **keys),
            local_ip=CITIZEN_IP, local_port=free_udp_port(CITIZEN_IP),
            media_port=free_udp_port(CITIZEN_IP, span=4 * calls), calls=calls, rate=rate,
            concurrency=calls, timeout_s=timeout_s,
        )  # fmt: skip
        return run_sipp(run, tmp_path / f"uac-{len(runs)}")

    return call
