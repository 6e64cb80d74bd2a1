"""The default flow (greeting then queue) through the real lab Asterisk: fast path vs native vs bare.

N Local-channel calls at concurrency C per target, each running the main flow's default path
up to the "queue" point, where the bench context checks the hand-off (HOTLINE_NEXT=queue,
HOTLINE_QUEUE=12345) and hangs up instead of queueing (a queue with auto-answering members
would measure app_queue, the same for every target):

  native   [bench-flow-native]: the same steps in pure dialplan — the flow version, hand-off
           and screen-pop variables and the queue state (peak estimate) in one Set() with
           SET()/QUEUE_* functions, then the greeting with key 9 as the escape digit (Background)
  bare     a bare Twisted FastAGI server (bench/baselines/bare_twisted.py --script) sending the
           same two commands as the gateway's fast path: GET FULL VARIABLE (the SET()s and the
           queue state) and STREAM FILE of the greeting with escape digit 9
  bare1    (optional, ``--targets native,bare,bare1,gateway``) what a ONE-round-trip design
           would cost: the bare server sends only the GET FULL VARIABLE and the dialplan
           ([bench-flow-agi1]) plays the greeting after AGI() returns — the ceiling of FastAGI
           at one exchange per call, against the same native
  gateway  the real gateway (``hotline-gateway run``) running ivr_flows/main.yaml: caller
           look-up in Redis (the calls carry a caller id), the fast path, call record, metrics

The greeting is the lab's 0.1 s bench beep installed as ``hotline-bench/welcome`` (the gateway
runs with ``flows.prompt_dir = hotline-bench``), so the figures measure the servers, not a 5 s
prompt. The calling leg plays 0.4 s of near-silence and then waits (it keys nothing).

    .venv/bin/python bench/fastagi_flow_bench.py --concurrency 200,600 --calls 3000 \\
        --json bench/last-fastagi-flow.json
    .venv/bin/python bench/fastagi_flow_bench.py --fast-path off ...   # the full engine, same flow

Ratios as in bench/fastagi_bench.py: calls/s against native, CPU per call against bare, same run.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from twisted.internet import defer, task

from bench import fastagi_bench as fb
from gateway import channel_vars as cv
from gateway.agi import codec
from gateway.flows.fastpath import compile_fast_path, handover_expression
from gateway.flows.loader import load_flows

PROMPT_DIR = "hotline-bench"
CALLER = "13800138000"


def bare_script(workdir: Path) -> Path:
    """The gateway's two fast-path commands for a caller on no list, as the bare server sends them."""
    flow = load_flows(REPO / "ivr_flows", queues=("12345",))["main"]
    plan, why = compile_fast_path(flow, PROMPT_DIR)
    if plan is None:
        raise SystemExit(f"main flow has no fast path: {why}")
    values = [(cv.FLOW_VERSION, str(flow.version)), (cv.QUEUE, "12345"), (cv.PRIORITY, "0"), (cv.NEXT, cv.NEXT_QUEUE)]
    keys = "".join(str(k) for k in (plan.prompt.get("keys") or {}))
    lines = [
        codec.format_command("GET FULL VARIABLE", handover_expression(values, "12345" if plan.needs_queue_state else None)),
        codec.format_command("STREAM FILE", f"{PROMPT_DIR}/{plan.prompt.get('prompt')}", keys),
    ]
    path = workdir / "bare-flow-script.agi"
    path.write_bytes(b"".join(lines))
    (workdir / "bare1-flow-script.agi").write_bytes(lines[0])
    return path


def install_greeting() -> None:
    """The 0.1 s bench beep as ``hotline-bench/welcome`` in the lab chroot."""
    root = Path(os.environ.get("HOTLINE_LAB_CACHE", REPO / ".cache")) / "asterisk-root" / "usr/share/asterisk/sounds"
    target = root / PROMPT_DIR / "welcome.wav"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(root / "hotline" / "bench-beep.wav", target)


class FlowDriver(fb.Driver):
    native_context = "bench-flow-native"
    agi_context = "bench-flow-agi"
    contexts = {"bare1": "bench-flow-agi1"}
    citizen_context = "bench-flow-citizen"
    script = "main"
    caller_id = CALLER


def server_class(workdir: Path):
    script = bare_script(workdir)

    class FlowServer(fb.AgiServer):
        gateway_env = {"HOTLINE_FLOWS_PROMPT_DIR": PROMPT_DIR, "HOTLINE_FLOWS_FAST_PATH": "true"}
        bare_args = ["--script", str(script)]
        bare1_args = ["--script", str(script.with_name("bare1-flow-script.agi"))]

    return FlowServer


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[200, 600])
    parser.add_argument("--targets", type=lambda s: s.split(","), default=["native", "bare", "gateway"])
    parser.add_argument("--rounds", type=int, default=1,
                        help="rounds per concurrency: each target runs --calls calls per round, targets taking turns")
    parser.add_argument("--json", help="also write the raw results here")
    parser.add_argument("--no-lab", action="store_true", help="assume the lab Asterisk is already up")
    parser.add_argument("--caller", default=CALLER,
                        help="caller id of the calls ('' = none: the gateway's caller look-up in Redis is skipped)")
    parser.add_argument("--fast-path", choices=("on", "off"), default="on",
                        help="off: the gateway runs the same flow on its full engine (6 round trips), "
                             "to measure what the fast path saves against the same native and bare")
    args = parser.parse_args(argv)
    FlowDriver.caller_id = args.caller or None
    if not args.no_lab:
        subprocess.run([sys.executable, "-m", "gateway.lab", "up", "--no-gateway", "--no-asr"], cwd=REPO, check=True)
    install_greeting()
    workdir = Path(tempfile.mkdtemp(prefix="fastagi-flow-bench-"))
    servers = server_class(workdir)
    servers.gateway_env = dict(servers.gateway_env, HOTLINE_FLOWS_FAST_PATH="true" if args.fast_path == "on" else "false")

    async def run(reactor):
        results = await fb.bench(reactor, args, FlowDriver, servers)
        print(fb.report(results))
        print()
        print(fb.machine_report(results))
        if args.json:
            fb.write_json(results, args.json)

    task.react(lambda reactor: defer.Deferred.fromCoroutine(run(reactor)))
    return 0


if __name__ == "__main__":
    main()
