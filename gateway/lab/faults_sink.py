"""The work-order webhook down for an hour (of simulated time), counted.

The real sink code — :class:`asr.worker.SinkRunner` (the drafts stream's ``webhook`` consumer
group in a real Redis) with :class:`asr.sinks.WebhookSink` (its retries and backoff) — posts to
a real local HTTP server that answers 503 for the first simulated hour and 201 after it. Time
is a ``task.Clock`` the scenario advances second by second; drafts keep arriving during the
outage. The server counts what it accepted per ``Idempotency-Key``: a draft accepted twice is
doubled, a draft never accepted is lost.

Two things do not follow the simulated clock and are set so they do not matter: Redis measures
an entry's idle time in real time (the runner reclaims with ``redeliver_after=0``: every failed
entry is due again at the runner's next reclaim, which the simulated clock schedules), and each
POST is a real blocking HTTP request (the scenario runs without a reactor; ``post`` returns a
fired Deferred).
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import redis
from prometheus_client import CollectorRegistry
from twisted.internet import defer, task

from .faultcount import FaultRow

__all__ = ["webhook_down_an_hour"]

Report = Callable[[str], None]

STREAM = "hotline:faults:drafts"
OUTAGE = 3600.0


class _Response:
    def __init__(self, code: int) -> None:
        self.code = code


class TicketServer:
    """A local work-order platform: 503 until ``clock`` passes ``up_at``, then 201; counts accepted posts."""

    def __init__(self, clock: task.Clock, up_at: float) -> None:
        self.clock, self.up_at = clock, up_at
        self.accepted: Counter = Counter()
        self.refused = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 — http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if outer.clock.seconds() < outer.up_at:
                    outer.refused += 1
                    self.send_response(503)
                else:
                    json.loads(body)
                    outer.accepted[self.headers.get("Idempotency-Key")] += 1
                    self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/work-orders"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> TicketServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def blocking_post(url: str, data: bytes, headers: dict, timeout: float) -> defer.Deferred:
    """``treq.post``-like, but a real blocking request (no reactor in the scenario)."""
    request = urllib.request.Request(url, data=data, method="POST",
                                     headers={k.decode(): b", ".join(v).decode() for k, v in headers.items()})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return defer.succeed(_Response(response.status))
    except urllib.error.HTTPError as exc:
        return defer.succeed(_Response(exc.code))
    except OSError as exc:
        return defer.fail(exc)


def webhook_down_an_hour(client: redis.Redis, report: Report, drafts: int = 12) -> FaultRow:
    """``drafts`` drafts, one every 5 simulated minutes from the start of the outage; the webhook
    answers 503 for an hour, then accepts. Every draft must be accepted exactly once."""
    from asr.jobs import StreamQueue
    from asr.metrics import AsrMetrics
    from asr.sinks import WebhookSink
    from asr.worker import SinkRunner

    clock = task.Clock()
    clock.advance(1_000_000)
    start = clock.seconds()
    client.delete(STREAM)
    row = FaultRow("ticket webhook down (503) for 1 h of simulated time",
                   in_flight=f"{drafts} draft work orders written during the outage")
    with TicketServer(clock, start + OUTAGE) as server:
        sink = WebhookSink(server.url, "lab-token", clock, post=blocking_post)  # production retries/backoff
        runner = SinkRunner(StreamQueue(client, STREAM, "webhook", "faults-1"), sink.deliver, "webhook",
                            clock=clock, run_redis=defer.maybeDeferred, metrics=AsrMetrics(CollectorRegistry()),
                            redeliver_after=0, read_block_ms=None)
        done = runner.start()
        ids = [f"D-fault-{n:03d}" for n in range(drafts)]
        due = {start + n * 300.0: draft_id for n, draft_id in enumerate(ids)}
        for _second in range(int(OUTAGE) + 600):
            for at in [at for at in due if at <= clock.seconds()]:
                draft_id = due.pop(at)
                client.xadd(STREAM, {"data": json.dumps({"draft_id": draft_id, "summary": "路灯不亮"},
                                                        ensure_ascii=False)})
            clock.advance(1.0)
            if not due and len(server.accepted) == drafts and runner.queue.pending_count() == 0:
                break
        runner.stop()
        clock.advance(5)
        row.lost = sum(1 for draft_id in ids if server.accepted[draft_id] == 0)
        row.doubled = sum(n - 1 for n in server.accepted.values() if n > 1)
        pending = runner.queue.pending_count()
        row.notes.append(f"{server.refused} POSTs refused during the outage; all {drafts - row.lost} accepted "
                         f"within {clock.seconds() - start - OUTAGE:.0f} s of its end; {pending} left pending")
        row.jobs = drafts
        del done
    client.delete(STREAM)
    report(f"webhook: {row.lost} lost, {row.doubled} doubled")
    return row
