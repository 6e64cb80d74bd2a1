"""asterisk_conf/ on the real Asterisk 22 (Debian sid chroot): it loads
cleanly, the dialplan has every context the gateway codes against, the 12345
queue and the AMI user are what the files say, and calls take the documented
paths — including the one that matters most: gateway away → agent queue.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import replace
from pathlib import Path

import pytest

from gateway import channel_vars as cv
from gateway.flows.loader import DEFAULT_TRANSFER_TARGETS
from gateway.lab import CallRequest, Lab
from gateway.lab.ami_blocking import AmiClient, AmiError, open_session
from gateway.lab.asterisk import error_lines
from gateway.lab.callflow import originate_and_follow

pytestmark = pytest.mark.integration

CONF = Path(__file__).resolve().parents[2] / "asterisk_conf"

CONTEXTS = {
    "from-carrier",
    "from-lab",
    "hotline-inbound",
    "hotline-queue",
    "hotline-transfer",
    "hotline-transfer-out",
    "hotline-agents",
    "hotline-outbound",
    "lab-agent",
    "lab-agent-script",
    "lab-citizen",
    "lab-utility",
    "lab-outbound-probe",
    "bench-citizen",
    "bench-agi",
    "bench-native",
}

TRANSFER_NUMBERS = {
    "police-110": "110",
    "fire-119": "119",
    "medical-120": "120",
    "water": "96116",
    "power": "95598",
    "gas": "96777",
    "heating": "96069",
}


def _dialplan_lines(path: Path) -> str:
    """extensions.conf without comments (a name only in a comment does not count)."""
    return "\n".join(line.split(";", 1)[0] for line in path.read_text().splitlines())


# -- loading ------------------------------------------------------------------------


def test_boot_log_has_no_error_lines(lab: Lab) -> None:
    """The session's fresh Asterisk logged no ERROR while loading our config."""
    assert "Asterisk Ready" in lab.asterisk.boot_log
    assert error_lines(lab.asterisk.boot_log) == []


def test_messages_log_has_no_error_lines(lab: Lab) -> None:
    """The messages log file (logger.conf) exists and has no ERROR since start."""
    assert lab.asterisk.messages_log.exists()
    assert error_lines(lab.asterisk.messages_since_start()) == []


def test_only_listed_modules_are_loaded(lab: Lab) -> None:
    """autoload=no: nothing beyond modules.conf (no app_system, no ARI, no chan_iax2)."""
    listed = set(re.findall(r"^load\s*=\s*(\S+)\.so", (CONF / "modules.conf").read_text(), re.MULTILINE))
    shown = lab.cli("module show")
    loaded = set(re.findall(r"^(\S+)\.so\s", shown, re.MULTILINE))
    assert loaded == listed
    for forbidden in ("app_system", "func_shell", "res_ari", "chan_iax2", "res_http_websocket"):
        assert forbidden not in loaded


def test_lab_up_twice_keeps_the_running_asterisk(lab: Lab) -> None:
    """`up` is idempotent: a second run reloads config, the pid stays."""
    pid = lab.asterisk.pid()
    lab.up(gateway=False, asr=False)
    assert lab.asterisk.pid() == pid
    assert error_lines(lab.asterisk.messages_since_start()) == []


# -- dialplan -----------------------------------------------------------------------


def test_dialplan_has_every_context(lab: Lab) -> None:
    shown = lab.cli("dialplan show")
    contexts = set(re.findall(r"\[ Context '([^']+)' created by 'pbx_config' \]", shown))
    assert CONTEXTS <= contexts


@pytest.mark.parametrize(
    "exten",
    [
        "12345@from-carrier",
        "02112345@from-carrier",
        "12345@from-lab",
        "12345@hotline-inbound",
        "12345@hotline-queue",
        "i@hotline-queue",
        "98765@hotline-queue",
        "s@lab-citizen",
        "agent1@lab-agent",  # the pattern spells n as [n]
        "agent42@lab-agent",
        "110@lab-utility",
        "s@bench-citizen",
        "s@bench-agi",
        "s@bench-native",
        "8002@hotline-agents",
    ],
)
def test_extension_exists(lab: Lab, exten: str) -> None:
    shown = lab.cli(f"dialplan show {exten}")
    assert "There is no existence" not in shown
    assert re.search(r"-= \d+ extensions? \(\d+ priorit", shown)


def test_every_gateway_transfer_target_is_an_extension(lab: Lab) -> None:
    """gateway.flows.loader's fixed targets and [hotline-transfer] agree."""
    shown = lab.cli("dialplan show hotline-transfer")
    for target in DEFAULT_TRANSFER_TARGETS:
        assert f"'{target}' =>" in shown


def test_every_channel_variable_of_the_gateway_is_used_by_the_dialplan() -> None:
    """gateway/channel_vars.py and extensions.conf cannot drift apart silently."""
    dialplan = _dialplan_lines(CONF / "extensions.conf")
    for name in cv.ALL:
        assert "${" + name + "}" in dialplan, name
    for value in (cv.NEXT_TRANSFER, cv.NEXT_HANGUP):
        assert f'"{value}"' in dialplan


def test_globals_point_at_the_lab(lab: Lab) -> None:
    shown = lab.cli("dialplan show globals")
    assert "HOTLINE_LAB=1" in shown
    assert f"HOTLINE_AGI={lab.settings.agi_url}" in shown
    assert "BENCH_AGI=agi://127.0.0.1:4573/bench" in shown


# -- queue ----------------------------------------------------------------------------


def test_queue_12345_is_configured(lab: Lab) -> None:
    shown = lab.cli("queue show 12345")
    assert "12345 has 0 calls (max 200) in 'rrmemory' strategy" in shown
    assert "within 15s" in shown
    for n in range(1, lab.settings.agents + 1):
        assert re.search(rf"agent{n} \(Local/agent{n}@lab-agent\).*\(ringinuse disabled\).*Not in use", shown)


def test_queue_parameters_over_ami(ami: AmiClient) -> None:
    """QueueStatus needs no write privilege; the params match queues.conf."""
    events = ami.action_list("QueueStatus", {"Queue": "12345"})
    params = [e for e in events if e.get("Event") == "QueueParams"]
    assert len(params) == 1
    assert params[0]["Max"] == "200"
    assert params[0]["Strategy"] == "rrmemory"
    assert params[0]["ServiceLevel"] == "15"


def test_music_on_hold_default_class_has_files(lab: Lab) -> None:
    shown = lab.cli("moh show files")
    assert "Class: default" in shown
    assert "hotline-lab-hold" in shown


# -- AMI user -------------------------------------------------------------------------


def _perms(shown: str, label: str) -> set[str]:
    match = re.search(rf"{label}: (\S*)", shown)
    assert match, shown
    return set(match.group(1).split(","))


def test_manager_user_is_least_privilege(lab: Lab) -> None:
    shown = lab.cli("manager show user hotline-gateway")
    assert _perms(shown, "read perm") == {"call", "agent", "user", "system"}
    assert _perms(shown, "write perm") == {"originate", "reporting"}
    assert "displayconnects: no" in shown
    assert "deny - 0.0.0.0/0.0.0.0" in shown
    assert "allow - 127.0.0.1/255.255.255.255" in shown


def test_ami_login_with_the_installed_secret(lab: Lab) -> None:
    with lab.gateway_ami() as client:
        assert client.action("Ping")["Response"] == "Success"


def test_lab_has_its_own_ami_user(lab: Lab) -> None:
    """The lab tool and the tests log in as hotline-lab (all events), never as the gateway."""
    shown = lab.cli("manager show user hotline-lab")
    assert _perms(shown, "read perm") >= {"call", "dialplan", "agent", "user", "system"}
    with lab.ami() as client:
        assert client.action("Ping")["Response"] == "Success"
    assert "hotline-lab" not in (CONF / "manager.conf").read_text().split("--- lab only")[0]


def test_gateway_user_only_receives_the_subscribed_events(gateway_down: Lab) -> None:
    """manager.conf's eventfilter: during a call the gateway's session sees queue and
    channel events and HotlinePath UserEvents, never Newexten/VarSet (the lab's user does)."""
    lab = gateway_down
    with lab.gateway_ami() as gateway, lab.ami() as tracker:
        tracker.action("UserEvent", {"UserEvent": "NotForTheGateway", "Probe": "1"})
        result = originate_and_follow(
            tracker,
            [("Channel", "Local/12345@from-lab"), ("Context", "lab-citizen"), ("Exten", "s"), ("Priority", "1"),
             ("Variable", "CITIZEN_HANGUP_AFTER=8")],
            timeout=40,
        ).result
        received = list(gateway.events(timeout=1.0))
    seen = {e.get("Event") for e in received}
    gateway_user_events = {e.get("UserEvent") for e in received if e.get("Event") == "UserEvent"}
    assert {"Newexten", "VarSet"} <= {e.get("Event") for e in result.events}
    assert {"Newchannel", "Hangup", "UserEvent", "QueueCallerJoin", "AgentConnect"} <= seen
    assert not seen & {"Newexten", "VarSet", "Newstate", "BridgeEnter"}
    assert gateway_user_events == {"HotlinePath"}


def test_ami_login_with_a_wrong_secret_is_refused(lab: Lab) -> None:
    with pytest.raises(AmiError, match="refused"):
        open_session(
            lab.settings.ami_host, lab.settings.ami_port, lab.settings.ami_user, "wrong-" + secrets.token_hex(8)
        )


def test_ami_secret_from_the_environment(lab: Lab) -> None:
    """HOTLINE_AMI_SECRET is what the installer writes; the old secret stops working."""
    env_secret = "env-" + secrets.token_urlsafe(16)
    env_lab = Lab(replace(lab.settings, ami_secret_env=env_secret))
    old_secret = lab.ami_secret()
    try:
        env_lab.install()
        lab.cli("manager reload")
        with env_lab.gateway_ami() as client:
            assert client.action("Ping")["Response"] == "Success"
        with pytest.raises(AmiError, match="refused"):
            open_session(lab.settings.ami_host, lab.settings.ami_port, lab.settings.ami_user, old_secret)
    finally:
        lab.install()
        lab.cli("manager reload")
    with lab.gateway_ami() as client:
        assert client.action("Ping")["Response"] == "Success"


def test_ami_user_cannot_run_cli_commands(ami: AmiClient) -> None:
    reply = ami.action("Command", {"Command": "core show version"}, check=False)
    assert reply["Response"] == "Error"
    assert "Permission denied" in reply.get("Message", "")


def test_ami_user_cannot_originate_into_a_dangerous_application(ami: AmiClient) -> None:
    """Originate of System() needs the `system` class (CVE-2024-42365 style escalation)."""
    reply = ami.action(
        "Originate",
        {"Channel": "Local/s@bench-citizen", "Application": "System", "Data": "touch /tmp/pwned", "Async": "true"},
        check=False,
    )
    assert reply["Response"] == "Error"


def test_ami_user_can_list_channels_and_registrations(ami: AmiClient) -> None:
    """The status actions the gateway polls work with write=originate,reporting."""
    ami.action_list("CoreShowChannels")
    ami.action_list("PJSIPShowRegistrationsOutbound")


# -- PJSIP ----------------------------------------------------------------------------


def test_pjsip_transport_and_agents(lab: Lab) -> None:
    shown = lab.cli("pjsip show endpoints")
    for agent in ("agent1", "agent2", "agent3"):
        assert f"Endpoint:  {agent}" in shown
    assert "127.0.0.1:5060" in lab.cli("pjsip show transports")


# -- calls ----------------------------------------------------------------------------


def test_citizen_reaches_an_agent_when_the_gateway_is_away(gateway_down: Lab) -> None:
    """FastAGI refused → AGISTATUS FAILURE → agi-failed event → queue → agent."""
    result = gateway_down.call()
    assert result.went_through, result.steps
    assert result.agi_status == "FAILURE"
    assert any("gateway unreachable" in step for step in result.steps)
    assert result.queue_joined and result.agent_answered and not result.abandoned
    assert result.hangup_by == "agent"
    assert result.gateway_record is None


def test_citizen_hanging_up_in_the_queue_is_an_abandon(gateway_down: Lab) -> None:
    result = gateway_down.call(CallRequest(hangup_after=3, agent_ring=10))
    assert result.went_through
    assert result.queue_joined and result.abandoned and not result.agent_answered
    assert result.hangup_by == "citizen"


def test_unknown_queue_name_still_reaches_queue_12345(gateway_down: Lab) -> None:
    """A queue name the dialplan does not know (HOTLINE_QUEUE=complaints) → queue 12345."""
    with gateway_down.ami() as ami:
        tracker = originate_and_follow(
            ami,
            [
                ("Channel", "Local/12345@from-lab"),
                ("Application", "Wait"),
                ("Data", "10"),
                ("Variable", "HOTLINE_QUEUE=complaints"),
            ],
            timeout=20,
            until=lambda e: e.get("Event") == "QueueCallerJoin",
        )
    assert any(e.get("Event") == "QueueCallerJoin" and e.get("Queue") == "12345" for e in tracker.result.events)


def test_screen_pop_variables_reach_the_agent(gateway_down: Lab) -> None:
    """HOTLINE_CHOICES & co. are inherited by the agent leg and ride on AgentConnect (channelvars)."""
    with gateway_down.ami() as ami:
        tracker = originate_and_follow(
            ami,
            [
                ("Channel", "Local/12345@from-lab"),
                ("Context", "lab-citizen"),
                ("Exten", "s"),
                ("Priority", "1"),
                # AMI splits Variable values on unescaped commas
                ("Variable", "HOTLINE_CHOICES=top=2\\,utility=1"),
                ("Variable", "HOTLINE_REPEAT_CALLER=1"),
                ("Variable", "HOTLINE_OPEN_ORDER=GD2026-001"),
            ],
            timeout=30,
        )
    result = tracker.conclude()
    assert result.agent_answered
    assert result.screen_pop == {"Choices": "top=2,utility=1", "RepeatCaller": "1", "OpenOrder": "GD2026-001"}
    connect = next(e for e in result.events if e.get("Event") == "AgentConnect")
    assert "HOTLINE_CHOICES=top=2,utility=1" in connect["ChanVariable"].splitlines()
    assert f"HOTLINE_CALL_ID={result.call_id}" in connect["ChanVariable"].splitlines()


def test_transfer_targets_dial_the_lab_utility(lab: Lab) -> None:
    """Every fixed target dials its [globals] number; in the lab via [lab-utility]."""
    with lab.ami() as ami:
        for target, number in TRANSFER_NUMBERS.items():
            tracker = originate_and_follow(
                ami,
                [
                    ("Channel", f"Local/{target}@hotline-transfer"),
                    ("Application", "Wait"),
                    ("Data", "5"),
                    ("Variable", f"HT={target}"),
                ],
                timeout=15,
            )
            steps = tracker.conclude().steps
            assert f"transfer to {target}" in steps, steps
            assert f"{number} answered" in steps, steps


def test_unknown_transfer_target_goes_to_the_queue(lab: Lab) -> None:
    """Goto to an extension that does not exist lands on `i`, which queues the caller."""
    shown = lab.cli("dialplan show i@hotline-transfer")
    assert "transfer-failed" in shown
    assert "Goto(hotline-queue,12345,1)" in shown


def test_bench_native_reads_a_digit_from_the_bench_citizen(lab: Lab) -> None:
    with lab.ami() as ami:
        tracker = originate_and_follow(
            ami,
            [("Channel", "Local/s@bench-native"), ("Context", "bench-citizen"), ("Exten", "s"), ("Priority", "1")],
            timeout=15,
        )
    done = [e for e in tracker.result.events if e.get("UserEvent") == "BenchDone"]
    assert done and done[0]["Mode"] == "native" and done[0]["Digit"] == "1"
