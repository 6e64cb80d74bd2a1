"""Kamailio with the repository's kamailio/kamailio.cfg as a child process.

For the cluster tests and the lab (kamailio/ is not a Python package, so this lives
here for now; it uses the standard library only). The config is never edited: every
deployment value goes in as a ``-A NAME=VALUE`` define (kamailio/kamailio.cfg lists
them). :class:`KamailioProcess` writes the dispatcher list into its own runtime folder,
starts ``kamailio -DD -E`` in the foreground (as the ``kamailio`` user when run as
root, with its own ``-P`` pid file and ``-Y`` runtime folder so that two instances
never share /run/kamailio), waits until it answers OPTIONS and stops it again::

    settings = ProxySettings(listen=("127.0.0.10", 5060), trunk_peers=("127.0.0.2",),
                             nodes=(("127.0.0.1", 5060), ("127.0.0.3", 5060)), probe_interval=1)
    with KamailioProcess(settings) as proxy:
        proxy.node_flags()      # {"sip:127.0.0.1:5060": "AP", ...} (A active, I inactive, P probing)
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
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "kamailio" / "kamailio.cfg"
#: dispatcher set of the Asterisk nodes in kamailio.cfg (NODES)
NODE_SET = 1

__all__ = [
    "CONFIG", "KamailioError", "KamailioProcess", "ProxySettings", "build_options", "check_config",
    "dispatcher_list", "kamailio_defines", "options_ping", "parse_dispatcher_flags", "parse_status",
]


class KamailioError(RuntimeError):
    """Kamailio did not start, or did not answer in time (the message carries its log's tail)."""


@dataclass(frozen=True)
class ProxySettings:
    #: the SIP address the proxy listens on (UDP)
    listen: tuple[str, int]
    #: carrier SBC addresses allowed to send calls (addresses or CIDR networks)
    trunk_peers: tuple[str, ...]
    #: the Asterisk nodes (host, port): dispatcher set 1
    nodes: tuple[tuple[str, int], ...]
    #: seconds between OPTIONS probes (lab 1-2, production 10)
    probe_interval: int = 10
    #: further defines, e.g. (("FR_TIMER", "1000"), ("HOLDDOWN", "600"))
    defines: tuple[tuple[str, str], ...] = ()


def _cidr(address: str) -> str:
    return str(ipaddress.ip_network(address, strict=False))


def dispatcher_list(nodes: Iterable[tuple[str, int]], set_id: int = NODE_SET) -> str:
    """The dispatcher list file for ``nodes`` (format: kamailio/dispatcher.list.example)."""
    lines = ["# written by tests/cluster/kamailio_proc.py: setid destination flags priority"]
    lines += [f"{set_id} sip:{host}:{port} 0 0" for host, port in nodes]
    return "\n".join(lines) + "\n"


def kamailio_defines(settings: ProxySettings, list_file: Path) -> list[str]:
    """The ``-A`` arguments for kamailio.cfg (string values in double quotes, as the config wants them)."""
    host, port = settings.listen
    peers = ",".join(_cidr(peer) for peer in settings.trunk_peers)
    values = [
        ("LISTEN", f"udp:{host}:{port}"),
        ("TRUNK_PEERS", f'"{peers}"'),
        ("DISPATCHER_LIST", f'"{list_file}"'),
        ("PROBE_INTERVAL", str(settings.probe_interval)),
        *settings.defines,
    ]
    arguments: list[str] = []
    for name, value in values:
        arguments += ["-A", f"{name}={value}"]
    return arguments


def _binary(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        raise KamailioError(f"{name} is not installed (Debian packages kamailio, kamailio-extra-modules)")
    return path


def check_config(settings: ProxySettings, list_file: Path, config: Path = CONFIG) -> subprocess.CompletedProcess:
    """``kamailio -c``: parse the config with these defines and load the modules (no sockets opened)."""
    return subprocess.run([_binary("kamailio"), "-c", "-f", str(config), *kamailio_defines(settings, list_file)],
                          check=False, capture_output=True, text=True, timeout=60)


# -- a tiny SIP OPTIONS client ------------------------------------------------------------------------


def build_options(target: tuple[str, int], source: tuple[str, int], call_id: str) -> bytes:
    """An out-of-dialog OPTIONS request to ``target`` as sent from ``source``."""
    host, port = target
    src_host, src_port = source
    branch = "z9hG4bK" + call_id.replace("-", "")[:16]
    return (
        f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {src_host}:{src_port};branch={branch};rport\r\n"
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
    if not _STATUS.match(datagram):
        return None
    for line in datagram.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() in (b"call-id", b"i") and value.strip().startswith(call_id.encode()):
            return int(_STATUS.match(datagram).group(1))
    return None


def options_ping(target: tuple[str, int], source_host: str, timeout: float = 1.0) -> int | None:
    """Send one OPTIONS from ``source_host`` (any port) and return the reply's status, None if none came."""
    call_id = uuid.uuid4().hex
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source_host, 0))
        sock.settimeout(timeout)
        sock.sendto(build_options(target, sock.getsockname(), call_id), target)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                datagram, _peer = sock.recvfrom(65535)
            except TimeoutError:
                return None
            status = parse_status(datagram, call_id)
            if status is not None and status >= 200:
                return status
    return None


# -- dispatcher state ----------------------------------------------------------------------------------

_DEST = re.compile(r"URI:\s*(\S+)\s+FLAGS:\s*(\S+)")


def parse_dispatcher_flags(listing: str) -> dict[str, str]:
    """``kamcmd dispatcher.list`` → {uri: flags} (A active, I inactive, T trying, D disabled, P probing)."""
    return dict(_DEST.findall(listing))


# -- the process ----------------------------------------------------------------------------------------


def _default_user() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("kamailio")
    except KeyError:
        return None
    return "kamailio"


class KamailioProcess:
    """One Kamailio in the foreground; everything it writes is in ``runtime_dir``.

    ``runtime_dir`` (default: a new folder under /tmp, removed by :meth:`stop`) must be
    reachable by the ``kamailio`` user, so it is not a pytest tmp_path (mode 0700 parents).
    """

    def __init__(self, settings: ProxySettings, runtime_dir: Path | None = None, *, config: Path = CONFIG,
                 user: str | None = "default") -> None:
        self.settings = settings
        self.config = config
        self.user = _default_user() if user == "default" else user
        self._own_dir = runtime_dir is None
        self.runtime_dir = Path(tempfile.mkdtemp(prefix="hotline-kamailio-")) if runtime_dir is None else runtime_dir
        self.list_file = self.runtime_dir / "dispatcher.list"
        self.pid_file = self.runtime_dir / "kamailio.pid"
        self.log_file = self.runtime_dir / "kamailio.log"
        self._process: subprocess.Popen | None = None

    # -- command line --

    def command(self) -> list[str]:
        command = [_binary("kamailio"), "-DD", "-E", "-f", str(self.config),
                   "-P", str(self.pid_file), "-Y", str(self.runtime_dir)]
        if self.user:
            command += ["-u", self.user, "-g", self.user]
        return command + kamailio_defines(self.settings, self.list_file)

    def _prepare(self) -> None:
        self.runtime_dir.mkdir(parents=True, exist_ok=True)
        self.list_file.write_text(dispatcher_list(self.settings.nodes))
        if self.user:
            entry = pwd.getpwnam(self.user)
            for path in (self.runtime_dir, self.list_file):
                os.chown(path, entry.pw_uid, entry.pw_gid)

    def check(self) -> subprocess.CompletedProcess:
        self._prepare()
        return check_config(self.settings, self.list_file, self.config)

    # -- life cycle --

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 15.0) -> None:
        """Start and wait (at most ``timeout`` s) until the proxy answers OPTIONS with 200."""
        if self.running():
            return
        self._prepare()
        with open(self.log_file, "ab") as log:
            self._process = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                             start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise KamailioError(f"kamailio exited with {self._process.returncode}:\n{self.log_tail()}")
            if self.answers():
                return
            time.sleep(0.1)
        self.stop()
        raise KamailioError(f"kamailio did not answer OPTIONS within {timeout:.0f} s:\n{self.log_tail()}")

    def answers(self, timeout: float = 0.5) -> bool:
        """True when the proxy answers an OPTIONS addressed to itself with 200."""
        host, _port = self.settings.listen
        return options_ping(self.settings.listen, host, timeout) == 200

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (Kamailio stops its children), SIGKILL to the process group after ``timeout``."""
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(5)
            # children that outlived the main process (they share its session)
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self._own_dir:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)

    def __enter__(self) -> KamailioProcess:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- introspection --

    def log_text(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def rpc(self, *command: str) -> str:
        """A control command over the runtime folder's kamailio_ctl socket (``kamcmd``)."""
        result = subprocess.run([_binary("kamcmd"), "-s", f"unix:{self.runtime_dir}/kamailio_ctl", *command],
                                check=False, capture_output=True, text=True, timeout=10)
        if result.returncode != 0:
            raise KamailioError(f"kamcmd {' '.join(command)}: {result.stderr.strip() or result.stdout.strip()}")
        return result.stdout

    def node_flags(self) -> dict[str, str]:
        return parse_dispatcher_flags(self.rpc("dispatcher.list"))

    def wait_node(self, node: tuple[str, int], predicate: Callable[[str], bool], timeout: float) -> str:
        """Poll the node's dispatcher flags until ``predicate(flags)`` holds; return them (KamailioError on timeout)."""
        uri = f"sip:{node[0]}:{node[1]}"
        deadline = time.monotonic() + timeout
        flags = ""
        while time.monotonic() < deadline:
            flags = self.node_flags().get(uri, "")
            if predicate(flags):
                return flags
            time.sleep(0.2)
        raise KamailioError(f"{uri} still has dispatcher flags {flags!r} after {timeout:.0f} s")
