"""Composition root of ``hotline-asr worker``: the only place that touches the global reactor."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool
from twisted.web import resource, server

from gateway.config import GatewayConfig, RedisConfig
from gateway.storage.redis_clients import blocking_client
from gateway.surveys.store import SurveyStore

from .engine import VoskEngine
from .jobs import JobQueue, StreamQueue
from .metrics import AsrMetrics
from .sinks import JsonlSink, WebhookSink
from .worker import SinkRunner, TranscriptionWorker, consumer_name

__all__ = ["build_site", "run_worker"]

log = Logger(namespace="asr.service")


class _Health(resource.Resource):
    isLeaf = True

    def __init__(self, worker: TranscriptionWorker) -> None:
        super().__init__()
        self._worker = worker

    def render_GET(self, request) -> bytes:
        request.setHeader(b"content-type", b"text/plain")
        if self._worker.stopping:
            request.setResponseCode(503)
            return b"stopping\n"
        return b"ok\n"


def build_site(registry: CollectorRegistry, worker: TranscriptionWorker) -> server.Site:
    from prometheus_client.twisted import MetricsResource

    root = resource.Resource()
    root.putChild(b"metrics", MetricsResource(registry=registry))
    root.putChild(b"healthz", _Health(worker))
    return server.Site(root)


def redis_client(redis_config: RedisConfig):
    """The worker's blocking client: the URL's server or the sentinels' primary."""
    # XREADGROUP blocks up to 1 s: the socket timeout must be longer than that
    return blocking_client(redis_config, timeout=max(redis_config.timeout, 5.0),
                           connect_timeout=max(redis_config.timeout, 2.0), health_check_interval=30)


def run_worker(config: GatewayConfig, reactor: Any, consumer: str | None = None) -> defer.Deferred:
    """Wire everything and start; returns a Deferred that fires when the worker has stopped."""
    asr = config.asr
    from gateway.drafting import load_drafter

    engine = VoskEngine(asr.model_path)
    drafter = load_drafter(taxonomy_path=asr.taxonomy_path or None, gazetteer_path=asr.gazetteer_path or None,
                           low_confidence=asr.low_confidence)
    # draft once at start-up: a broken taxonomy fails here, and the first job pays no warm-up
    import datetime as dt
    from zoneinfo import ZoneInfo

    drafter.draft({"recording_id": "warm-up"}, "", 0.0, dt.datetime.now(ZoneInfo(config.flows.timezone)))
    registry = CollectorRegistry()
    metrics = AsrMetrics(registry)
    client = redis_client(config.redis)
    consumer = consumer or consumer_name()
    decode_pool = ThreadPool(minthreads=1, maxthreads=1, name="asr-decode")
    decode_pool.start()
    reactor.addSystemEventTrigger("after", "shutdown", decode_pool.stop)
    reactor.suggestThreadPoolSize(8)

    def run_redis(fn):
        return threads.deferToThread(fn)

    def run_decode(fn):
        return threads.deferToThreadPool(reactor, decode_pool, fn)

    queue = JobQueue(client, asr.jobs_stream, asr.group, consumer, dead_letter_stream=asr.dead_letter_stream,
                     drafts_stream=asr.drafts_stream, draft_key_prefix=asr.draft_key_prefix,
                     draft_ttl=asr.draft_ttl, callback_stream=f"{config.redis.key_prefix}:callback:requests")
    worker = TranscriptionWorker(
        queue, lambda path, stop: engine.transcribe_file(path, should_stop=stop), drafter,
        clock=reactor, run_redis=run_redis, run_decode=run_decode, metrics=metrics,
        recordings_root=asr.recordings_root, max_attempts=asr.max_attempts,
        reclaim_idle=asr.reclaim_idle_seconds, timezone=config.flows.timezone,
        shutdown_grace=asr.shutdown_grace, model_name=Path(asr.model_path).name,
        comments=SurveyStore(client, key_prefix=config.redis.key_prefix, reopen_stream=config.surveys.reopen_stream,
                             result_ttl=config.surveys.result_ttl),
    )
    loops: list = [worker]
    if asr.webhook_url:
        webhook = WebhookSink(asr.webhook_url, asr.webhook_token, reactor, timeout=asr.webhook_timeout,
                              retries=asr.webhook_retries)
        loops.append(SinkRunner(StreamQueue(client, asr.drafts_stream, "webhook", consumer), webhook.deliver,
                                "webhook", clock=reactor, run_redis=run_redis, metrics=metrics,
                                redeliver_after=asr.sink_redeliver_seconds))
    if asr.jsonl_path:
        jsonl = JsonlSink(asr.jsonl_path)
        loops.append(SinkRunner(StreamQueue(client, asr.drafts_stream, "jsonl", consumer),
                                lambda draft: run_redis(lambda: jsonl.write(draft)), "jsonl", clock=reactor,
                                run_redis=run_redis, metrics=metrics, redeliver_after=asr.sink_redeliver_seconds))
    port = reactor.listenTCP(asr.metrics_port, build_site(registry, worker), interface=asr.metrics_host)
    log.info("ASR worker {consumer}: model {model} ({rate} Hz, loaded in {load:.1f} s), stream {stream} group "
             "{group}, sinks {sinks}, metrics on {host}:{port}", consumer=consumer, model=asr.model_path,
             rate=engine.sample_rate, load=engine.load_seconds, stream=asr.jobs_stream, group=asr.group,
             sinks=",".join(["redis"] + [loop.sink for loop in loops[1:]]), host=asr.metrics_host,
             port=port.getHost().port)
    finished = defer.DeferredList([loop.start() for loop in loops])

    def stop() -> defer.Deferred:
        log.info("ASR worker {consumer} stopping", consumer=consumer)
        return defer.DeferredList([loop.stop() for loop in loops])

    reactor.addSystemEventTrigger("before", "shutdown", stop)
    return finished
