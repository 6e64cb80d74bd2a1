"""Kamailio, the several-node lab's SIP front door (Debian's kamailio, kamailio/kamailio.cfg).

Runs in the foreground (``-DD -E``) of its own session -- as the ``kamailio``
user when started as root --, with its runtime directory, pid file and
dispatcher list in its own state directory, so it shares nothing with a system
Kamailio (the lab and the cluster tests use this module alike). The
configuration is the repository's file as is; what differs per deployment comes
in as ``-A`` pre-processor defines (:func:`front_door_defines`). ``start`` waits
until it answers ``kamcmd`` and an OPTIONS on its LISTEN address;
``dispatcher_state()`` reads the destinations' flags with ``kamcmd
dispatcher.list`` (A = active, I = inactive, P = probing)::

    defines = front_door_defines(("127.0.0.50", 5060), ["127.0.0.53"], probe_interval=1)
    with KamailioProcess(CONFIG, state_dir, defines, ["sip:127.0.0.51:5060"]) as proxy:
        proxy.wait_active(["sip:127.0.0.51:5060"], timeout=10)
"""

from __future__ import annotations

import ipaddress
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from . import procs
from .errors import LabError
from .settings import REPO_ROOT

__all__ = [
    "CONFIG",
    "KamailioProcess",
    "build_options",
    "dispatcher_list",
    "front_door_defines",
    "options_ping",
    "parse_dispatcher_list",
    "parse_status",
]

CONFIG = REPO_ROOT / "kamailio" / "kamailio.cfg"

Report = Callable[[str], None]


def _quiet(message: str) -> None:
    """A report that says nothing (the context-manager use)."""


def front_door_defines(
    listen: tuple[str, int], trunk_peers: Iterable[str], probe_interval: int = 10, **more: str
) -> dict[str, str]:
    """kamailio.cfg's defines for a front door on UDP ``listen`` taking calls from ``trunk_peers``
    (addresses or networks); ``more``: any other define it documents (HOLDDOWN="10", FR_TIMER="1000")."""
    try:
        peers = ",".join(str(ipaddress.ip_network(peer, strict=False)) for peer in trunk_peers)
    except ValueError as exc:
        raise LabError(f"trunk peers are IP addresses or networks: {exc}") from None
    return {"LISTEN": f"udp:{listen[0]}:{listen[1]}", "TRUNK_PEERS": f'"{peers}"',
            "PROBE_INTERVAL": str(probe_interval), **more}


def dispatcher_list(destinations: Iterable[str], set_id: int = 1) -> str:
    """A dispatcher.list: one destination URI per line in set ``set_id``."""
    lines = ["# written by hotline-lab: setid destination flags priority attributes"]
    lines += [f"{set_id} {uri} 0 0" for uri in destinations]
    return "\n".join(lines) + "\n"


_DEST = re.compile(r"URI:\s*(\S+)\s+FLAGS:\s*(\S+)")


def parse_dispatcher_list(text: str) -> dict[str, str]:
    """``kamcmd dispatcher.list`` output → {uri: flags} (``AP`` active+probing, ``IP`` inactive ...)."""
    return dict(_DEST.findall(text))


# -- a one-request SIP OPTIONS client: is something answering on that address? ----------------


def build_options(target: tuple[str, int], source: tuple[str, int], call_id: str) -> bytes:
    """An out-of-dialog OPTIONS request to ``target`` as sent from ``source``."""
    host, port = target
    src_host, src_port = source
    return (
        f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {src_host}:{src_port};branch=z9hG4bK{call_id[:16]};rport\r\n"
        f"Max-Forwards: 70\r\n"
        f"From: <sip:probe@{src_host}>;tag={call_id[:8]}\r\n"
        f"To: <sip:{host}:{port}>\r\n"
        f"Call-ID: {call_id}@{src_host}\r\n"
        f"CSeq: 1 OPTIONS\r\n"
        f"Content-Length: 0\r\n\r\n"
    ).encode()


_STATUS = re.compile(rb"^SIP/2\.0 (\d{3}) ")


def parse_status(datagram: bytes, call_id: str) -> int | None:
    """The status code of a reply to our request ``call_id`` (None for anything else)."""
    status = _STATUS.match(datagram)
    if status is None:
        return None
    for line in datagram.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() in (b"call-id", b"i") and value.strip().startswith(call_id.encode()):
            return int(status.group(1))
    return None


def options_ping(target: tuple[str, int], source_host: str, timeout: float = 1.0) -> int | None:
    """Send one OPTIONS from ``source_host`` (any port); the final reply's status, None if none came."""
    call_id = uuid.uuid4().hex
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source_host, 0))
        sock.sendto(build_options(target, sock.getsockname(), call_id), target)
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                datagram = sock.recv(65535)
            except TimeoutError:
                return None
            status = parse_status(datagram, call_id)
            if status is not None and status >= 200:
                return status
    return None


# -- the process ------------------------------------------------------------------------------

_LISTEN = re.compile(r"^(?:udp:)?([\d.]+):(\d+)$")


def _binary(name: str) -> str:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin") or name


def _default_user() -> str | None:
    """``kamailio`` when we are root (Kamailio drops to it), else None (it stays our user)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("kamailio")
    except KeyError:
        return None
    return "kamailio"


class KamailioProcess:
    """One Kamailio; its files in ``state_dir``/kamailio (which the ``kamailio`` user must be able
    to reach: not below a 0700 folder such as pytest's tmp_path) and ``state_dir``/kamailio.log."""

    name = "kamailio"

    def __init__(
        self,
        config: Path,
        state_dir: Path,
        defines: Mapping[str, str],
        destinations: Iterable[str],
        user: str | None = None,
    ) -> None:
        self.config = config
        self.dir = state_dir / "kamailio"
        #: -A defines; may be changed before start (DISPATCHER_LIST is added)
        self.defines = dict(defines)
        self.destinations = list(destinations)
        self.user = _default_user() if user is None else user
        self.pid_file = self.dir / "kamailio.pid"
        self.log_file = state_dir / "kamailio.log"
        self.list_file = self.dir / "dispatcher.list"
        #: kamcmd's socket: kamailio.cfg loads ctl with its default, <runtime dir (-Y)>/kamailio_ctl
        self.control = self.dir / "kamailio_ctl"
        self._child: subprocess.Popen | None = None

    def command(self) -> list[str]:
        argv = [_binary("kamailio"), "-f", str(self.config), "-DD", "-E", "-P", str(self.pid_file),
                "-Y", str(self.dir)]
        if self.user:
            argv += ["-u", self.user, "-g", self.user]
        for name, value in {**self.defines, "DISPATCHER_LIST": f'"{self.list_file}"'}.items():
            argv += ["-A", f"{name}={value}"]
        return argv

    @property
    def listen(self) -> tuple[str, int] | None:
        """The UDP address of the LISTEN define (None when it is not given as ``udp:host:port``)."""
        match = _LISTEN.match(self.defines.get("LISTEN", ""))
        return (match.group(1), int(match.group(2))) if match else None

    def check_config(self) -> str:
        """``kamailio -c``: the configuration parses with these defines; Kamailio's report."""
        self._prepare()
        result = procs.run([*self.command(), "-c"], timeout=60, check=False)
        if result.returncode != 0:
            raise LabError(f"kamailio -c failed:\n{(result.stderr or result.stdout)[-2000:]}")
        return result.stdout + result.stderr

    def _prepare(self) -> None:
        if shutil.which(_binary("kamailio")) is None:
            raise LabError("kamailio is not installed (apt-get install kamailio kamailio-extra-modules)")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.list_file.write_text(dispatcher_list(self.destinations))
        os.chmod(self.list_file, 0o644)
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)

    def pid(self) -> int | None:
        pid = procs.read_pid(self.pid_file)
        if pid is None or not procs.pid_alive(pid):
            return None
        return pid if "kamailio" in " ".join(procs.process_cmdline(pid)) else None

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def answers(self, timeout: float = 0.5) -> bool:
        """True when ``kamcmd`` answers and so does an OPTIONS to the LISTEN address (if known)."""
        if not self.dispatcher_state():
            return False
        listen = self.listen
        return listen is None or options_ping(listen, listen[0], timeout) == 200

    def start(self, report: Report = _quiet, timeout: float = 20.0) -> int:
        current = self.pid()
        if current is not None:
            report(f"kamailio: already running (pid {current})")
            return current
        self._prepare()
        with open(self.log_file, "a") as log:
            log.write(f"\n--- hotline-lab: starting kamailio at {time.strftime('%F %T')}\n")
            log.flush()
            self._child = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._child.poll() is not None:
                raise LabError(f"kamailio exited with code {self._child.returncode}:\n{self.log_tail()}")
            pid = self.pid()
            if pid is not None and self.answers():
                report(f"kamailio: started (pid {pid}), log {self.log_file}")
                return pid
            time.sleep(0.2)
        raise LabError(f"kamailio did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def kamcmd(self, *args: str, timeout: float = 5.0) -> str:
        result = procs.run([_binary("kamcmd"), "-s", f"unix:{self.control}", *args], timeout=timeout, check=False)
        if result.returncode != 0:
            raise LabError(f"kamcmd {' '.join(args)} failed: {(result.stderr or result.stdout).strip()}")
        return result.stdout

    def dispatcher_state(self) -> dict[str, str]:
        """{destination URI: flags}; empty when Kamailio does not answer."""
        try:
            return parse_dispatcher_list(self.kamcmd("dispatcher.list"))
        except LabError:
            return {}

    def set_state(self, uri: str, state: str) -> None:
        """``dispatcher.set_state``: ``ap`` active (probed), ``ip`` inactive, ``d`` admin-disabled
        (kept out of rotation whatever the probes say)."""
        self.kamcmd("dispatcher.set_state", state, "1", uri)

    def wait_active(self, uris: Iterable[str], timeout: float, active: bool = True) -> dict[str, str]:
        """Until every one of ``uris`` is active (probed alive) in the dispatcher -- or, with
        ``active=False``, out of rotation (inactive or disabled; a ``T`` trying one still gets
        calls); the dispatcher state then."""
        wanted = list(uris)
        first = ("A",) if active else ("I", "D")
        deadline = time.monotonic() + timeout
        state = self.dispatcher_state()
        while not all(state.get(uri, "")[:1] in first for uri in wanted):
            if time.monotonic() > deadline:
                raise LabError(f"kamailio: {wanted} not {'active' if active else 'inactive'} "
                               f"within {timeout:.0f} s: {state}")
            time.sleep(0.3)
            state = self.dispatcher_state()
        return state

    def stop(self, report: Report = _quiet) -> None:
        pid = self.pid()
        if pid is None:
            procs.remove_pid(self.pid_file)
            return
        outcome = procs.stop_pid(pid, 5.0)
        # children that outlived the main process: its own session (start_new_session), by its pid
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if self._child is not None:
            self._child.poll()
            self._child = None
        procs.remove_pid(self.pid_file)
        report(f"kamailio: stopped (pid {pid}, {outcome})")

    def __enter__(self) -> KamailioProcess:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
