"""The several-node lab's files: each node's Asterisk configuration, the carrier's
view of the front door, Kamailio's dispatcher list (no processes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.lab.errors import LabError
from gateway.lab.install import LabConfigValues, render_carrier_trunk
from gateway.lab.kamailio import dispatcher_list, parse_dispatcher_list
from gateway.lab.nodes import FRONT_DOOR, NODES, patch_once, render_carrier_for_nodes, render_node
from gateway.lab.settings import REPO_ROOT

CONF = REPO_ROOT / "asterisk_conf"
VALUES = LabConfigValues(ami_secret="s3cret", agent_passwords={1: "pw1"}, agi_url="agi://127.0.0.1:4573",
                         lab_agents=2, trunk_password="trunkpw", redis_url="redis+sentinel://h:1/hotline/0")


def _settings(text: str, section: str) -> dict[str, str]:
    """key = value lines of one [section] of an Asterisk config file."""
    values, current = {}, None
    for line in text.splitlines():
        line = line.split(";")[0].strip()
        if line.startswith("["):
            current = line[1:].split("]")[0]
        elif current == section and ("=" in line):
            key, _, value = line.replace("=>", "=").partition("=")
            values[key.strip()] = value.strip()
    return values


def test_second_node_gets_its_own_directories_address_and_system_name() -> None:
    ast2 = NODES[1]
    files = render_node(VALUES, ast2, NODES[0], CONF)
    directories = _settings(files["asterisk.conf"], "directories")
    for key in ("astetcdir", "astvarlibdir", "astdbdir", "astspooldir", "astrundir", "astlogdir", "astcachedir"):
        assert directories[key].endswith("-ast2"), key
    assert _settings(files["asterisk.conf"], "options")["systemname"] == "ast2"
    assert _settings(files["pjsip.conf"], "transport-udp")["bind"] == f"{ast2.host}:5060"
    assert _settings(files["manager.conf"], "general")["bindaddr"] == ast2.host


def test_first_node_keeps_the_single_node_files_and_backs_up_to_the_other_gateway() -> None:
    files = render_node(VALUES, NODES[0], NODES[1], CONF)
    assert "pjsip.conf" not in files and "manager.conf" not in files
    assert _settings(files["asterisk.conf"], "options")["systemname"] == "ast1"
    assert "astetcdir => /etc/asterisk\n" in files["asterisk.conf"]
    globals_ = files["hotline-globals.conf"]
    assert f"HOTLINE_AGI = {NODES[0].agi_url}\n" in globals_
    assert f"HOTLINE_AGI_BACKUP = {NODES[1].agi_url}\n" in globals_
    assert "HOTLINE_MISSED_REDIS = redis+sentinel://h:1/hotline/0\n" in globals_


def test_nodes_do_not_register_and_take_the_front_door_as_the_trunk() -> None:
    trunk = render_node(VALUES, NODES[1], NODES[0], CONF)["pjsip-carrier.conf"]
    assert "carrier-registration" not in trunk
    assert _settings(trunk, "carrier")["match"] == f"{VALUES.carrier_host},{FRONT_DOOR[0]}"
    single = render_carrier_trunk(VALUES)
    assert "[carrier](carrier-registration)" in single
    assert _settings(single, "carrier")["match"] == VALUES.carrier_host


def test_the_carrier_sends_to_the_front_door_and_accepts_every_node() -> None:
    pjsip = render_carrier_for_nodes(VALUES, CONF / "lab-carrier")["pjsip.conf"]
    assert _settings(pjsip, "02112345")["contact"] == f"sip:12345@{FRONT_DOOR[0]}:{FRONT_DOOR[1]}"
    assert _settings(pjsip, "hotline")["match"] == ",".join(node.host for node in NODES)


def test_a_changed_line_in_asterisk_conf_is_a_loud_error_not_a_wrong_node() -> None:
    with pytest.raises(LabError, match="bind = 127.0.0.1:5060"):
        patch_once("bind = 0.0.0.0:5060\n", "bind = 127.0.0.1:5060\n", "x", "pjsip.conf")
    with pytest.raises(LabError, match="2 times"):
        patch_once("a\na\n", "a\n", "b\n", "f")


def test_render_node_fails_when_the_source_lost_a_patched_line(tmp_path: Path) -> None:
    for name in ("asterisk.conf", "manager.conf"):
        (tmp_path / name).write_text((CONF / name).read_text())
    (tmp_path / "pjsip.conf").write_text("[transport-udp]\nbind = 0.0.0.0:5060\n")
    with pytest.raises(LabError, match="pjsip.conf"):
        render_node(VALUES, NODES[1], NODES[0], tmp_path)


def test_dispatcher_list_and_kamcmd_output_round_trip() -> None:
    text = dispatcher_list([NODES[0].sip, NODES[1].sip])
    assert [line.split()[:2] for line in text.splitlines() if not line.startswith("#")] == [
        ["1", NODES[0].sip], ["1", NODES[1].sip]]
    kamcmd = """{
\tNRSETS: 1
\tRECORDS: {
\t\tSET: {
\t\t\tID: 1
\t\t\tTARGETS: {
\t\t\t\tDEST: {
\t\t\t\t\tURI: sip:127.0.0.1:5060
\t\t\t\t\tFLAGS: AP
\t\t\t\t\tPRIORITY: 0
\t\t\t\t}
\t\t\t\tDEST: {
\t\t\t\t\tURI: sip:127.0.0.3:5060
\t\t\t\t\tFLAGS: IP
\t\t\t\t\tPRIORITY: 0
\t\t\t\t}
\t\t\t}
\t\t}
\t}
}
"""
    assert parse_dispatcher_list(kamcmd) == {"sip:127.0.0.1:5060": "AP", "sip:127.0.0.3:5060": "IP"}


def test_a_doubled_dial_is_an_overlap_a_repeated_attempt_or_a_dial_after_the_citizen_was_served() -> None:
    from gateway.lab.faults import doubled_dials

    def dial(a):
        return {"event": "dialing", "attempt_id": a}

    def outcome(a, o):
        return {"event": "attempt", "attempt_id": a, "outcome": o}

    assert doubled_dials([dial("a1"), outcome("a1", "unconfirmed"), dial("a2"), outcome("a2", "answered")]) == 0
    assert doubled_dials([dial("a1"), {"event": "lease-recovered"}, outcome("a1", "answered")]) == 0
    assert doubled_dials([dial("a1"), dial("a2"), outcome("a2", "answered")]) == 1
    assert doubled_dials([dial("a1"), outcome("a1", "busy"), dial("a1")]) == 1
    assert doubled_dials([dial("a1"), outcome("a1", "answered"), dial("a2")]) == 1
