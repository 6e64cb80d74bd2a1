"""Pure parts of the lab: generated config files, secrets, prompt collection,
/proc/mounts parsing, log scanning."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gateway.lab.asterisk import error_lines
from gateway.lab.chroot import _unescape_mount_path, mount_points
from gateway.lab.errors import LabError
from gateway.lab.install import LabConfigValues, render_generated
from gateway.lab.prompts import collect_prompts
from gateway.lab.secrets import ami_secret, check_secret

REPO = Path(__file__).resolve().parents[2]


def _values(**overrides) -> LabConfigValues:
    fields = {
        "ami_secret": "s3cret-s3cret-s3cret",
        "agent_passwords": {1: "pw-one-pw-one", 2: "pw-two-pw-two"},
        "agi_url": "agi://127.0.0.1:4573",
        "lab_agents": 3,
    }
    fields.update(overrides)
    return LabConfigValues(**fields)


def test_generated_files_hold_the_secrets_members_and_lab_globals() -> None:
    files = render_generated(_values())
    assert "secret = s3cret-s3cret-s3cret\n" in files["hotline-secrets/ami-gateway.conf"]
    assert "password = pw-two-pw-two\n" in files["hotline-secrets/pjsip-agent2.conf"]
    members = files["hotline-queue-members.conf"]
    assert [line for line in members.splitlines() if line.startswith("member")] == [
        f"member => Local/agent{n}@lab-agent,0,agent{n}" for n in (1, 2, 3)
    ]
    assert "HOTLINE_LAB = 1" in files["hotline-globals.conf"]


def test_the_repository_config_includes_every_generated_file() -> None:
    """Each file the lab writes is #(try)included by a file of asterisk_conf/."""
    conf = "\n".join(p.read_text() for p in (REPO / "asterisk_conf").glob("*.conf"))
    for relative in render_generated(_values()):
        assert f'include "{relative}"' in conf, relative


def test_no_secret_lives_in_the_repository_config() -> None:
    for path in (REPO / "asterisk_conf").glob("*.conf"):
        for line in path.read_text().splitlines():
            code = line.split(";", 1)[0].strip().replace(" ", "")
            assert not code.startswith(("secret=", "password=")), f"{path.name}: {line}"


@pytest.mark.parametrize("bad", ["short", "has;semicolon-xxxxx", "has space at end ", 'quote"-xxxxxxxxxxx', ""])
def test_secrets_that_asterisk_would_misread_are_refused(bad: str) -> None:
    with pytest.raises(LabError):
        check_secret("HOTLINE_AMI_SECRET", bad)


def test_generated_ami_secret_is_kept_private_and_stable(tmp_path: Path) -> None:
    first = ami_secret(tmp_path)
    assert ami_secret(tmp_path) == first
    assert (tmp_path / "ami.secret").stat().st_mode & 0o777 == 0o600
    assert ami_secret(tmp_path, "from-the-env-123") == "from-the-env-123"


def test_prompts_come_from_flows_and_prompts_yaml(tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "a.yaml").write_text(yaml.safe_dump({"prompts": {"welcome": "您好"}}, allow_unicode=True))
    extra = tmp_path / "prompts.yaml"
    extra.write_text(yaml.safe_dump({"prompts": {"digits/1": "一"}}, allow_unicode=True))
    names = {p.name: p.text for p in collect_prompts(flows, extra)}
    assert names == {"hotline/welcome": "您好", "digits/1": "一"}


def test_one_prompt_name_with_two_texts_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(yaml.safe_dump({"prompts": {"x": "一"}}, allow_unicode=True))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump({"prompts": {"x": "二"}}, allow_unicode=True))
    with pytest.raises(LabError, match="two texts"):
        collect_prompts(tmp_path, tmp_path / "missing.yaml")


def test_prompt_names_cannot_leave_the_sounds_directory(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(yaml.safe_dump({"prompts": {"../../etc/x": "一"}}, allow_unicode=True))
    with pytest.raises(LabError, match="plain sound name"):
        collect_prompts(tmp_path, tmp_path / "missing.yaml")


def test_repository_prompts_cover_the_queue_announcements() -> None:
    prompts = {p.name for p in collect_prompts(REPO / "ivr_flows", REPO / "asterisk_conf" / "prompts.yaml")}
    for name in ("queue-youarenext", "queue-thereare", "queue-callswaiting", "queue-holdtime", "queue-minutes"):
        assert name in prompts
    # say.c's Chinese numbers: digits, tens, hundred, thousand, wan
    assert {f"digits/{n}" for n in (*range(10), 10, 20, 90)} <= prompts
    assert {"digits/hundred", "digits/thousand", "digits/wan"} <= prompts
    # what extensions.conf plays itself
    assert {"hotline/queue-busy", "hotline/transfer-failed"} <= prompts


def test_mount_points_are_unescaped(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text("proc /a\\040b/proc proc rw 0 0\ndevtmpfs /x/dev devtmpfs rw 0 0\n")
    assert mount_points(mounts) == ["/a b/proc", "/x/dev"]
    assert _unescape_mount_path("/plain") == "/plain"


def test_error_lines_find_asterisk_errors_only() -> None:
    log = (
        "[2026-11-22 00:15:38.093] ERROR[19020]: config_options.c:710 aco_process_config: x\n"
        "[2026-11-22 00:15:38.096] WARNING[19020]: indications.c:1071 load_indications: y\n"
        '    -- Executing [s@x:1] NoOp("ERROR handling")\n'
    )
    assert error_lines(log) == [log.splitlines()[0]]
