"""Load through the trunk, single node: SIPp citizens at rising rates, gateway flow vs native dialplan.

Issue 15 part 3. The single-node lab (Asterisk 22, the gateway, Redis; ``--agents``
scripted lab agents) is brought up fresh. SIPp plays citizens calling from the
carrier's address (127.0.0.2, matched by the hotline's ``identify``, so every call
lands in ``[from-carrier]``) with G.711 A-law RTP (``sipp/citizen_queue.xml``: no
key, listen to the greeting, wait in the queue; a lab agent answers after
LAB_AGENT_RING s, talks LAB_AGENT_TALK s and hangs up, and the call counts when
that BYE arrives -- no citizen hangs up unserved, so the classic AGI safety net,
one Python process per missed call, stays out of the measurement).

At each rate the same load runs twice, the order alternating per rate:

* ``gateway``: DID 12345 → [hotline-inbound] → FastAGI → the gateway's main flow
  (caller lookup in Redis, the greeting listening for 9, call record) → queue;
* ``native``: DID 12399 → [bench-native-hotline] (bench only, lab only): answer,
  the same greeting, the same [hotline-queue], in pure dialplan without AGI.

Per rate and flow: calls attempted and completed per second (over the window in
which SIPp placed the calls; completed = served, the hotline's BYE after the agent's
hang-up, not a citizen giving up at the end of ``--talk``), failed calls (failed + unfinished), post-dial delay
p50/p95 (per call, the first INVITE sent to the first 180/183/200 received, from
SIPp's ``-trace_msg`` log, microsecond timestamps: SIPp's own response times tick in
whole milliseconds), CPU per completed call of the gateway process and of Asterisk
(utime+stime from /proc/<pid>/stat over the run), and the ratios measured in the
same run: gateway-flow/native completed calls/s and Asterisk CPU per call, gateway
CPU/Asterisk CPU. Other work on this shared 2-core machine adds noise to the CPU
figures (the idle gateway's monitor still reads the native calls' AMI events, so the
native row's gateway CPU is not zero).

    .venv/bin/python bench/sipp_rate_bench.py                       # rates 2,4,8,16,24 calls/s, 15 s each
    .venv/bin/python bench/sipp_rate_bench.py --rates 2,4 --duration 10 --no-lab
Raw output: bench/last-sipp-rate.txt and .json (``--out`` changes the stem).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gateway.lab.lab import Lab  # noqa: E402
from gateway.lab.settings import LabSettings  # noqa: E402
from gateway.lab.sipp import SippRun, run_sipp, scenario_keys, scenario_path  # noqa: E402
from gateway.lab.sippcalls import invite_times, message_log_args, percentile, post_dial_delays_ms  # noqa: E402

FLOWS = {"gateway": "12345", "native": "12399"}
CLK_TCK = os.sysconf("SC_CLK_TCK")
#: queues.conf wrapuptime (s) + a margin: every agent free again before the next run
WRAPUP_S = 12.0


def cpu_seconds(pid: int | None) -> float:
    """utime+stime (+ reaped children) of ``pid`` (threads included), as bench/fastagi_bench.py reads it."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / CLK_TCK


@dataclass
class Row:
    rate: float
    flow: str
    calls: int = 0
    successful: int = 0
    #: successful calls the hotline ended (the agent hung up first): served, not given up by the citizen
    served: int = 0
    failed: int = 0
    window_s: float = 0.0
    wall_s: float = 0.0
    pdd_p50_ms: float | None = None
    pdd_p95_ms: float | None = None
    pdd_mean_ms: float | None = None
    gateway_cpu_s: float = 0.0
    asterisk_cpu_s: float = 0.0
    exit_code: int | None = None
    failures: dict = field(default_factory=dict)

    @property
    def attempted_per_s(self) -> float:
        return (self.calls - 1) / self.window_s if self.window_s > 0 and self.calls > 1 else 0.0

    @property
    def completed_per_s(self) -> float:
        """Calls served to their end (an agent answered and hung up) over the window the calls were placed in."""
        return self.attempted_per_s * self.served / self.calls if self.calls else 0.0

    def cpu_ms(self, seconds: float) -> float | None:
        return 1000 * seconds / self.successful if self.successful else None

    @property
    def gateway_ms(self) -> float | None:
        return self.cpu_ms(self.gateway_cpu_s)

    @property
    def asterisk_ms(self) -> float | None:
        return self.cpu_ms(self.asterisk_cpu_s)

    def as_json(self) -> dict:
        return {**asdict(self), "attempted_per_s": round(self.attempted_per_s, 3),
                "completed_per_s": round(self.completed_per_s, 3), "gateway_cpu_ms_per_call": self.gateway_ms,
                "asterisk_cpu_ms_per_call": self.asterisk_ms}


def active_channels(lab: Lab) -> int | None:
    match = re.search(r"(\d+) active channels?", lab.asterisk.channel_count())
    return int(match.group(1)) if match else None


def wait_idle(lab: Lab, timeout: float = 180.0) -> None:
    """No channel left on the hotline, then the agents' wrap-up."""
    deadline = time.monotonic() + timeout
    while (channels := active_channels(lab)) != 0:
        if time.monotonic() > deadline:
            print(f"warning: {channels} channels still up", file=sys.stderr)
            break
        time.sleep(1.0)
    time.sleep(WRAPUP_S)


def run_load(lab: Lab, row: Row, duration: float, talk_s: float, media_port: int, local_port: int) -> None:
    calls = max(2, int(row.rate * duration))
    keys = scenario_keys("citizen_queue", talk_ms=int(talk_s * 1000))
    with tempfile.TemporaryDirectory(prefix="sipp-rate-") as tmp:
        log = Path(tmp) / "messages.log"
        run = SippRun(scenario=scenario_path("citizen_queue"), target="127.0.0.1:5060", keys=keys,
                      service=FLOWS[row.flow], calls=calls, rate=row.rate, concurrency=calls,
                      timeout_s=int(duration) + 30, media_port=media_port, local_port=local_port,
                      extra_args=message_log_args(log))
        gw_pid, ast_pid = lab.gateway.pid(), lab.asterisk.pid()
        gw0, ast0 = cpu_seconds(gw_pid), cpu_seconds(ast_pid)
        started = time.monotonic()
        result = run_sipp(run, Path(tmp))
        row.wall_s = time.monotonic() - started
        row.gateway_cpu_s, row.asterisk_cpu_s = cpu_seconds(gw_pid) - gw0, cpu_seconds(ast_pid) - ast0
        text = log.read_text(errors="replace") if log.exists() else ""
    pdd, invites = post_dial_delays_ms(text), invite_times(text)
    row.window_s = (invites[-1] - invites[0]).total_seconds() if len(invites) > 1 else 0.0
    if not row.window_s:
        row.window_s = (calls - 1) / row.rate
    row.calls, row.successful, row.served = result.calls_created, result.successful, result.far_end_hangups
    row.failed = result.failed + result.incomplete + (calls - result.calls_created)
    row.pdd_p50_ms, row.pdd_p95_ms = percentile(pdd, 0.5), percentile(pdd, 0.95)
    row.pdd_mean_ms, row.exit_code, row.failures = result.response_time_ms, result.exit_code, dict(result.failures)


def _f(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a is not None and b else "-"


def report(rows: dict[tuple[float, str], Row], rates: list[float], header: str) -> str:
    out = [header, "",
           f"{'rate/s':>6} {'flow':>8} {'calls':>5} {'ok':>5} {'served':>6} {'failed':>6} {'att/s':>6} {'done/s':>6} "
           f"{'PDD p50':>7} {'p95 ms':>6} {'gw CPU ms/call':>14} {'Ast CPU ms/call':>15}"]
    for row in rows.values():
        out.append(f"{row.rate:>6g} {row.flow:>8} {row.calls:>5} {row.successful:>5} {row.served:>6} {row.failed:>6} "
                   f"{row.attempted_per_s:>6.2f} {row.completed_per_s:>6.2f} {_f(row.pdd_p50_ms, '.2f'):>7} "
                   f"{_f(row.pdd_p95_ms, '.2f'):>6} {_f(row.gateway_ms, '.2f'):>14} {_f(row.asterisk_ms, '.2f'):>15}")
    out += ["", "ratios, same run (gateway flow / native dialplan; gateway CPU / Asterisk CPU in the gateway flow):"]
    for rate in rates:
        gw, nat = rows[(rate, "gateway")], rows[(rate, "native")]
        out.append(f"  {rate:g}/s: completed calls/s x{_ratio(gw.completed_per_s, nat.completed_per_s)}, "
                   f"Asterisk CPU/call x{_ratio(gw.asterisk_ms, nat.asterisk_ms)}, "
                   f"gateway CPU / Asterisk CPU {_ratio(gw.gateway_ms, gw.asterisk_ms)}; "
                   f"failed {gw.failed} vs {nat.failed}")
    held = [rate for rate in rates if rows[(rate, "gateway")].failed == 0 and rows[(rate, "native")].failed == 0]
    out.append(f"highest rate with 0 failed calls (both flows): {max(held):g}/s" if held
               else "every rate had failed calls")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="2,4,8,16,24", help="offered calls/s, comma-separated")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of calls placed per run")
    parser.add_argument("--talk", type=float, default=90.0,
                        help="seconds a citizen stays after the greeting at most (the agent hangs up first)")
    parser.add_argument("--agents", type=int, default=99, help="lab agents (1..99)")
    parser.add_argument("--no-lab", action="store_true", help="use the running lab as it is")
    parser.add_argument("--out", default=str(REPO / "bench" / "last-sipp-rate"), help="raw output stem")
    args = parser.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",")]
    lab = Lab(LabSettings.from_env(agents=args.agents), report=lambda m: print(m, file=sys.stderr))
    if not args.no_lab:
        lab.down()
        lab.up(gateway=True, asr=False)
    rows = {(rate, flow): Row(rate, flow) for rate in rates for flow in FLOWS}
    media, port = 40000, 5090
    try:
        # warm-up (not counted): prompts into the page cache, the gateway's connections open
        for flow in FLOWS:
            run_load(lab, Row(1.0, flow), 2.0, args.talk, media, port)
        wait_idle(lab)
        for index, rate in enumerate(rates):
            for flow in (list(FLOWS) if index % 2 == 0 else list(FLOWS)[::-1]):
                media = 40000 + (media - 40000 + 4000) % 20000
                port = 5090 + (port - 5089) % 8
                row = rows[(rate, flow)]
                run_load(lab, row, args.duration, args.talk, media, port)
                print(f"rate {rate:g}/s {flow}: {row.successful}/{row.calls} ok, {row.served} served, "
                      f"{row.failed} failed, {row.wall_s:.1f} s", file=sys.stderr)
                wait_idle(lab)
    finally:
        if not args.no_lab:
            lab.down()
    header = (f"SIPp through the trunk, single node: citizen_queue from 127.0.0.2, {args.duration:g} s per rate, "
              f"{args.agents} lab agents; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    text = report(rows, rates, header)
    print(text)
    Path(args.out + ".txt").write_text(text)
    Path(args.out + ".json").write_text(json.dumps([row.as_json() for row in rows.values()], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
