"""Faults on the several-node lab, each counted: ``hotline-lab faults``.

Every scenario places real calls through the carrier and the Kamailio front
door (or real callbacks through the dialers), breaks one part with SIGKILL or
a cut socket while the work is in flight, brings it back, and counts from the
parts' own records — each node's queue_log (who reached the queue), the lab
carrier's per-number step counts (who was dialled how often), the job store and
the call records in Redis — never from the gateway's own opinion of itself.

A row: the fault, the work in flight (calls placed, callbacks), how much of it
got through (reached an agent or the queue / jobs finished), what was lost and
what was doubled. The integration tests (tests/nodes/) run the same scenarios
and assert on the rows.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable

from ..monitor.queue_log import parse_lines
from .ami_blocking import AmiClient
from .cluster import ClusterLab
from .errors import LabError
from .faultcount import FaultRow, QueueLog, doubled_dials, format_table, kill9, wait_until, write_rows
from .nodes import Node
from .settings import LAB_DIALER_ENV

__all__ = ["FaultRow", "QueueLogMark", "doubled_dials", "format_table", "kill9", "place_calls", "write_rows"]

Report = Callable[[str], None]


class QueueLogMark(QueueLog):
    """Where every node's queue_log ended when the scenario started; what was added since."""

    def __init__(self, cluster: ClusterLab) -> None:
        super().__init__({node.name: cluster.lab.chroot.path(f"{node.log_dir}/queue_log") for node in cluster.nodes})


def place_calls(carrier: AmiClient, callers: Iterable[str], hangup_after: float, spacing: float = 0.3,
                dtmf: str = "") -> list[str]:
    """The lab carrier calls 12345 once per caller number (async originates, ``spacing`` s apart);
    each citizen keys ``dtmf`` (if any) 2 s after the answer and hangs up after ``hangup_after`` s."""
    placed = []
    for caller in callers:
        fields = [("Channel", "PJSIP/12345@hotline"), ("Context", "carrier-citizen"), ("Exten", "s"),
                  ("Priority", "1"), ("Timeout", "30000"), ("CallerID", f'"citizen" <{caller}>'), ("Async", "true"),
                  ("Variable", f"CITIZEN_HANGUP_AFTER={hangup_after:g}"), ("Variable", "CITIZEN_DTMF_DELAY=2"),
                  ("Variable", f"CITIZEN_DTMF={dtmf}")]
        reply = carrier.action("Originate", fields, check=False)
        if reply.get("Response") != "Success":
            raise LabError(f"the carrier refused an originate: {reply.get('Message', reply)}")
        placed.append(caller)
        time.sleep(spacing)
    return placed


def carrier_channels(cluster: ClusterLab) -> int:
    """Citizens still on a call to 12345 at the carrier (not the hotline's callbacks)."""
    output = cluster.lab.carrier_cli("core show channels concise")
    return sum(1 for line in output.splitlines() if line.split("!")[1:2] == ["carrier-citizen"])


def wait_calls_gone(cluster: ClusterLab, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while carrier_channels(cluster) > 0:
        if time.monotonic() > deadline:
            raise LabError(f"citizens' calls still up at the carrier after {timeout:.0f} s")
        time.sleep(0.5)


def callers(prefix: str, count: int) -> list[str]:
    """Distinct mobile numbers for one scenario (13 + 2-digit prefix + 7 digits)."""
    return [f"13{prefix}{n:07d}" for n in range(1, count + 1)]


def gateway_ready(cluster: ClusterLab, node: Node) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{node.http_port}/readyz", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def wait_gateway_ready(cluster: ClusterLab, node: Node, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not gateway_ready(cluster, node):
        if time.monotonic() > deadline:
            raise LabError(f"the gateway of {node.name} did not become ready within {timeout:.0f} s")
        time.sleep(0.5)


def pause_agents(cluster: ClusterLab, node: Node, paused: bool) -> None:
    pbx = cluster.pbx[node.name]
    for n in range(1, cluster.lab.settings.agents + 1):
        pbx.cli(f"queue {'pause' if paused else 'unpause'} member Local/agent{n}@lab-agent queue 12345")


def cut_ami(pid: int, port: int = 5038) -> int:
    """Destroy a process's established AMI connections (``ss -K``); how many were cut."""
    listing = subprocess.run(["ss", "-tnpH", "state", "established", f"( dport = :{port} )"],
                             capture_output=True, text=True, check=True).stdout
    ports = [line.split()[2].rsplit(":", 1)[1] for line in listing.splitlines() if f"pid={pid}," in line]
    for local in ports:
        subprocess.run(["ss", "-K", "-tn", "state", "established", f"( sport = :{local} )"],
                       capture_output=True, check=True)
    return len(ports)


# -- scenarios ---------------------------------------------------------------------------
_wait = wait_until


def node_killed(cluster: ClusterLab, report: Report) -> FaultRow:
    """kill -9 the second Asterisk node while citizens wait in its queue; new calls must go to the
    first node (the dispatcher's failover and probing), and the citizens lost with the node must
    be recovered from its queue_log as missed calls (callbacks) when it returns."""
    ast1, ast2 = cluster.nodes[:2]
    row = FaultRow("Asterisk node killed (SIGKILL ast2) with citizens in its queue")
    mark = QueueLogMark(cluster)
    pause_agents(cluster, ast2, True)  # its callers wait in its queue
    waiting = callers("50", 4)
    for number in waiting:
        cluster.lab.set_carrier_behaviour(number, PRESS_1)
    after = callers("51", 6)
    try:
        with cluster.lab.carrier_ami() as carrier:
            place_calls(carrier, waiting, hangup_after=25, spacing=0.5)
            _wait(lambda: mark.entered()[ast2.name].total() >= 1, 30, "a caller in ast2's queue")
            time.sleep(1.0)
            lost_with_node = [c for c in waiting if mark.entered()[ast2.name][c]]
            report(f"node_killed: {len(lost_with_node)} citizen(s) waiting on {ast2.name}; kill -9")
            kill9(cluster.pbx[ast2.name].pid(), ast2.name)
            place_calls(carrier, after, hangup_after=12, spacing=0.5)
        wait_calls_gone(cluster, 90)
    finally:
        cluster.pbx[ast2.name].cleanup_stale(report)
    reached, doubled, per_node = mark.reached(after)
    row.calls = len(waiting) + len(after)
    row.reached = mark.reached(waiting)[0] + reached
    row.notes.append(f"after the kill {reached}/{len(after)} reached a queue ({per_node})")
    # back: the gateway reconnects, replays the queue_log and recovers the citizens lost with the node
    cluster.pbx[ast2.name].start(report)
    pause_agents(cluster, ast2, False)
    wait_gateway_ready(cluster, ast2, 90)
    recovered = _wait_callbacks(cluster, lost_with_node, timeout=30)
    row.jobs = len(lost_with_node)
    row.lost = (len(after) - reached) + (len(lost_with_node) - len(recovered))
    row.doubled = doubled + sum(1 for c in lost_with_node if recovered.get(c, 0) > 1)
    row.notes.append(f"{len(recovered)}/{len(lost_with_node)} citizens lost with the node got a callback")
    return row


def callback_jobs(cluster: ClusterLab, numbers: Iterable[str]) -> dict[str, int]:
    """How many callbacks the job store holds for each of ``numbers``."""
    from ..callbacks.service import CALLBACK_CAMPAIGN
    from ..dialer.jobs import JobStore

    wanted = set(numbers)
    store = JobStore(cluster.records().client(timeout=5), owner="lab-faults")
    return dict(Counter(job.number for job in store.list(CALLBACK_CAMPAIGN, None, 1000) if job.number in wanted))


def _wait_callbacks(cluster: ClusterLab, numbers: list[str], timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    found = callback_jobs(cluster, numbers)
    while len(found) < len(numbers) and time.monotonic() < deadline:
        time.sleep(0.5)
        found = callback_jobs(cluster, numbers)
    return found


def gateway_killed_mid_flow(cluster: ClusterLab, report: Report) -> FaultRow:
    """kill -9 the first node's gateway while citizens are in its IVR: they must still reach the
    queue (the dialplan's fallback), and calls arriving meanwhile are served by the backup gateway."""
    ast1 = cluster.nodes[0]
    row = FaultRow("gateway killed (SIGKILL gateway of ast1) mid-flow")
    mark = QueueLogMark(cluster)
    during = callers("52", 8)
    process = cluster.gateways[ast1.name]
    with cluster.lab.carrier_ami() as carrier:
        place_calls(carrier, during[:4], hangup_after=20, spacing=0.3)
        time.sleep(1.0)  # the first citizens hear the greeting
        kill9(process.pid(), "gateway of ast1")
        report("gateway_killed_mid_flow: gateway of ast1 killed")
        place_calls(carrier, during[4:], hangup_after=20, spacing=0.5)
    wait_calls_gone(cluster, 60)
    process.reap()
    process.start(report)
    reached, doubled, per_node = mark.reached(during)
    row.calls, row.reached, row.lost, row.doubled = len(during), reached, len(during) - reached, doubled
    row.notes.append(f"per node {per_node}")
    return row


#: the gateways' dialers on, callbacks through the HTTP API, short leases (a crashed dialer's
#: attempts are taken over within seconds)
API_TOKEN = "lab-faults-token"
DIALER_ENV = {
    **LAB_DIALER_ENV,
    "HOTLINE_DIALER_CALLS_PER_SECOND": "2",
    "HOTLINE_DIALER_MAX_OUTBOUND": "4",
    "HOTLINE_DIALER_LEASE": "8",
    "HOTLINE_DIALER_MAX_ATTEMPTS": "4",
    "HOTLINE_DIALER_BACKOFF": "no_answer=3,busy=3,congestion=3,failed=3,unconfirmed=3",
    "HOTLINE_CALLBACKS_MIN_TALK": "2",
    "HOTLINE_CALLBACKS_POLL_INTERVAL": "0.5",
    "HOTLINE_CALLBACKS_API_TOKEN": API_TOKEN,
    "HOTLINE_REDIS_RETRY_INTERVAL": "1",
}
#: a citizen who answers the callback, presses 1 after 2 s and talks to the agent
PRESS_1 = "ring:1,answer,wait:2,dtmf:1,talk:10,hangup"


def add_callback(node: Node, number: str) -> str:
    """POST /callbacks on a node's gateway (retried while Redis fails over: 5xx)."""
    body = json.dumps({"number": number, "note": "lab fault run"}).encode()
    deadline = time.monotonic() + 30
    while True:
        request = urllib.request.Request(
            f"http://127.0.0.1:{node.http_port}/callbacks", data=body, method="POST",
            headers={"Authorization": f"Bearer {API_TOKEN}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read())["id"]
        except urllib.error.HTTPError as exc:
            if exc.code < 500 or time.monotonic() > deadline:
                raise LabError(f"POST /callbacks: {exc.code} {exc.read()[:200]!r}") from None
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.5)


def jobs_state(cluster: ClusterLab, ids: Iterable[str]) -> dict[str, dict[str, str]]:
    import redis

    try:
        client = cluster.records().client(timeout=5)
        return {job_id: client.hgetall(f"hotline:dialer:job:{job_id}") for job_id in ids}
    except (redis.RedisError, LabError):
        return {}


def wait_jobs_done(cluster: ClusterLab, ids: list[str], timeout: float) -> dict[str, dict[str, str]]:
    deadline = time.monotonic() + timeout
    jobs = jobs_state(cluster, ids)
    while not (jobs and all(job.get("state") == "done" for job in jobs.values())):
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
        jobs = jobs_state(cluster, ids)
    return jobs


def _count_callbacks(cluster: ClusterLab, row: FaultRow, numbers: list[str], ids: list[str],
                     timeout: float) -> None:
    from ..dialer.jobs import JobStore

    jobs = wait_jobs_done(cluster, ids, timeout)
    steps = cluster.lab.carrier_steps()
    keyed = {number: steps.get(number, {}).get("dtmf", 0) for number in numbers}
    store = JobStore(cluster.records().client(timeout=5), owner="lab-faults")
    row.jobs = len(ids)
    row.lost = sum(1 for job in jobs.values() if job.get("state") != "done" or job.get("outcome") != "connected") \
        + (len(ids) - len(jobs))
    row.doubled = sum(doubled_dials(store.history(job_id)) for job_id in ids)
    retried = sum(1 for n in keyed.values() if n > 1)
    row.notes.append(f"citizens who took the callback (pressed 1): {sum(1 for n in keyed.values() if n)}"
                     f"/{len(numbers)}, outcomes {dict(Counter(j.get('outcome', '?') for j in jobs.values()))}"
                     + (f", {retried} called again after an unserved first attempt" if retried else ""))


def gateway_killed_mid_dial(cluster: ClusterLab, report: Report) -> FaultRow:
    """kill -9 the gateway whose dialer has a callback ringing or answered: every callback ends
    once (the restarted gateway settles its node's attempts from that node's AstDB; the other
    node's dialer never dials them again), and nobody is called twice."""
    row = FaultRow("gateway killed (SIGKILL) mid-dial")
    numbers = [f"1390013{n:04d}" for n in range(1, 5)]
    cluster.lab.clear_carrier_steps()
    for number in numbers:
        cluster.lab.set_carrier_behaviour(number, PRESS_1)
    ids = [add_callback(cluster.nodes[0], number) for number in numbers]
    dialling: list[str] = []

    def some_dialling() -> bool:
        dialling[:] = [j.get("node", "") for j in jobs_state(cluster, ids).values() if j.get("phase") == "dialing"]
        return bool(dialling)

    _wait(some_dialling, 40, "a callback dialling")
    node = next(n for n in cluster.nodes if n.name == dialling[0])
    process = cluster.gateways[node.name]
    time.sleep(3)  # ringing / answered
    kill9(process.pid(), f"gateway of {node.name}")
    report(f"gateway_killed_mid_dial: gateway of {node.name} killed with {dialling.count(node.name)} "
           "callback(s) dialling through it")
    row.fault = f"gateway killed (SIGKILL gateway of {node.name}) mid-dial"
    time.sleep(3)
    process.reap()
    process.start(report)
    _count_callbacks(cluster, row, numbers, ids, timeout=150)
    row.notes.insert(0, f"{dialling.count(node.name)} callback(s) dialling through the killed gateway")
    return row


def redis_primary_killed(cluster: ClusterLab, report: Report) -> FaultRow:
    """kill -9 the Redis primary while calls come in and callbacks run: Sentinel promotes the
    replica; every call still reaches the queue, every call record and every callback is kept
    (writes in the failover window are retried against the new primary)."""
    ast1, ast2 = cluster.nodes[:2]
    row = FaultRow("Redis primary killed (SIGKILL), Sentinel failover")
    mark = QueueLogMark(cluster)
    during = callers("53", 8)
    numbers = [f"1390014{n:04d}" for n in range(1, 5)]
    cluster.lab.clear_carrier_steps()
    for number in numbers:
        cluster.lab.set_carrier_behaviour(number, PRESS_1)
    ids = [add_callback(ast1 if i % 2 else ast2, number) for i, number in enumerate(numbers)]
    old = cluster.redis.primary()
    with cluster.lab.carrier_ami() as carrier:
        place_calls(carrier, during[:4], hangup_after=14, spacing=0.5)
        if old is None:
            raise LabError("no Redis primary")
        cluster.redis.kill(old[1])
        report(f"redis_primary_killed: primary {old[0]}:{old[1]} killed")
        place_calls(carrier, during[4:], hangup_after=14, spacing=0.5)
    _wait(lambda: (cluster.redis.primary() or old) != old, 30, "Sentinel's failover")
    new = cluster.redis.primary()
    row.notes.append(f"primary {old[1]} -> {new[1] if new else '?'}")
    wait_calls_gone(cluster, 60)
    reached, doubled, per_node = mark.reached(during)
    row.calls, row.reached = len(during), reached
    missing = _missing_records(cluster, mark, during)
    _count_callbacks(cluster, row, numbers, ids, timeout=150)
    row.lost += (len(during) - reached) + len(missing)
    row.doubled += doubled
    row.notes.append(f"call records missing on the new primary: {len(missing)}")
    cluster.redis.restart_data_node(old[1])
    return row


def _missing_records(cluster: ClusterLab, mark: QueueLogMark, numbers: list[str], wait: float = 20.0) -> list[str]:
    """Calls that reached a queue but whose call record is not in Redis (the record store retries)."""
    wanted = set(numbers)
    uniqueids = []
    for name, path in mark.paths.items():
        with open(path, "rb") as handle:
            handle.seek(mark.offsets[name])
            lines = handle.read().decode("utf-8", "replace").splitlines()
        uniqueids += [e.uniqueid for e in parse_lines(lines) if e.event == "ENTERQUEUE" and e.field(2) in wanted]
    deadline = time.monotonic() + wait
    while True:
        client = cluster.records().client(timeout=5)
        missing = [uid for uid in uniqueids if not client.exists(f"hotline:call:{uid}")]
        if not missing or time.monotonic() > deadline:
            return missing
        time.sleep(1.0)


def ami_cut(cluster: ClusterLab, report: Report) -> FaultRow:
    """Cut the first node's gateway's AMI connection while a citizen abandons in that node's queue:
    the abandon is counted once (queue_log replay after the reconnect), on that node only."""
    ast1 = cluster.nodes[0]
    row = FaultRow("AMI connection cut (ss -K, gateway of ast1) during an abandon")
    mark = QueueLogMark(cluster)
    process = cluster.gateways[ast1.name]
    before = abandoned_counts(cluster)
    pause_agents(cluster, ast1, True)
    pause_agents(cluster, cluster.nodes[1], True)
    try:
        citizens = callers("54", 2)
        with cluster.lab.carrier_ami() as carrier:
            place_calls(carrier, citizens, hangup_after=16, spacing=0.5)
        _wait(lambda: sum(mark.entered()[ast1.name].values()) >= 1, 30, "a caller in ast1's queue")
        pid = process.pid()
        if pid is None:
            raise LabError("the gateway of ast1 is not running")
        os.kill(pid, signal.SIGSTOP)
        try:
            cut = cut_ami(pid)
            wait_calls_gone(cluster, 40)
        finally:
            os.kill(pid, signal.SIGCONT)
        row.notes.append(f"{cut} AMI connection(s) cut")
    finally:
        pause_agents(cluster, ast1, False)
        pause_agents(cluster, cluster.nodes[1], False)
    wait_gateway_ready(cluster, ast1, 60)
    reached, doubled, per_node = mark.reached(citizens)
    expected = {name: per_node.get(name, 0) for name in per_node}
    deadline = time.monotonic() + 30
    got = _delta(before, abandoned_counts(cluster))
    while got != expected and time.monotonic() < deadline:
        time.sleep(0.5)
        got = _delta(before, abandoned_counts(cluster))
    row.calls, row.reached = len(citizens), reached
    row.lost = sum(max(0, expected[n] - got.get(n, 0)) for n in expected)
    row.doubled = doubled + sum(max(0, got.get(n, 0) - expected.get(n, 0)) for n in got)
    row.notes.append(f"abandons counted per node {got}, abandons in the queue_logs {expected}")
    return row


def abandoned_counts(cluster: ClusterLab) -> dict[str, float]:
    """hotline_queue_calls_abandoned_total per node, each read from that node's gateway."""
    from prometheus_client.parser import text_string_to_metric_families

    counts = {}
    for node in cluster.nodes:
        with urllib.request.urlopen(f"http://127.0.0.1:{node.http_port}/metrics", timeout=5) as response:
            text = response.read().decode()
        counts[node.name] = sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                                if s.name == "hotline_queue_calls_abandoned_total")
    return counts


def _delta(before: dict[str, float], after: dict[str, float]) -> dict[str, int]:
    return {name: int(after.get(name, 0) - before.get(name, 0)) for name in after}


SCENARIOS: dict[str, Callable[[ClusterLab, Report], FaultRow]] = {
    "node": node_killed,
    "gateway-flow": gateway_killed_mid_flow,
    "gateway-dial": gateway_killed_mid_dial,
    "redis": redis_primary_killed,
    "ami": ami_cut,
}
