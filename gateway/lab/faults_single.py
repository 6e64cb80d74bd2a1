"""Faults on the single-node lab, counted: ``python -m gateway.lab.faults_single``.

Real Asterisk 22, the lab carrier, Redis and the gateway process (dialer and callbacks on);
one part is broken while work is in flight, brought back, and the work is counted from the
parts' own records (queue_log, the carrier's per-number step counts, the job store's
histories, the call records) — see :mod:`.faultcount`. tests/faults/ runs the same scenarios
and asserts on the rows; this module's ``main`` prints the table (fault | work in flight |
lost | doubled | note) and can write it to ``bench/last-faults-single.txt``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import wave
from collections.abc import Callable
from pathlib import Path

from .faultcount import FaultRow, QueueLog, format_work_table, kill9, wait_until
from .faults import callers, place_calls
from .faults_sink import webhook_down_an_hour
from .faultwork import (SURVEY_CITIZEN, SURVEY_ENV, add_callback, carrier_citizens, client, count_callbacks,
                        count_surveys, metric, pause_agents, post_closed_orders, script_numbers, start_gateway)
from .lab import Lab
from .settings import REPO_ROOT, LabSettings

__all__ = ["SCENARIOS", "main"]

Report = Callable[[str], None]

RECORDINGS = "/var/spool/asterisk/hotline/messages"


# -- scenarios -----------------------------------------------------------------------------------
def asterisk_crash_with_queued_citizens(lab: Lab, report: Report) -> FaultRow:
    """Citizens wait in the queue (every agent paused); Asterisk is killed (-9) and started again.
    Each queued citizen must be captured as lost with the PBX and get exactly one callback."""
    start_gateway(lab, report)
    lab.clear_carrier_steps()
    waiting = callers("60", 3)
    script_numbers(lab, waiting)
    mark = QueueLog({"ast1": lab.asterisk.queue_log})
    row = FaultRow("Asterisk killed (-9) and restarted with citizens queued",
                   in_flight=f"{len(waiting)} citizens waiting in the queue (no free agent)")
    pause_agents(lab, True)
    with lab.carrier_ami() as carrier:
        place_calls(carrier, waiting, hangup_after=40, spacing=0.5)
    wait_until(lambda: sum(mark.entered()["ast1"].values()) >= len(waiting), 40, "the citizens in the queue")
    time.sleep(1.0)
    pid = kill9(lab.asterisk.pid(), "Asterisk")
    report("asterisk: killed with the citizens queued")
    try:
        os.waitpid(pid, 0)  # started by this process (the lab fixture / command): no zombie left
    except ChildProcessError:
        pass
    time.sleep(2.0)
    lab.asterisk.cleanup_stale(report)
    lab.asterisk.start(report)  # the queue members come back unpaused (static members)
    lab.wait_trunk(60)
    wait_until(lambda: carrier_citizens(lab) == 0, 60, "the citizens' first calls to end at the carrier")
    count_callbacks(lab, row, waiting, timeout=150)
    return row


def _restart_redis_with_aof(lab: Lab, report: Report, fsync: str) -> None:
    """Turn AOF on in the running test Redis, kill it (-9), start it again from its AOF."""
    c = client(lab)
    directory = c.config_get("dir")["dir"]
    port = c.connection_pool.connection_kwargs["port"]
    c.config_set("appendfsync", fsync)
    c.config_set("appendonly", "yes")
    wait_until(lambda: client(lab).info("persistence").get("aof_rewrite_in_progress") == 0, 20, "the AOF rewrite")
    pid = int(lab.redis.pid_file.read_text().strip())
    kill9(pid, "redis")
    wait_until(lambda: not lab.redis.ping(), 10, "Redis to be gone", step=0.1)
    report(f"redis: killed (-9) with appendfsync {fsync}")
    time.sleep(3)  # the dialer and the call-record store notice
    subprocess.run(["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "yes",
                    "--appendfsync", fsync, "--dir", directory, "--daemonize", "yes",
                    "--pidfile", str(lab.redis.pid_file), "--logfile", str(lab.redis.log_file)],
                   check=True, timeout=30)
    wait_until(lab.redis.ping, 15, "Redis to come back", step=0.1)


def redis_killed_with_aof(lab: Lab, report: Report, fsync: str = "everysec") -> FaultRow:
    """Callbacks are dialling and survey citizens are answering when Redis is killed (-9); it comes
    back from its append-only file. Every callback must end once, connected; every survey keeps both
    answers and posts one result; a citizen calling in meanwhile still reaches the queue."""
    start_gateway(lab, report, HOTLINE_REDIS_RETRY_INTERVAL="1", **SURVEY_ENV)
    lab.clear_carrier_steps()
    numbers = callers("61", 2)
    script_numbers(lab, numbers)
    surveyed = dict(zip(["SV-F1", "SV-F2"], callers("65", 2)))
    script_numbers(lab, surveyed.values(), SURVEY_CITIZEN)
    inbound = callers("62", 1)
    mark = QueueLog({"ast1": lab.asterisk.queue_log})
    ids = [add_callback(lab, number) for number in numbers]
    post_closed_orders(lab, surveyed)
    row = FaultRow(f"Redis killed (-9), restarted from AOF (appendfsync {fsync})",
                   in_flight=f"{len(ids)} callbacks dialling, {len(surveyed)} survey calls mid-questionnaire, "
                             "1 citizen calling in")

    def surveys_answered() -> bool:
        steps = lab.carrier_steps()
        return all(steps.get(p, {}).get("answer", 0) for p in surveyed.values())

    wait_until(surveys_answered, 60, "the survey citizens to answer", step=0.5)
    time.sleep(8)  # mid-introduction / first question; the callbacks are ringing or talking
    directory = Path(client(lab).config_get("dir")["dir"])
    try:
        with lab.carrier_ami() as carrier:
            _restart_redis_with_aof(lab, report, fsync)
            place_calls(carrier, inbound, hangup_after=12, spacing=0)
        count_callbacks(lab, row, numbers, timeout=180)
        count_surveys(lab, row, surveyed, timeout=180)
        wait_until(lambda: carrier_citizens(lab) == 0, 60, "the inbound citizen's call to end")
        reached, doubled, _ = mark.reached(inbound)
        row.lost += len(inbound) - reached
        row.doubled += doubled
    finally:
        client(lab).config_set("appendonly", "no")
        shutil.rmtree(directory / "appendonlydir", ignore_errors=True)
    row.notes.append("AOF everysec: a killed redis-server loses no acknowledged write (the AOF is written "
                     "before the reply); a machine crash can lose up to 1 s — appendfsync always closes that"
                     if fsync == "everysec" else f"appendfsync {fsync}")
    return row


def gateway_killed_between_lease_and_dial(lab: Lab, report: Report) -> FaultRow:
    """The dialer leases callbacks and writes them ahead as dialling, then (test-only pause) the
    gateway is killed before any Originate. The restarted gateway settles those attempts from
    Asterisk (no record, no channel: failed, never placed) and dials each citizen exactly once."""
    lab.clear_carrier_steps()
    numbers = callers("63", 2)
    script_numbers(lab, numbers)
    start_gateway(lab, report, HOTLINE_DIALER_TEST_PAUSE="30", HOTLINE_DIALER_LEASE="8",
                  HOTLINE_DIALER_BACKOFF="no_answer=3,busy=3,congestion=3,failed=3,unconfirmed=3")
    ids = [add_callback(lab, number) for number in numbers]
    row = FaultRow("gateway killed (-9) between a callback's lease and its dial")

    def dialling() -> int:
        return sum(1 for i in ids if client(lab).hget(f"hotline:dialer:job:{i}", "phase") == "dialing")

    wait_until(lambda: dialling() > 0, 30, "a callback leased and written ahead")
    time.sleep(1.0)  # the rest of the tick's write-ahead
    row.in_flight = (f"{len(ids)} callbacks, {dialling()} of them leased and written ahead (dialling) "
                     "but not yet originated")
    steps_before = lab.carrier_steps()
    kill9(lab.gateway.pid(), "gateway")
    report("gateway: killed inside the test pause (after the write-ahead, before the Originate)")
    time.sleep(1)
    lab.gateway.reap()
    if any(steps_before.get(n) for n in numbers):
        row.notes.append("a number was dialled before the kill (the pause did not hold)")
    start_gateway(lab, report, HOTLINE_DIALER_LEASE="8",
                  HOTLINE_DIALER_BACKOFF="no_answer=3,busy=3,congestion=3,failed=3,unconfirmed=3")
    count_callbacks(lab, row, numbers, timeout=150)
    steps = lab.carrier_steps()
    answered = {n: steps.get(n, {}).get("answer", 0) for n in numbers}
    row.doubled += sum(max(0, a - 1) for a in answered.values())
    row.notes.append(f"dialled at the carrier {sum(answered.values())}x for {len(numbers)} citizens")
    return row


def webhook_down(lab: Lab, report: Report) -> FaultRow:
    return webhook_down_an_hour(client(lab), report)


def _prompt_seconds(lab: Lab, name: str) -> float:
    with wave.open(str(lab.chroot.path(f"/usr/share/asterisk/sounds/zh/hotline/{name}.wav"))) as handle:
        return handle.getnframes() / handle.getframerate()


def _reload_flow(lab: Lab, text: str) -> None:
    flows = Path(os.environ["HOTLINE_FLOWS_DIRECTORY"])
    (flows / "main.yaml").write_text(text)
    os.kill(lab.gateway.pid() or 0, 1)  # SIGHUP: reload the flows
    time.sleep(2)


def _fill(target: Path) -> None:
    """Fill a filesystem: its blocks (dd until ENOSPC), then its inodes (empty files until ENOSPC)."""
    subprocess.run(["dd", "if=/dev/zero", f"of={target}/filler", "bs=4k"], capture_output=True)
    for n in range(10_000):
        try:
            (target / f"filler-{n}").touch()
        except OSError:
            return


def _leave_voice_message(lab: Lab, report: Report, caller: str, mount: str, fill_inodes: bool) -> tuple[list, list]:
    """A citizen leaves a voice message at the peak offer while ``mount`` (a full tmpfs) is over the
    recordings directory: (the call record's path, [(recording, bytes)] found on it after the call)."""
    from .callflow import CallRequest

    target = lab.chroot.path(RECORDINGS)
    target.mkdir(parents=True, exist_ok=True)
    uid, gid = lab.chroot.ids("asterisk", "asterisk")
    original = (REPO_ROOT / "ivr_flows" / "main.yaml").read_text()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"{mount},uid={uid},gid={gid},mode=0750", "tmpfs", str(target)],
                   check=True)
    try:
        _fill(target) if fill_inodes else subprocess.run(["dd", "if=/dev/zero", f"of={target}/filler", "bs=4k"],
                                                         capture_output=True)
        report(f"disk: {target} full ({mount}{', inodes too' if fill_inodes else ''})")
        _reload_flow(lab, original.replace("queue_wait_over: 120", "queue_wait_over: 5"))
        pause_agents(lab, True)
        beep = int(_prompt_seconds(lab, "record_intro") + 2)
        result = lab.call(CallRequest(caller=caller, dtmf="2" + "W" * beep, dtmf_delay=_prompt_seconds(lab, "welcome")
                                      + 1.0, speech=lab.speech_sound("路灯坏了"), dtmf_after="#", hangup_after=30))
        files = [(f.name, f.stat().st_size) for f in target.iterdir() if not f.name.startswith("filler")]
    finally:
        pause_agents(lab, False)
        subprocess.run(["umount", str(target)], check=False)
        _reload_flow(lab, original)
    path = (result.gateway_record or {}).get("path") or []
    return (path.split(",") if isinstance(path, str) else list(path)), files


def disk_full_for_recordings(lab: Lab, report: Report, inodes: bool = True) -> FaultRow:
    """The recordings directory is a full tmpfs; at the peak offer a citizen leaves a voice message.
    With the inodes full too, Asterisk cannot create the file (RECORD FILE answers "(writefile)"): the
    citizen must hear why (record_error) and reach the queue, no transcription job may point at a
    missing file, and the failure is counted. With only the blocks full, Asterisk creates the file and
    res_agi's RECORD FILE does not check its writes (it answers success over a 4-byte file): the gateway
    stats the recording before saying "saved" (gateway/flows/recordings.py, HOTLINE_FLOWS_RECORDINGS_ROOT)
    and takes the same error path (record:no_audio)."""
    start_gateway(lab, report)
    caller = callers("64" if inodes else "66", 1)[0]
    script_numbers(lab, [caller])  # its callback (an abandon at the paused queue) connects
    mark = QueueLog({"ast1": lab.asterisk.queue_log})
    jobs_before = client(lab).xlen("hotline:jobs:transcribe")
    failures_before = metric(lab, "hotline_flow_service_failures_total", service="recording")
    mount = "size=64k,nr_inodes=64" if inodes else "size=64k"
    full = "blocks and inodes" if inodes else "blocks only"
    row = FaultRow(f"disk full for recordings (64 KiB tmpfs over the spool, {full})",
                   in_flight="1 citizen leaving a voice message at the peak offer")
    path, files = _leave_voice_message(lab, report, caller, mount, inodes)
    shown = [step for step in path if step.startswith(("record", "voice_message", "prompt:record"))]
    jobs = client(lab).xrange("hotline:jobs:transcribe", "-", "+")[jobs_before:]
    mine = [json.loads(fields["data"]) for _, fields in jobs if json.loads(fields["data"]).get("caller") == caller]
    sizes = dict(files)
    saved = [j for j in mine if sizes.get(Path(j["path"]).name, 0) > 44]  # more than a WAV header
    reached = mark.reached([caller])[0]
    row.lost = 0 if (reached or saved) else 1
    counted = metric(lab, "hotline_flow_service_failures_total", service="recording") - failures_before
    row.notes.append(f"call path {' → '.join(shown) if path else '(no record)'}; reached the queue: "
                     f"{bool(reached)}; jobs {len(mine)} (with audio {len(saved)}), bytes per recording file "
                     f"{[size for _, size in files]}; counted in "
                     f"hotline_flow_service_failures_total{{service=recording}}: {counted:g}")
    if "prompt:record_error" not in path:
        row.notes.append("the citizen was NOT told the message could not be saved")
    return row


def disk_blocks_full_for_recordings(lab: Lab, report: Report) -> FaultRow:
    return disk_full_for_recordings(lab, report, inodes=False)


SCENARIOS: dict[str, Callable[[Lab, Report], FaultRow]] = {
    "asterisk": asterisk_crash_with_queued_citizens,
    "redis": redis_killed_with_aof,
    "gateway-lease": gateway_killed_between_lease_and_dial,
    "webhook": webhook_down,
    "disk": disk_full_for_recordings,
    "disk-blocks": disk_blocks_full_for_recordings,
}


# -- the command ---------------------------------------------------------------------------------
def _environment(settings: LabSettings) -> None:
    """The integration tests' Redis (6391) and a private copy of the flows (edited by the disk scenario)."""
    os.environ.setdefault("HOTLINE_REDIS_URL", "redis://127.0.0.1:6391/0")
    flows = settings.cache_dir / "lab" / "faults-flows"
    shutil.rmtree(flows, ignore_errors=True)
    shutil.copytree(REPO_ROOT / "ivr_flows", flows)
    os.environ["HOTLINE_FLOWS_DIRECTORY"] = str(flows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.lab.faults_single", description=__doc__.split("\n")[0])
    parser.add_argument("--only", help=f"comma-separated: {','.join(SCENARIOS)}")
    parser.add_argument("--write", action="store_true", help="also write bench/last-faults-single.txt")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(SCENARIOS)
    if unknown := [n for n in names if n not in SCENARIOS]:
        parser.error(f"unknown scenario(s) {unknown}")
    _environment(LabSettings.from_env())
    lab = Lab(LabSettings.from_env())

    def say(message: str) -> None:
        print(f"* {message}", file=sys.stderr, flush=True)

    rows = []
    lab.down()
    try:
        lab.up(gateway=False, asr=False)
        lab.carrier.start(say)
        lab.wait_trunk(60)
        client(lab).flushdb()
        for name in names:
            say(f"fault scenario {name} ...")
            rows.append(SCENARIOS[name](lab, say))
    finally:
        lab.down()
    table = format_work_table(rows)
    print(json.dumps([r.as_json() for r in rows], ensure_ascii=False, indent=2) if args.json else table)
    if args.write:
        (REPO_ROOT / "bench" / "last-faults-single.txt").write_text(
            f"# python -m gateway.lab.faults_single  ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})\n\n"
            + table + "\n")
    return 0 if all(r.lost == 0 and r.doubled == 0 for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
