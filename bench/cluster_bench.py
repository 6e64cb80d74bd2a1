"""Load through the front door: SIPp citizens → Kamailio → 1 node vs 2 nodes, in one run.

The two-node lab (``hotline-lab up --nodes 2``: Kamailio, two Asterisk 22 nodes, two
gateways, Redis with Sentinel) is brought up fresh, with Kamailio's flood limit (pike)
raised to ``--pike-density`` so that it measures the nodes, not the limiter. SIPp plays citizens calling 12345
from the carrier's address with G.711 RTP (the voice capture sip-tester ships) and
keys 0 as RFC 4733 events during the greeting (which listens for 9 only, so the
citizen goes on to the queue as most callers do); a lab agent (99 per node) answers
after 1 s and hangs up after 3 s, and the call counts when that BYE arrives.
(A citizen who hangs up unserved would also run the classic AGI safety net, one
Python process per missed call; at these rates that alone overloads the machine.) At each rate
the same load runs with the second node disabled in Kamailio's dispatcher (1 node)
and with both nodes active (2 nodes), the configurations taking turns (the first one
moving each round). Printed per rate and configuration: calls placed, successful,
failed, completed calls/s, post-dial delay; and the 2-node/1-node ratios measured in
the same run. Both nodes share this machine's two cores, so two nodes add failover,
not CPU: a ratio near 1 at low rates is expected; the number to read is where the
failures start.

    .venv/bin/python bench/cluster_bench.py                       # rates 4,8,16 calls/s, 20 s each
    .venv/bin/python bench/cluster_bench.py --pike-density 50      # the shipped flood limit
    .venv/bin/python bench/cluster_bench.py --rates 2,4 --duration 10 --rounds 2 --json out.json
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gateway.lab.cluster import ClusterLab, cluster_nodes  # noqa: E402
from gateway.lab.lab import Lab  # noqa: E402
from gateway.lab.nodes import FRONT_DOOR  # noqa: E402
from gateway.lab.settings import LabSettings  # noqa: E402
from gateway.lab.sipp import SippRun, run_sipp, scenario_keys, scenario_path  # noqa: E402

CONFIGS = ("1 node", "2 nodes")
#: lab agents per node: enough that no citizen waits long at the highest rate
AGENTS = 99


@dataclass
class Row:
    rate: float
    config: str
    rounds: int = 0
    calls: int = 0
    successful: int = 0
    failed: int = 0
    elapsed_s: float = 0.0
    pdd_ms_sum: float = 0.0

    @property
    def calls_per_s(self) -> float:
        return self.successful / self.elapsed_s if self.elapsed_s else 0.0

    @property
    def pdd_ms(self) -> float | None:
        return self.pdd_ms_sum / self.rounds if self.rounds else None

    def as_json(self) -> dict:
        return {**asdict(self), "calls_per_s": round(self.calls_per_s, 3), "pdd_ms": self.pdd_ms}


def set_nodes(cluster: ClusterLab, count: int) -> None:
    """Only the first ``count`` nodes in rotation (the others admin-disabled at the front door)."""
    for index, node in enumerate(cluster.nodes):
        cluster.kamailio.set_state(node.sip, "ap" if index < count else "d")
    time.sleep(1.0)


def run_load(rate: float, duration: float, talk_s: float, workdir: Path, media_port: int) -> tuple[object, float]:
    calls = max(1, int(rate * duration))
    keys = scenario_keys("citizen_key", digit="0", talk_ms=int(talk_s * 1000))
    run = SippRun(scenario=scenario_path("citizen_key"), target="%s:%d" % FRONT_DOOR, keys=keys,
                  calls=calls, rate=rate, concurrency=calls, timeout_s=int(duration + talk_s) + 30,
                  media_port=media_port)
    started = time.monotonic()
    result = run_sipp(run, workdir)
    return result, time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="4,8,16", help="offered calls/s, comma-separated")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of calls placed per run")
    parser.add_argument("--talk", type=float, default=40.0,
                        help="seconds a citizen stays after the key at most (the agent hangs up first)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--pike-density", type=int, default=1000,
                        help="Kamailio's PIKE_DENSITY for the run (requests per 2 s per source; the "
                             "config's default 50 limits one carrier to ~8 new calls/s)")
    parser.add_argument("--no-lab", action="store_true", help="use the running two-node lab as it is")
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",")]
    lab = Lab(LabSettings.from_env(agents=AGENTS), report=lambda m: print(m, file=sys.stderr))
    cluster = ClusterLab(lab)
    cluster.kamailio.defines["PIKE_DENSITY"] = str(args.pike_density)
    if not args.no_lab:
        if cluster_nodes(lab) > 1:
            cluster.down()
        lab.down()
        cluster.up(asr=False, fresh_data=True)
    rows = {(rate, config): Row(rate, config) for rate in rates for config in CONFIGS}
    media = 40000
    try:
        for rate in rates:
            for round_ in range(args.rounds):
                order = CONFIGS if round_ % 2 == 0 else CONFIGS[::-1]
                for config in order:
                    set_nodes(cluster, 1 if config == "1 node" else 2)
                    with tempfile.TemporaryDirectory(prefix="cluster-bench-") as tmp:
                        result, wall = run_load(rate, args.duration, args.talk, Path(tmp), media)
                    media = 40000 + (media - 40000 + 4000) % 20000
                    row = rows[(rate, config)]
                    row.rounds += 1
                    row.calls += result.calls_created
                    row.successful += result.successful
                    row.failed += result.failed + result.incomplete
                    row.elapsed_s += wall
                    row.pdd_ms_sum += result.response_time_ms or 0.0
                    print(f"rate {rate:g}/s {config}: {result.successful}/{result.calls_created} ok, "
                          f"{result.failed} failed, {wall:.1f} s", file=sys.stderr)
    finally:
        set_nodes(cluster, len(cluster.nodes))
        if not args.no_lab:
            cluster.down()
    print(f"{'rate/s':>7} {'config':>8} {'calls':>6} {'ok':>6} {'failed':>6} {'calls/s':>8} {'PDD ms':>7}")
    for row in rows.values():
        pdd = f"{row.pdd_ms:.1f}" if row.pdd_ms is not None else "-"
        print(f"{row.rate:>7g} {row.config:>8} {row.calls:>6} {row.successful:>6} {row.failed:>6} "
              f"{row.calls_per_s:>8.2f} {pdd:>7}")
    print("\n2 nodes / 1 node (same run):")
    for rate in rates:
        one, two = rows[(rate, "1 node")], rows[(rate, "2 nodes")]
        ratio = two.calls_per_s / one.calls_per_s if one.calls_per_s else float("nan")
        print(f"  rate {rate:g}/s: completed calls/s x{ratio:.2f}; failed calls {two.failed} vs {one.failed}")
    if args.json:
        Path(args.json).write_text(json.dumps([row.as_json() for row in rows.values()], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
