"""Instructions per call of the default flow, gateway vs bare, counted by valgrind's callgrind.

The CPU-time figures of ``bench/fastagi_flow_bench.py`` move by ±50 % from round to round on
this shared machine (the same server's ms per call doubles when a neighbour is busy). Callgrind
counts instructions, which the machine's noise cannot move: the same code path costs the same
count whatever else runs. Each server runs under callgrind; the calls go through the real lab
Asterisk exactly as in the flow bench (same contexts, the same two commands for bare, the
gateway's main flow fast path with its caller look-up, call record and metrics).

Per target: warm-up calls, counters zeroed (``callgrind_control -z``), N calls at concurrency
C, counters dumped (``callgrind_control -d``). A server blocked in ``epoll_wait`` only takes a
callgrind command when it wakes, so each of the two commands is followed by one extra call that
wakes it: the count covers the N calls plus (almost all of) the first waking call — divided by
N + 1 (± 1 call over N). Instructions are not time (a syscall counts as one instruction of the
server; the kernel's work is not in it), so this is the ratio of the two servers' *own* work.

    .venv/bin/python bench/fastagi_instr_bench.py --calls 300           # brings the lab up (no gateway, no ASR) itself
    .venv/bin/python bench/fastagi_instr_bench.py --no-lab --calls 300 --targets bare,gateway --caller ''
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from twisted.internet import defer, endpoints, task, threads

from bench import fastagi_bench as fb
from bench import fastagi_flow_bench as ffb
from gateway.ami.protocol import AmiProtocol

_TOTAL = re.compile(rb"^(?:summary|totals):\s+(\d+)", re.MULTILINE)


def dumped_instructions(path: Path) -> int:
    """The instruction count (Ir) of one callgrind dump file."""
    found = _TOTAL.findall(path.read_bytes())
    if not found:
        raise ValueError(f"no summary/totals line in {path}")
    return int(found[-1])


def callgrind_server(base: type[fb.AgiServer], workdir: Path) -> type[fb.AgiServer]:
    class CallgrindServer(base):
        listen_timeout = 600.0

        def wrapper_for(self, target: str) -> list[str]:
            return ["valgrind", "--tool=callgrind", "--dump-instr=no", "--dump-line=no",
                    f"--callgrind-out-file={workdir}/cg-{target}.out"]

        def dumps(self) -> list[Path]:
            return sorted(workdir.glob(f"cg-{self.target}.out.*"), key=lambda p: int(p.suffix[1:]))

    return CallgrindServer


async def _command(reactor, driver: fb.Driver, server, what: str) -> None:
    """Run ``callgrind_control <what>`` while one call wakes the server so it takes the command."""
    control = threads.deferToThread(
        subprocess.run, ["callgrind_control", what, str(server.proc.pid)], capture_output=True, timeout=600,
        check=True)
    await task.deferLater(reactor, 1.0, lambda: None)
    await driver.run(reactor, server.target, 1, 1)
    await control


async def bench(reactor, args, servers: type[fb.AgiServer]) -> dict[str, dict]:
    ami = await endpoints.connectProtocol(endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", 5038), AmiProtocol())
    await ami.banner
    await ami.login("hotline-lab", fb.lab_secret(), events="user,call")
    driver = ffb.FlowDriver(ami)
    results: dict[str, dict] = {}
    try:
        for target in args.targets:
            server = servers(target, servers.workdir)
            print(f"{target}: starting under callgrind (a minute or more)", flush=True)
            await threads.deferToThread(server.start)
            try:
                wall, good = await driver.run(reactor, target, args.warmup, min(args.concurrency, args.warmup))
                await _command(reactor, driver, server, "-z")
                wall, good = await driver.run(reactor, target, args.calls, args.concurrency)
                await _command(reactor, driver, server, "-d")
                dump = server.dumps()[-1]
                instructions = dumped_instructions(dump)
                per_call = instructions / (args.calls + 1)
                results[target] = {"calls": args.calls, "good": good, "instructions": instructions,
                                   "per_call": per_call, "dump": str(dump)}
                print(f"{target}: {args.calls} calls ({args.calls - good} failed), "
                      f"{per_call / 1e6:.3f} M instructions per call", flush=True)
            finally:
                server.stop()
    finally:
        ami.transport.loseConnection()
    return results


def report(results: dict[str, dict]) -> str:
    bare = results.get("bare")
    lines = ["| target | calls | failed | instructions per call (M) | × bare |", "|---|---|---|---|---|"]
    for target, r in results.items():
        ratio = f"{r['per_call'] / bare['per_call']:.2f}" if bare else "—"
        lines.append(f"| {target} | {r['calls']} | {r['calls'] - r['good']} | {r['per_call'] / 1e6:.3f} | {ratio} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--targets", type=lambda s: s.split(","), default=["bare", "gateway"])
    parser.add_argument("--caller", default=ffb.CALLER,
                        help="caller id of the calls ('' = none: the gateway's caller look-up in Redis is skipped)")
    parser.add_argument("--no-lab", action="store_true", help="assume the lab Asterisk is already up")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("valgrind (with callgrind_control) is needed: apt-get install valgrind")
    ffb.FlowDriver.caller_id = args.caller or None
    if not args.no_lab:
        subprocess.run([sys.executable, "-m", "gateway.lab", "up", "--no-gateway", "--no-asr"], cwd=REPO, check=True)
    ffb.install_greeting()
    workdir = Path(tempfile.mkdtemp(prefix="fastagi-instr-bench-"))
    servers = callgrind_server(ffb.server_class(workdir), workdir)
    servers.workdir = workdir

    async def run(reactor):
        results = await bench(reactor, args, servers)
        print(report(results))
        if args.json:
            import json

            Path(args.json).write_text(json.dumps(results, indent=2))

    task.react(lambda reactor: defer.Deferred.fromCoroutine(run(reactor)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
