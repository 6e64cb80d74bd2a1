"""FastAGI benchmark through the real lab Asterisk.

N Local-channel calls at concurrency C, each running the fixed 12-command
script (ANSWER, 4× SET VARIABLE, 2× GET VARIABLE, STREAM FILE, WAIT FOR DIGIT
with DTMF from the other leg, SET VARIABLE, VERBOSE, HANGUP), against:

  native   the same steps in pure dialplan (Asterisk's own ceiling)
  bare     a minimal Twisted LineOnlyReceiver FastAGI server
  pyst2    pyst2's asterisk.fastagi (ForkingTCPServer) with minimal py3 fixes
  gateway  this gateway, real session API, call records in Redis, metrics

A call counts as good when its ``h`` extension reports AGISTATUS=SUCCESS and the
DTMF digit the other leg sent (BenchDone user event). Printed per target:
calls/s, failed calls, server CPU ms per call, p50/p99 command round trip, and
ratios against native (calls/s) and bare (CPU/call) measured in the same run.

    .venv/bin/python bench/fastagi_bench.py                # N=2000, C=10,50,200
    .venv/bin/python bench/fastagi_bench.py --calls 200 --concurrency 20
    .venv/bin/python bench/fastagi_bench.py --concurrency 50,200 --rounds 3

With ``--rounds R`` every target runs ``--calls`` calls R times per
concurrency, the targets taking turns (the first one moving each round), and
the figures are over all rounds; the spread of the per-round CPU ratios is
printed too. The machine is shared: a slow spell lands on one target's run
only when targets run once each.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from twisted.internet import defer, endpoints, task

from bench import machine_cpu
from bench.ami_stream import percentile
from gateway.ami.protocol import AmiProtocol

PORTS = {"gateway": 4576, "bare": 4574, "pyst2": 4575, "bare1": 4577}
GATEWAY_HTTP = 9513
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime+stime of the process and its reaped children (pyst2 forks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    # threads are included in the process's own utime/stime
    return (utime + stime + cutime + cstime) / CLK_TCK


@dataclass
class RoundResult:
    """One target's share of one round: ``calls`` calls, back to back."""

    calls: int
    wall: float
    good: int
    cpu: float | None
    #: where the machine's CPU went during the round (bench/machine_cpu.py)
    machine: machine_cpu.Usage | None = None

    @property
    def cpu_ms_per_call(self) -> float | None:
        return None if self.cpu is None else 1000 * self.cpu / self.calls


@dataclass
class RunResult:
    target: str
    concurrency: int
    calls: int
    wall: float
    good: int
    failed: int
    cpu: float | None
    rtts: list[float] = field(default_factory=list)
    rounds: list[RoundResult] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.calls / self.wall if self.wall else 0.0

    @property
    def cpu_ms_per_call(self) -> float | None:
        return None if self.cpu is None else 1000 * self.cpu / self.calls


class AgiServer:
    """One FastAGI server under test, as a subprocess."""

    #: more environment for the gateway, more arguments for the bare server (bench/fastagi_flow_bench.py)
    gateway_env: dict[str, str] = {}
    bare_args: list[str] = []
    #: the bare server of the one-round-trip variant (bench/fastagi_flow_bench.py's ``bare1`` target)
    bare1_args: list[str] = []
    #: a command the server runs under (bench/fastagi_instr_bench.py: valgrind), and how long it may take to listen
    wrapper: list[str] = []
    listen_timeout = 20.0

    def __init__(self, target: str, workdir: Path) -> None:
        self.target = target
        self.workdir = workdir
        self.port = PORTS[target]
        self.proc: subprocess.Popen | None = None
        self.rtt_file = workdir / f"{target}-rtt.json"
        self.rtt_dir = workdir / f"{target}-rtt"

    def start(self) -> None:
        python = sys.executable
        env = dict(os.environ)
        if self.target == "gateway":
            env.update(
                HOTLINE_AGI_PORT=str(self.port),
                HOTLINE_HTTP_PORT=str(GATEWAY_HTTP),
                HOTLINE_LOG_LEVEL="warn",
            )
            env.update(self.gateway_env)
            cmd = [python, "-m", "gateway", "run", "--bench"]
        elif self.target in ("bare", "bare1"):
            args = self.bare1_args if self.target == "bare1" else self.bare_args
            cmd = [python, str(REPO / "bench/baselines/bare_twisted.py"), "--port", str(self.port), "--rtt-file",
                   str(self.rtt_file), *args]
        else:
            self.rtt_dir.mkdir(exist_ok=True)
            cmd = [python, str(REPO / "bench/baselines/pyst2_fastagi.py"), "--port", str(self.port), "--rtt-dir", str(self.rtt_dir)]
        log = open(self.workdir / f"{self.target}.log", "ab")
        self.proc = subprocess.Popen([*self.wrapper_for(self.target), *cmd], cwd=REPO, env=env, stdout=log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.listen_timeout
        import socket

        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.target} server exited; see {self.workdir / (self.target + '.log')}")
                time.sleep(0.1)
        raise RuntimeError(f"{self.target} server did not listen on {self.port}")

    def wrapper_for(self, target: str) -> list[str]:
        return list(self.wrapper)

    def cpu(self) -> float:
        assert self.proc is not None
        return cpu_seconds(self.proc.pid)

    def take_rtts(self) -> list[float]:
        if self.target == "gateway":
            with urllib.request.urlopen(f"http://127.0.0.1:{GATEWAY_HTTP}/bench/rtt", timeout=10) as response:
                return json.loads(response.read())
        if self.target == "pyst2":
            values: list[float] = []
            for path in self.rtt_dir.glob("*.json"):
                values.extend(json.loads(path.read_text() or "[]"))
                path.unlink()
            return values
        # bare: SIGUSR1 makes it write (and clear) its samples
        self.rtt_file.unlink(missing_ok=True)
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while not self.rtt_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.1)
        return json.loads(self.rtt_file.read_text()) if self.rtt_file.exists() else []

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Driver:
    """Originates bench calls over AMI and waits for their BenchDone events."""

    #: dialplan contexts of the two legs and the AGI script (bench/fastagi_flow_bench.py runs other ones)
    native_context = "bench-native"
    #: per-target AGI contexts other than agi_context (bench/fastagi_flow_bench.py's bare1)
    contexts: dict[str, str] = {}
    agi_context = "bench-agi"
    citizen_context = "bench-citizen"
    script = "bench"
    #: caller id of the originated calls (None: none)
    caller_id: str | None = None

    def __init__(self, ami: AmiProtocol) -> None:
        self.ami = ami
        self.waiting: dict[str, defer.Deferred] = {}
        ami.on_event = self.on_event

    def on_event(self, message) -> None:
        name = message.name
        if name == "UserEvent" and message.get("UserEvent") == "BenchDone":
            d = self.waiting.pop(message.get("Uniqueid"), None)
            if d is not None:
                # the digit proves the script ran to its end; FAILURE = no FastAGI server
                d.callback(message.get("Digit") == "1" and message.get("AgiStatus") != "FAILURE")
        elif name == "OriginateResponse" and message.get("Response") == "Failure":
            other = message.get("Uniqueid", "")
            for key in list(self.waiting):
                if key.rsplit("-", 1)[0] == other.rsplit("-", 1)[0]:
                    self.waiting.pop(key).callback(False)

    async def one_call(self, reactor, run_id: str, index: int, target: str, timeout: float = 60.0) -> bool:
        call = f"b{run_id}-{index}"
        d: defer.Deferred = defer.Deferred()
        self.waiting[f"{call}-b"] = d
        context = self.native_context if target == "native" else self.contexts.get(target, self.agi_context)
        fields = [
            ("Channel", f"Local/s@{context}"),
            ("Context", self.citizen_context),
            ("Exten", "s"),
            ("Priority", "1"),
            ("Async", "true"),
            ("ChannelId", f"{call}-a"),
            ("OtherChannelId", f"{call}-b"),
            ("Timeout", "30000"),
        ]
        if self.caller_id:
            fields.append(("CallerID", f'"bench" <{self.caller_id}>'))
        if target != "native":
            fields.append(("Variable", f"BENCH_AGI=agi://127.0.0.1:{PORTS[target]}/{self.script}"))
        try:
            await self.ami.send_action("Originate", fields)
        except Exception:  # noqa: BLE001 — an originate refused is a failed call, counted
            self.waiting.pop(f"{call}-b", None)
            return False
        d.addTimeout(timeout, reactor)
        try:
            return await d
        except defer.TimeoutError:
            self.waiting.pop(f"{call}-b", None)
            return False

    async def run(self, reactor, target: str, calls: int, concurrency: int) -> tuple[float, int]:
        run_id = f"{int(time.time() * 1000) % 10**8}{target[0]}{concurrency}"
        next_index = iter(range(calls))
        good = 0

        async def worker() -> None:
            nonlocal good
            for index in next_index:
                if await self.one_call(reactor, run_id, index, target):
                    good += 1

        started = time.perf_counter()
        await defer.gatherResults([defer.Deferred.fromCoroutine(worker()) for _ in range(concurrency)])
        return time.perf_counter() - started, good


def lab_secret() -> str:
    """The lab's own AMI user (hotline-lab): the gateway's user only receives the
    events the gateway consumes, not the bench's BenchDone UserEvents."""
    path = Path(os.environ.get("HOTLINE_LAB_CACHE", REPO / ".cache")) / "lab" / "ami-lab.secret"
    return path.read_text().strip()


async def bench(reactor, args, driver_class=None, server_class=None) -> list[RunResult]:
    workdir = Path(tempfile.mkdtemp(prefix="fastagi-bench-"))
    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", 5038)
    ami = await endpoints.connectProtocol(endpoint, AmiProtocol())
    await ami.banner
    secret = lab_secret()
    await ami.login("hotline-lab", secret, events="user,call")
    driver = (driver_class or Driver)(ami)
    servers = {t: (server_class or AgiServer)(t, workdir) for t in args.targets if t != "native"}
    for server in servers.values():
        server.start()
    results: list[RunResult] = []
    try:
        # warm-up so first-call costs (imports, caches) are not measured
        for target in args.targets:
            await driver.run(reactor, target, min(20, args.calls), min(5, args.concurrency[0]))
            if target in servers:
                servers[target].take_rtts()
        for concurrency in args.concurrency:
            totals = {t: RunResult(t, concurrency, 0, 0.0, 0, 0, 0.0 if t in servers else None) for t in args.targets}
            for round_no in range(args.rounds):
                # targets take turns, the first one moving each round, so a slow
                # spell of this shared machine falls on every target alike
                shift = round_no % len(args.targets)
                for target in args.targets[shift:] + args.targets[:shift]:
                    server = servers.get(target)
                    cpu_before = server.cpu() if server else None
                    machine_before = machine_cpu.snapshot()
                    wall, good = await driver.run(reactor, target, args.calls, concurrency)
                    machine = machine_cpu.usage(machine_before, machine_cpu.snapshot())
                    await task.deferLater(reactor, 0.5, lambda: None)  # let children be reaped
                    cpu = (server.cpu() - cpu_before) if server else None
                    total = totals[target]
                    total.calls += args.calls
                    total.wall += wall
                    total.good += good
                    total.failed += args.calls - good
                    if server:
                        total.cpu += cpu
                        total.rtts.extend(server.take_rtts())
                    total.rounds.append(RoundResult(args.calls, wall, good, cpu, machine))
                    print(f"  C={concurrency:<4} round {round_no + 1}/{args.rounds} {target:<8} "
                          f"{args.calls / wall:7.1f} calls/s  failed {args.calls - good}"
                          + (f"  CPU {1000 * cpu / args.calls:.2f} ms/call" if server else "")
                          + f"  machine {100 * machine.busy_fraction:.0f}% busy", flush=True)
            results.extend(totals[t] for t in args.targets)
    finally:
        for server in servers.values():
            server.stop()
        ami.transport.loseConnection()
    return results


def round_ratios(result: RunResult, bare: RunResult | None) -> list[float]:
    """The target's CPU per call over the bare server's, round by round."""
    if bare is None or result.cpu is None:
        return []
    return [
        mine.cpu_ms_per_call / theirs.cpu_ms_per_call
        for mine, theirs in zip(result.rounds, bare.rounds)
        if mine.cpu_ms_per_call is not None and theirs.cpu_ms_per_call
    ]


def report(results: list[RunResult]) -> str:
    lines = [
        "| C | target | calls | calls/s | × native | failed | CPU ms/call | × bare CPU | × bare CPU, rounds | RTT p50 ms | RTT p99 ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    by_key = {(r.concurrency, r.target): r for r in results}
    for r in results:
        native = by_key.get((r.concurrency, "native"))
        bare = by_key.get((r.concurrency, "bare"))
        ratio = f"{r.rate / native.rate:.2f}" if native and native.rate else "—"
        cpu = f"{r.cpu_ms_per_call:.2f}" if r.cpu_ms_per_call is not None else "—"
        cpu_ratio = (
            f"{r.cpu_ms_per_call / bare.cpu_ms_per_call:.2f}"
            if bare and r.cpu_ms_per_call is not None and bare.cpu_ms_per_call
            else "—"
        )
        per_round = round_ratios(r, bare)
        spread = f"{min(per_round):.2f}–{max(per_round):.2f}" if len(per_round) > 1 else "—"
        p50 = f"{1000 * percentile(r.rtts, 0.5):.2f}" if r.rtts else "—"
        p99 = f"{1000 * percentile(r.rtts, 0.99):.2f}" if r.rtts else "—"
        lines.append(
            f"| {r.concurrency} | {r.target} | {r.calls} | {r.rate:.1f} | {ratio} | {r.failed} | {cpu} | {cpu_ratio} "
            f"| {spread} | {p50} | {p99} |"
        )
    return "\n".join(lines)


def _per_call(rounds: list[RoundResult], seconds) -> float:
    calls = sum(x.calls for x in rounds)
    return 1000 * sum(seconds(x) for x in rounds) / calls if calls else 0.0


def machine_report(results: list[RunResult]) -> str:
    """Where each call's CPU went (ms per call, all rounds), and what 0.9× native would allow.

    When the machine is saturated, calls/s ≈ capacity / machine CPU per call, so reaching 0.9×
    native's rate means a target may spend at most native's machine CPU per call / 0.9.
    """
    lines = [
        "| C | target | machine busy | machine CPU ms/call | Asterisk | Redis | driver | server | rest "
        "| 0.9× native allows (machine ms/call) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    by_key = {(r.concurrency, r.target): r for r in results}
    for r in results:
        rounds = [x for x in r.rounds if x.machine is not None]
        if not rounds:
            continue
        wall_busy = sum(x.machine.busy_fraction * x.wall for x in rounds) / sum(x.wall for x in rounds)
        machine = _per_call(rounds, lambda x: x.machine.machine)
        asterisk = _per_call(rounds, lambda x: x.machine.groups["asterisk"])
        redis = _per_call(rounds, lambda x: x.machine.groups["redis"])
        driver = _per_call(rounds, lambda x: x.machine.driver)
        server = _per_call(rounds, lambda x: x.cpu or 0.0)
        rest = machine - asterisk - redis - driver - server
        native = by_key.get((r.concurrency, "native"))
        allowed = "—"
        if native is not None and any(x.machine for x in native.rounds):
            allowed = f"{_per_call([x for x in native.rounds if x.machine], lambda x: x.machine.machine) / 0.9:.2f}"
        lines.append(
            f"| {r.concurrency} | {r.target} | {100 * wall_busy:.0f} % | {machine:.2f} | {asterisk:.2f} | {redis:.2f} "
            f"| {driver:.2f} | {server:.2f} | {rest:.2f} | {allowed} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[10, 50, 200])
    parser.add_argument("--targets", type=lambda s: s.split(","), default=["native", "bare", "pyst2", "gateway"])
    parser.add_argument("--rounds", type=int, default=1,
                        help="rounds per concurrency: each target runs --calls calls per round, targets taking turns")
    parser.add_argument("--json", help="also write the raw results here")
    parser.add_argument("--no-lab", action="store_true", help="assume the lab Asterisk is already up")
    args = parser.parse_args(argv)
    if not args.no_lab:
        subprocess.run([sys.executable, "-m", "gateway.lab", "up", "--no-gateway", "--no-asr"], cwd=REPO, check=True)
    results = task.react(lambda reactor: defer.Deferred.fromCoroutine(_main(reactor, args)))
    return results


async def _main(reactor, args):
    results = await bench(reactor, args)
    text = report(results)
    print(text)
    print()
    print(machine_report(results))
    if args.json:
        write_json(results, args.json)


def write_json(results: list[RunResult], path: str) -> None:
    Path(path).write_text(
        json.dumps(
            [
                {
                    "target": r.target,
                    "concurrency": r.concurrency,
                    "calls": r.calls,
                    "calls_per_s": r.rate,
                    "failed": r.failed,
                    "cpu_ms_per_call": r.cpu_ms_per_call,
                    "rtt_p50_ms": 1000 * percentile(r.rtts, 0.5) if r.rtts else None,
                    "rtt_p99_ms": 1000 * percentile(r.rtts, 0.99) if r.rtts else None,
                    "rounds": [
                        {"calls": x.calls, "calls_per_s": x.calls / x.wall if x.wall else 0.0,
                         "failed": x.calls - x.good, "cpu_ms_per_call": x.cpu_ms_per_call,
                         "machine": None if x.machine is None else {
                             "busy_fraction": x.machine.busy_fraction, "cpu_s": x.machine.machine,
                             "asterisk_cpu_s": x.machine.groups["asterisk"], "redis_cpu_s": x.machine.groups["redis"],
                             "driver_cpu_s": x.machine.driver}}
                        for x in r.rounds
                    ],
                }
                for r in results
            ],
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
