"""kamailio/kamailio.cfg passes `kamailio -c` with the defines the lab and the docker
image use (a config check: no socket is opened), refuses to start without its required
values, and the helpers' pure parts (dispatcher list, defines, SIP parsing)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from gateway.lab.kamailio import (
    CONFIG, KamailioProcess, build_options, dispatcher_list, front_door_defines, parse_dispatcher_list, parse_status,
)

from .conftest import CARRIER, NODE_A, NODE_B, PROXY, require_binaries, sip_uri
from .sipp_proc import invites_in_message_log

EXAMPLE_LIST = CONFIG.parent / "dispatcher.list.example"
LAB_DEFINES = front_door_defines(PROXY, [CARRIER], probe_interval=1, FR_TIMER="1000")
LAB_NODES = [sip_uri(NODE_A), sip_uri(NODE_B)]


def kamailio_check(*arguments: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    require_binaries("kamailio")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KAMAILIO_")}
    return subprocess.run(["kamailio", "-c", "-f", str(CONFIG), *arguments], check=False, capture_output=True,
                          text=True, timeout=60, env={**clean, **(env or {})})


def test_the_config_passes_kamailio_check_with_the_lab_defines(tmp_path):
    require_binaries("kamailio")
    assert "config file ok" in KamailioProcess(CONFIG, tmp_path, LAB_DEFINES, LAB_NODES).check_config()


def test_only_listen_and_trunk_peers_are_required_and_may_come_from_the_environment():
    by_define = kamailio_check("-A", "LISTEN=udp:127.0.0.50:5060", "-A", 'TRUNK_PEERS="198.51.100.10/32"')
    assert by_define.returncode == 0, by_define.stderr
    by_env = kamailio_check(env={"KAMAILIO_LISTEN": "udp:127.0.0.50:5060", "KAMAILIO_TRUNK_PEERS": "127.0.0.53/32"})
    assert by_env.returncode == 0, by_env.stderr


@pytest.mark.parametrize("missing", ["LISTEN", "TRUNK_PEERS"])
def test_the_config_refuses_to_start_without_a_required_value(missing):
    given = {"LISTEN": "udp:127.0.0.50:5060", "TRUNK_PEERS": '"127.0.0.53/32"'}
    del given[missing]
    arguments = [a for name, value in given.items() for a in ("-A", f"{name}={value}")]
    result = kamailio_check(*arguments)
    assert result.returncode != 0
    assert f"{missing}=KAMAILIO_{missing}" in result.stderr, result.stderr


def test_every_define_the_config_documents_has_a_default_or_is_required():
    text = CONFIG.read_text()
    documented = set(re.findall(r"^#     ([A-Z_]{4,})\s", text, re.M))
    defaults = set(re.findall(r"^#!trydef ([A-Z_]+) ", text, re.M))
    required = set(re.findall(r"^#!defenvs? ([A-Z_]+)=KAMAILIO_\1$", text, re.M))
    assert required == {"LISTEN", "TRUNK_PEERS"}
    assert documented == defaults | required


def test_the_example_dispatcher_list_follows_the_format():
    entries = [line.split() for line in EXAMPLE_LIST.read_text().splitlines() if line and not line.startswith("#")]
    assert len(entries) >= 2
    for setid, uri, flags, priority, *attrs in entries:
        assert setid == "1" and re.fullmatch(r"sip:[\w.-]+:\d+", uri)
        assert flags.isdigit() and priority.isdigit() and len(attrs) <= 1


def test_dispatcher_list_and_defines_for_the_lab():
    assert dispatcher_list(LAB_NODES).splitlines()[1:] == ["1 sip:127.0.0.51:5060 0 0", "1 sip:127.0.0.52:5060 0 0"]
    proxy = KamailioProcess(CONFIG, Path("/run/x"), LAB_DEFINES, LAB_NODES, user="kamailio")
    command = proxy.command()
    assert command[1:] == ["-f", str(CONFIG), "-DD", "-E", "-P", "/run/x/kamailio/kamailio.pid",
                           "-Y", "/run/x/kamailio", "-u", "kamailio", "-g", "kamailio",
                           "-A", "LISTEN=udp:127.0.0.50:5060", "-A", 'TRUNK_PEERS="127.0.0.53/32"',
                           "-A", "PROBE_INTERVAL=1", "-A", "FR_TIMER=1000",
                           "-A", 'DISPATCHER_LIST="/run/x/kamailio/dispatcher.list"']
    assert proxy.listen == PROXY


def test_trunk_peers_are_written_as_networks():
    defines = front_door_defines(("192.0.2.1", 5060), ["198.51.100.10", "203.0.113.0/24"], 10, HOLDDOWN="600")
    assert defines == {"LISTEN": "udp:192.0.2.1:5060", "TRUNK_PEERS": '"198.51.100.10/32,203.0.113.0/24"',
                       "PROBE_INTERVAL": "10", "HOLDDOWN": "600"}


def test_options_replies_are_matched_by_call_id():
    request = build_options(("127.0.0.50", 5060), ("127.0.0.53", 40000), "abc123")
    assert request.startswith(b"OPTIONS sip:127.0.0.50:5060 SIP/2.0\r\n") and b"Call-ID: abc123@127.0.0.53" in request
    reply = b"SIP/2.0 200 OK\r\nVia: x\r\nCall-ID: abc123@127.0.0.53\r\nContent-Length: 0\r\n\r\n"
    assert parse_status(reply, "abc123") == 200
    assert parse_status(reply.replace(b"abc123", b"other"), "abc123") is None
    assert parse_status(b"OPTIONS sip:x SIP/2.0\r\nCall-ID: abc123\r\n\r\n", "abc123") is None


def test_dispatcher_flags_are_read_from_kamcmd_output():
    listing = """{ SET: { ID: 1 TARGETS: {
        DEST: { URI: sip:127.0.0.52:5060 FLAGS: IP PRIORITY: 0 }
        DEST: { URI: sip:127.0.0.51:5060
                FLAGS: AP
                PRIORITY: 0 } } } }"""
    assert parse_dispatcher_list(listing) == {"sip:127.0.0.52:5060": "IP", "sip:127.0.0.51:5060": "AP"}


def test_a_nodes_calls_are_counted_from_its_message_log():
    def block(direction: str, first_line: str, call_id: str) -> str:
        return (f"----------------------------------------------- 2026-01-01 00:00:00.0\n"
                f"UDP message {direction} :\n\n{first_line}\nVia: x\nCall-ID: {call_id}\nContent-Length: 0\n\n")
    log = "".join([
        block("received [300] bytes", "OPTIONS sip:127.0.0.51:5060 SIP/2.0", "probe-1"),
        block("received [500] bytes", "INVITE sip:12345@127.0.0.50 SIP/2.0", "call-1"),
        block("received [500] bytes", "INVITE sip:12345@127.0.0.50 SIP/2.0", "call-1"),  # retransmission
        block("sent (300 bytes)", "SIP/2.0 200 OK", "call-1"),
        block("received [500] bytes", "INVITE sip:12345@127.0.0.50 SIP/2.0", "call-2"),
    ])
    assert invites_in_message_log(log) == {"call-1", "call-2"}
