"""The pure parts of gateway/lab/sipagents.py: modes, queue members, the private register
scenario, the SIPp command lines and the contact table (no SIPp, no Asterisk here)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.lab.errors import LabError
from gateway.lab.install import LabConfigValues, render_generated
from gateway.lab.sipagents import (
    SCENARIOS,
    PhoneMode,
    build_command,
    parse_contacts,
    parse_mode,
    parse_modes,
    queue_members,
    register_scenario,
)

REGISTER = SCENARIOS / "agent_register.xml"
UAS = SCENARIOS / "agent_uas.xml"


def _keys(cmd: list[str]) -> dict[str, str]:
    return {cmd[i + 1]: cmd[i + 2] for i, part in enumerate(cmd) if part == "-key"}


def test_modes_answer_late_reject_and_absent() -> None:
    assert parse_mode("answer") == PhoneMode("answer")
    assert parse_mode("late:6") == PhoneMode("late", 6)
    assert str(parse_mode("late:6")) == "late:6"
    assert parse_mode(" reject486 ") == PhoneMode("reject486")
    assert parse_mode("absent").kind == "absent"
    for bad in ("late", "late:-1", "late:6s", "reject", "busy", ""):
        with pytest.raises(LabError, match="answer, late:N"):
            parse_mode(bad)


def test_mode_list_defaults_every_other_agent_to_answer() -> None:
    assert parse_modes("") == {1: PhoneMode(), 2: PhoneMode(), 3: PhoneMode()}
    assert parse_modes("agent2=reject486, 3=late:6") == {
        1: PhoneMode(), 2: PhoneMode("reject486"), 3: PhoneMode("late", 6)}
    for bad in ("agent4=answer", "agent1", "bob=answer", "agent1=ring"):
        with pytest.raises(LabError):
            parse_modes(bad)


def test_queue_members_local_by_default_pjsip_with_sip_agents() -> None:
    local = queue_members(4, sip_agents=False)
    assert re.findall(r"member => (\S+)", local) == [f"Local/agent{n}@lab-agent,0,agent{n}" for n in range(1, 5)]
    sip = queue_members(4, sip_agents=True)
    # the PJSIP agents pjsip.conf defines, whatever the number of scripted agents; device state from the endpoint
    assert re.findall(r"member => (\S+)", sip) == [f"PJSIP/agent{n},0,agent{n},PJSIP/agent{n}" for n in (1, 2, 3)]


def test_the_installer_writes_the_members_of_the_mode() -> None:
    values = LabConfigValues(ami_secret="s" * 16, agent_passwords={1: "p" * 16}, agi_url="agi://x", lab_agents=3)
    assert "Local/agent3@lab-agent" in render_generated(values)["hotline-queue-members.conf"]
    sip = render_generated(LabConfigValues(**{**values.__dict__, "sip_agents": True}))
    assert "PJSIP/agent3" in sip["hotline-queue-members.conf"] and "Local/" not in sip["hotline-queue-members.conf"]


def test_the_private_register_scenario_carries_the_credentials_once() -> None:
    template = REGISTER.read_text()
    assert "password=" not in template  # nothing secret in the repository
    text = register_scenario(template, "agent2", "Zm9vYmFyYmF6cXV4")
    assert text.count("[authentication username=agent2 password=Zm9vYmFyYmF6cXV4]") == 1
    assert re.search(r"^\s*\[authentication\]\s*$", text, re.MULTILINE) is None
    for bad in ("with space1234", "close]bracket12", "open[bracket123", ""):
        with pytest.raises(LabError, match="password"):
            register_scenario(template, "agent2", bad)
    with pytest.raises(LabError, match="one line"):
        register_scenario("<scenario/>", "agent2", "Zm9vYmFyYmF6cXV4")


def test_phone_command_line_one_address_per_agent_and_mode_keys(tmp_path: Path) -> None:
    cmd = build_command(2, PhoneMode("late", 6), tmp_path / "register.xml", tmp_path, talk_s=12)
    assert cmd[:4] == ["sipp", "127.0.0.1:5060", "-sf", str(tmp_path / "register.xml")]
    joined = " ".join(cmd)
    assert "-i 127.0.0.72 -bind_local -p 5060 -m 1" in joined
    assert f"-oocsf {UAS}" in joined and "-mi 127.0.0.72 -mp 41200 -aa" in joined
    assert f"-log_file {tmp_path / 'events.log'}" in joined
    keys = _keys(cmd)
    assert keys == {"agent": "agent2", "contact": "<sip:agent2@127.0.0.72:5060>", "expires": "300",
                    "refresh_ms": "240000", "reject": "0", "ring_ms": "6000", "talk_ms": "12000",
                    "audio_pcap": "/usr/share/sip-tester/g711a.pcap"}
    assert _keys(build_command(1, PhoneMode("reject486"), tmp_path / "r.xml", tmp_path))["reject"] == "1"
    assert not any("password" in part or "-ap" == part for part in cmd)


def test_unregister_is_a_one_shot_contact_star_expires_0(tmp_path: Path) -> None:
    cmd = build_command(3, PhoneMode(), tmp_path / "register.xml", tmp_path, unregister=True, ip="127.0.0.79")
    assert "-oocsf" not in cmd and "-i" in cmd and cmd[cmd.index("-i") + 1] == "127.0.0.79"
    assert _keys(cmd) == {"agent": "agent3", "contact": "*", "expires": "0", "refresh_ms": "0"}
    assert f"-log_file {tmp_path / 'unregister.log'}" in " ".join(cmd)


_BUILTIN = re.compile(
    r"^(remote_ip|remote_port|transport|local_ip|local_port|local_ip_type|media_ip|media_ip_type|auto_media_port"
    r"|branch|pid|call_number|call_id|cseq|len|next_url|routes|last_.*|\$.*|authentication|CDATA|0-9)$"  # 0-9: a regexp
)


@pytest.mark.parametrize("path", [REGISTER, UAS], ids=lambda p: p.name)
def test_every_key_a_scenario_uses_is_given_by_the_command_line(path: Path, tmp_path: Path) -> None:
    """SIPp refuses a scenario whose -key is missing only when it runs."""
    used = {word for word in re.findall(r"\[([^\]\s]+)\]", path.read_text()) if not _BUILTIN.match(word)}
    given = set(_keys(build_command(1, PhoneMode(), REGISTER, tmp_path)))
    if path == REGISTER:
        assert used == set(_keys(build_command(1, PhoneMode(), REGISTER, tmp_path, unregister=True)))
    assert used <= given


def test_the_phone_offers_pcma_and_telephone_events() -> None:
    text = UAS.read_text()
    assert "m=audio [auto_media_port] RTP/AVP 8 101" in text and "a=rtpmap:101 telephone-event/8000" in text
    assert "486 Busy Here" in text and "487 Request Terminated" in text


def test_contacts_of_the_agent_aors_from_pjsip_show_contacts() -> None:
    text = """
  Contact:  <Aor/ContactUri..............................> <Hash....> <Status> <RTT(ms)..>
==========================================================================================

  Contact:  agent1/sip:agent1@127.0.0.71:5060              ae7b148fac Avail         0.434
  Contact:  agent2/sip:agent2@127.0.0.72:5060              935d3ef420 Unavail        -nan
  Contact:  carrier/sip:127.0.0.2:5070                     9681163320 Avail         1.251

Objects found: 3
"""
    assert parse_contacts(text) == {"agent1": ("sip:agent1@127.0.0.71:5060", "Avail"),
                                    "agent2": ("sip:agent2@127.0.0.72:5060", "Unavail")}
    assert parse_contacts("No objects found.") == {}


def test_a_one_shot_register_does_not_refresh(tmp_path: Path) -> None:
    cmd = build_command(3, PhoneMode(), tmp_path / "r.xml", tmp_path, once=True, ip="127.0.0.79", expires=60)
    assert _keys(cmd)["refresh_ms"] == "0" and _keys(cmd)["expires"] == "60"
