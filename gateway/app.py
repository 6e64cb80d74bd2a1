"""Composition root: the only place that builds and wires the services.

``hotline-gateway run`` reads the configuration, loads and validates the
flows (a broken flow stops the start), and serves FastAGI and HTTP.
``hotline-gateway check-flows`` validates the flows offline.
"""
from __future__ import annotations

import argparse
import gc
import signal
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from twisted.application import internet, service
from twisted.internet import defer, endpoints
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from .agi.registry import ScriptRegistry
from .agi.server import FastAgiFactory
from .config import ConfigError, GatewayConfig, as_dict, load_config
from .flows.library import FlowLibrary
from .flows.loader import FlowError, load_flows
from .flows.recordings import RecordingCheck
from .http import build_site, readiness_checks
from .metrics import ChildCache, GatewayMetrics
from .scripts.bench import bench_script
from .monitor.checkpoint import RedisCheckpointStore
from .monitor.service import Monitor, build_monitor, queue_log_reader
from .storage.caller_lookup import ReactorCallerLookup
from .storage.flow_store import RedisFlowServices
from .storage.redis_clients import SentinelError, blocking_client, check_sentinels, sentinels_of
from .storage.redis_store import RedisCallStore
from .storage.resp import RespClient

log = Logger()


@dataclass
class Gateway:
    """Everything ``run`` wires together (handy for integration tests)."""

    config: GatewayConfig
    services: service.MultiService
    flows: FlowLibrary
    factory: FastAgiFactory
    store: RedisCallStore
    metrics: GatewayMetrics
    registry: CollectorRegistry
    monitor: Monitor | None = None
    dialer: object | None = None
    callbacks: object | None = None
    surveys: object | None = None
    #: the survey results webhook's poster (surveys enabled with a webhook URL)
    survey_poster: object | None = None

    def reload_flows(self) -> bool:
        """Re-read ivr_flows/ (SIGHUP); new flow names become AGI scripts too."""
        if not self.flows.reload():
            return False
        for name in self.flows.names():
            if name not in self.factory.registry:
                self.factory.registry.register(name, self.flows.handler(name))
        return True


def build_scripts(library: FlowLibrary, enable_bench: bool = False) -> ScriptRegistry:
    scripts = ScriptRegistry()
    for name in library.names():
        scripts.register(name, library.handler(name))
    if enable_bench:
        scripts.register("bench", bench_script)
    return scripts


def build_gateway(reactor, config: GatewayConfig, enable_bench: bool = False) -> Gateway:
    registry = CollectorRegistry()
    metrics = GatewayMetrics(registry)
    pool = ThreadPool(minthreads=1, maxthreads=config.redis.threads, name="redis")
    # the blocking client, used only from the thread pool (not for call records)
    client = blocking_client(config.redis, timeout=config.redis.timeout)

    def run_blocking(fn):
        return deferToThreadPool(reactor, pool, fn)

    # a voice message's stat (gateway/flows/recordings.py) in the reactor's own pool: never on the reactor
    recordings = RecordingCheck(config.flows.recordings_root,
                                lambda fn, *a: deferToThreadPool(reactor, reactor.getThreadPool(), fn, *a)) \
        if config.flows.recordings_root else None
    flow_services = RedisFlowServices(
        client, run_blocking, reactor, metrics, key_prefix=config.redis.key_prefix, timezone=config.flows.timezone,
        recordings=recordings,
    )
    survey_backend = build_survey_backend(reactor, config, client, run_blocking, registry) \
        if config.surveys.enabled else None
    library = FlowLibrary(
        config.flows.directory,
        config.flows.default_queue,
        on_load=lambda result: metrics.flow_loads.labels(result=result).inc(),
        services=flow_services,
        survey=survey_backend,
        fast_path=config.flows.fast_path,
        prompt_dir=config.flows.prompt_dir,
        on_fast_path=lambda result, _c=ChildCache(metrics.fast_path): _c.get(result).inc(),
        # the fast path's look-up: one pipeline on the call records' reactor client (built below)
        caller_lookup=ReactorCallerLookup(lambda commands: records_client.execute(commands),
                                          config.redis.key_prefix),
    )
    scripts = build_scripts(library, enable_bench)

    # Call records (two writes per call) go through a non-blocking pipeline
    # client on the reactor: no worker thread, no hand-off, no GIL contention.
    records_client = RespClient(
        config.redis.url, reactor=reactor, sentinels=sentinels_of(config.redis), timeout=config.redis.timeout,
        connect_timeout=config.redis.timeout,
    )
    store = RedisCallStore(
        records_client.execute,
        reactor,
        metrics,
        key_prefix=config.redis.key_prefix,
        ttl=config.redis.call_ttl,
        backlog_size=config.redis.backlog,
        retry_interval=config.redis.retry_interval,
        ping=records_client.ping,
    )
    factory = FastAgiFactory(
        scripts,
        store,
        metrics,
        reactor,
        command_timeout=config.agi.command_timeout,
        header_timeout=config.agi.header_timeout,
        session_timeout=config.agi.session_timeout,
        max_line=config.agi.max_line,
        prompt_dir=config.flows.prompt_dir,
        keep_rtt_samples=enable_bench,
        direct_writes=config.agi.direct_writes,
    )

    monitor = None
    if config.ami.secret:
        from twisted.internet.threads import deferToThread

        ami_endpoint = endpoints.TCP4ClientEndpoint(reactor, config.ami.host, config.ami.port, timeout=5)
        monitor = build_monitor(
            config,
            clock=reactor,
            endpoint=ami_endpoint,
            registry=registry,
            read_queue_log=queue_log_reader(config.monitor.queue_log, deferToThread),
            checkpoints=RedisCheckpointStore(client, run_blocking, config.redis.key_prefix,
                                             node=config.monitor.node_label()),
        )
    else:
        log.warn("No AMI secret (HOTLINE_AMI_SECRET[_FILE]): queue monitoring is off; FastAGI still serves calls")

    dialer_parts = None
    if config.dialer.enabled and monitor is not None:
        dialer_parts = build_dialer(reactor, config, client, run_blocking, registry, monitor)
    elif config.dialer.enabled:
        log.warn("dialer.enabled but no AMI: the dialer and callbacks stay off")
    survey_parts = None
    if survey_backend is not None and dialer_parts is not None:
        survey_parts = build_surveys(reactor, config, client, run_blocking, dialer_parts.dialer, survey_backend,
                                     library)
    elif survey_backend is not None:
        log.warn("surveys.enabled but the dialer is off (dialer.enabled and AMI needed): no survey calls")

    readiness = readiness_checks({"redis": store.ping, "ami": lambda: monitor is not None and monitor.client.logged_in})

    services = service.MultiService()
    agi_endpoint = endpoints.TCP4ServerEndpoint(reactor, config.agi.port, backlog=1024, interface=config.agi.host)
    internet.StreamServerEndpointService(agi_endpoint, factory).setServiceParent(services)
    http_endpoint = endpoints.TCP4ServerEndpoint(reactor, config.http.port, interface=config.http.host)
    site = build_site(registry, readiness, factory.rtt_samples)
    if dialer_parts is not None and dialer_parts.api is not None:
        site.resource.putChild(b"callbacks", dialer_parts.api)
    if survey_parts is not None:
        site.resource.putChild(b"surveys", survey_parts.api)
    internet.StreamServerEndpointService(http_endpoint, site).setServiceParent(services)

    class _Pool(service.Service):
        def startService(self):
            super().startService()
            pool.start()

        def stopService(self):
            super().stopService()
            store.stop()
            return defer.maybeDeferred(pool.stop)

    # added before _Pool: a MultiService stops its children in reverse order, so
    # store.stop() (in _Pool) sends the last batch while the connection is still up
    records_client.setServiceParent(services)
    _Pool().setServiceParent(services)
    if monitor is not None:
        monitor.service.setServiceParent(services)
    if dialer_parts is not None:
        dialer_parts.service.setServiceParent(services)
    if survey_parts is not None:
        survey_parts.service.setServiceParent(services)
    return Gateway(config, services, library, factory, store, metrics, registry, monitor,
                   dialer=dialer_parts.dialer if dialer_parts else None,
                   callbacks=dialer_parts.callbacks if dialer_parts else None,
                   surveys=survey_parts.campaign if survey_parts else None,
                   survey_poster=survey_parts.poster if survey_parts else None)


@dataclass
class DialerParts:
    dialer: object
    callbacks: object
    service: service.Service
    api: object | None


def build_dialer(reactor, config: GatewayConfig, client, run_blocking, registry: CollectorRegistry,
                 monitor: Monitor) -> DialerParts:
    """The dialer core, the callback service, its sources and its HTTP API."""
    from .callbacks.api import CallbacksResource
    from .callbacks.metrics import CallbackMetrics
    from .callbacks.service import CallbackService, CallbackSettings
    from .callbacks.sources import SpoolSource, StreamSource, ivr_request_handler, missed_call_handler
    from .dialer.jobs import JobStore
    from .dialer.pacestore import PaceStore
    from .dialer.pacing import Pacer, QueueLoad, TrunkLimit
    from .dialer.policy import NumberPolicy
    from .dialer.retry import RetryPolicy
    from .dialer.service import Dialer, DialerMetrics, DialerSettings
    from .dialer.windows import CallWindows

    d, c = config.dialer, config.callbacks
    prefix = config.redis.key_prefix
    state = monitor.state

    def trunk_channels(trunk: str) -> int:
        view = state.trunk_views().get(trunk)
        return view.channels if view is not None else 0

    def queue_loads() -> dict[str, QueueLoad]:
        return {queue: QueueLoad(view.available, view.waiting)
                for queue, view in state.queue_views(reactor.seconds()).items()}

    # an attempt in progress is settled from the AstDB of the node it was placed on (several nodes)
    store = JobStore(client, key_prefix=prefix, node=config.monitor.node_label())
    pacer = Pacer({d.trunk: TrunkLimit(d.trunk_channels, d.inbound_reserve, d.max_outbound, d.calls_per_second)},
                  trunk_channels, queue_loads, agent_margin=d.agent_margin)
    policy = NumberPolicy.from_text(d.allowed_kinds, d.local_area_code)
    windows = CallWindows(d.window_start, d.window_end, config.flows.timezone, d.holidays,
                          CallWindows.parse_days(d.closed_days))
    dialer = Dialer(
        clock=reactor, run_blocking=run_blocking, store=store, ami=monitor.client, pacer=pacer,
        pace_store=PaceStore(client, key_prefix=prefix), windows=windows,
        retry=RetryPolicy.from_text(d.backoff, d.max_attempts), metrics=DialerMetrics(registry),
        settings=DialerSettings(
            trunk=d.trunk, lease=d.lease, poll_interval=d.poll_interval, batch=d.batch, ring_timeout=d.ring_timeout,
            per_number_cap=d.per_number_cap, min_talk=c.min_talk, retry_interval=config.redis.retry_interval,
            callback_priority=c.priority,
            # test-only hook of the fault runs (tests/faults): never set in production
            test_pause=float(os.environ.get("HOTLINE_DIALER_TEST_PAUSE") or 0),
        ),
        policy=policy,
    )
    for name, handler in dialer.subscriptions().items():
        monitor.router.subscribe(name, handler)
    monitor.client.add_lost_hook(dialer.connection_lost)

    callbacks = None
    sources = []
    api = None
    if c.enabled:
        callbacks = CallbackService(
            clock=reactor, run_blocking=run_blocking, store=store, policy=policy, metrics=CallbackMetrics(registry),
            settings=CallbackSettings(mode=c.mode, queue=c.queue, caller_id=c.caller_id, min_wait=c.min_wait,
                                      merge_window=c.merge_window, expiry=c.expiry),
            count_connected=monitor.metrics.queue.callback_connected,
        )
        state.add_abandon_listener(callbacks.on_abandon)
        state.add_lost_listener(callbacks.on_lost)
        state.add_answer_listener(callbacks.on_answered)
        dialer.add_attempt_listener(callbacks.on_attempt)
        dialer.add_final_listener(callbacks.on_final)
        for name, stream, handler in (
            ("safety-net", f"{prefix}:missed:calls", missed_call_handler(callbacks)),
            ("ivr-request", f"{prefix}:callback:requests", ivr_request_handler(callbacks)),
        ):
            sources.append(StreamSource(
                name=name, clock=reactor, run_blocking=run_blocking, client=client, stream=stream,
                cursor_key=f"{prefix}:callbacks:cursor:{name}", handler=handler, interval=c.poll_interval,
            ))
        if c.missed_spool:
            sources.append(SpoolSource(
                clock=reactor, run_blocking=run_blocking, client=client, path=c.missed_spool,
                cursor_key=f"{prefix}:callbacks:cursor:spool", handler=missed_call_handler(callbacks),
                interval=max(c.poll_interval, 5.0),
            ))
        api = CallbacksResource(callbacks, c.api_token)

    class _DialerService(service.Service):
        def startService(self):
            super().startService()
            dialer.start()
            for source in sources:
                source.start()

        def stopService(self):
            super().stopService()
            for source in sources:
                source.stop()
            dialer.stop()

    return DialerParts(dialer, callbacks, _DialerService(), api)


def build_survey_backend(reactor, config: GatewayConfig, client, run_blocking, registry: CollectorRegistry):
    """The survey flow's backend: the survey store, its metrics, spoken answers (own bounded pool)."""
    from .surveys.flow import SurveyFlowBackend
    from .surveys.metrics import SurveyMetrics
    from .surveys.speech import SpeechRecognizer
    from .surveys.store import SurveyStore

    s = config.surveys
    speech = None
    if s.speech_model_path:
        speech_pool = ThreadPool(minthreads=0, maxthreads=s.speech_threads, name="survey-asr")
        reactor.callWhenRunning(speech_pool.start)
        reactor.addSystemEventTrigger("during", "shutdown", speech_pool.stop)

        def engine():
            from asr.engine import VoskEngine

            return VoskEngine(s.speech_model_path)

        speech = SpeechRecognizer(
            clock=reactor, run_in_pool=lambda fn, *a: deferToThreadPool(reactor, speech_pool, fn, *a),
            engine_factory=engine, timeout=s.speech_timeout, max_waiting=4 * s.speech_threads,
            recordings_root=s.recordings_root,
        )
        reactor.callWhenRunning(speech.warm_up)
    prefix = config.redis.key_prefix
    return SurveyFlowBackend(
        clock=reactor, run_blocking=run_blocking,
        store=SurveyStore(client, key_prefix=prefix, reopen_stream=s.reopen_stream, result_ttl=s.result_ttl),
        metrics=SurveyMetrics(registry), client=client, jobs_stream=f"{prefix}:jobs:transcribe", speech=speech,
        speech_language=s.speech_language,
    )


@dataclass
class SurveyParts:
    campaign: object
    service: service.Service
    api: object
    #: the results webhook's poster (None without a webhook URL)
    poster: object = None


def build_surveys(reactor, config: GatewayConfig, client, run_blocking, dialer, backend, library) -> SurveyParts:
    """The survey campaign on the dialer: its own windows and retry policy, triggers, results webhook."""
    from .callbacks.sources import StreamSource
    from .dialer.policy import NumberPolicy
    from .dialer.retry import RetryPolicy
    from .dialer.windows import CallWindows
    from .surveys.campaign import SURVEY_CAMPAIGN, CampaignSettings, SurveyCampaign
    from .surveys.results import ResultPoster, treq_post
    from .surveys.rules import SurveyRules
    from .surveys.triggers import SurveysResource, closed_event_handler

    s, d = config.surveys, config.dialer
    flow = library.flows.get("survey")
    topics = dict((flow.settings.get("topics") or {}) if flow is not None else {})
    if flow is not None:
        topics.update({key[len("topic_"):]: key[len("topic_"):] for key in flow.prompts if key.startswith("topic_")})
    campaign = SurveyCampaign(
        clock=reactor, run_blocking=run_blocking, store=backend.store, jobs=dialer.store,
        policy=NumberPolicy.from_text(d.allowed_kinds, d.local_area_code), metrics=backend.metrics,
        rules=SurveyRules(s.delay, s.combine_ahead, s.max_orders_per_call, s.spacing, s.expiry, s.max_age),
        settings=CampaignSettings(caller_id=s.caller_id, queue=config.flows.default_queue, interval=s.interval,
                                  timezone=config.flows.timezone, topics=topics),
    )
    backend.finish = campaign.finish
    backend.decline_orders = campaign.decline
    dialer.configure_campaign(
        SURVEY_CAMPAIGN, retry=RetryPolicy.from_text(s.backoff, s.max_attempts),
        windows=CallWindows(s.window_start, s.window_end, config.flows.timezone, s.holidays,
                            CallWindows.parse_days(s.closed_days)),
    )
    dialer.add_attempt_listener(campaign.on_attempt)
    dialer.add_final_listener(campaign.on_final)
    prefix = config.redis.key_prefix
    source = StreamSource(name="workorders-closed", clock=reactor, run_blocking=run_blocking, client=client,
                          stream=s.closed_stream, cursor_key=f"{prefix}:surveys:cursor:closed",
                          handler=closed_event_handler(campaign), interval=s.interval)
    poster = None
    if s.webhook_url:
        poster = ResultPoster(clock=reactor, run_blocking=run_blocking, client=client,
                              outbox=backend.store.key("outbox"), url=s.webhook_url, token=s.webhook_token,
                              post=treq_post(reactor, s.webhook_timeout), metrics=backend.metrics,
                              interval=s.interval, initial_backoff=s.webhook_backoff,
                              max_backoff=s.webhook_max_backoff, max_tries=s.webhook_max_tries,
                              lease=max(60.0, 3 * s.interval, 3 * s.webhook_timeout))

    class _SurveyService(service.Service):
        def startService(self):
            super().startService()
            campaign.start()
            source.start()
            if poster is not None:
                poster.start()

        def stopService(self):
            super().stopService()
            campaign.stop()
            source.stop()
            if poster is not None:
                poster.stop()

    return SurveyParts(campaign, _SurveyService(), SurveysResource(campaign, s.api_token), poster)


#: young-generation threshold: allocations between two gen-0 collections
GC_GEN0_THRESHOLD = 10_000


def tune_gc() -> None:
    """Collector settings for the long-running gateway, applied once start-up is done.

    Everything built so far lives for the whole run: ``gc.freeze`` moves it out
    of the collector's view so a full collection does not stall the reactor
    (``bench/ami_flood_bench.py``: longest stall under an AMI flood ~20 ms → ~4 ms).
    A call allocates a few hundred short-lived objects (Deferreds, coroutines,
    replies) that reference counting frees; at the default gen-0 threshold
    (700) the collector still walks the live young objects every few calls.
    A higher threshold walks them far less often (FastAGI CPU micro-benchmark,
    ``bench/fastagi_cpu_bench.py``: ~6 % less gateway CPU per call); a young
    collection of 10 000 objects takes about a millisecond.
    """
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


def _run(args: argparse.Namespace) -> int:
    from twisted.internet import reactor

    from .logs import start_logging

    config = load_config(args.config)
    start_logging(config.log.level, config.log.format)
    # before the reactor runs (it blocks): wrong or unreachable sentinels stop the start here
    primary = check_sentinels(config.redis)
    if primary is not None:
        log.info("Redis primary {host}:{port} (as the sentinels say)", host=primary[0], port=primary[1])
    gateway = build_gateway(reactor, config, enable_bench=args.bench)
    tune_gc()
    gateway.services.startService()
    reactor.addSystemEventTrigger("before", "shutdown", gateway.services.stopService)
    # SIGHUP reloads the flows; calls in progress finish on the version they started with.
    signal.signal(signal.SIGHUP, lambda *_: reactor.callFromThread(gateway.reload_flows))
    log.info(
        "hotline-gateway listening: FastAGI {agi_host}:{agi_port}, HTTP {http_host}:{http_port}",
        agi_host=config.agi.host,
        agi_port=config.agi.port,
        http_host=config.http.host,
        http_port=config.http.port,
    )
    reactor.run()
    return 0


def _check_flows(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    directory = args.directory or config.flows.directory
    flows = load_flows(directory, queues=(config.flows.default_queue,))
    for flow in flows.values():
        print(f"ok {flow.name} {flow.version} ({len(flow.nodes)} nodes) {flow.source}")
    return 0


def _show_config(args: argparse.Namespace) -> int:
    print(json.dumps(as_dict(load_config(args.config)), indent=2, ensure_ascii=False))
    return 0


def _callbacks(args: argparse.Namespace) -> int:
    """``hotline-gateway callbacks list|show|cancel|add|dnc`` against Redis (blocking: a console command).

    ``dnc [add] NUMBER``, ``dnc remove NUMBER``, ``dnc list``: the do-not-call list (shown masked)."""
    import time

    from .callbacks.service import CALLBACK_CAMPAIGN, job_id_for
    from .dialer.jobs import JobStore, NewJob
    from .dialer.policy import NumberPolicy, national_digits
    from .masking import mask_number

    config = load_config(args.config)
    client = blocking_client(config.redis, timeout=5)
    store = JobStore(client, key_prefix=config.redis.key_prefix, owner="console")
    now = time.time()
    if args.action == "list":
        for job in store.list(CALLBACK_CAMPAIGN, args.state, args.limit):
            print(f"{job.id}\t{job.state}\t{job.outcome or '-'}\t{mask_number(job.number)}\t"
                  f"attempts={job.attempts}\tmerged={job.merged}\t{job.payload.get('source', '')}")
        return 0
    if args.action == "show":
        job = store.get(args.target)
        if job is None or job.campaign != CALLBACK_CAMPAIGN:
            print(f"no callback {args.target}", file=sys.stderr)
            return 1
        view = job.public()
        view["number"] = mask_number(job.number)
        print(json.dumps({"callback": view, "history": store.history(args.target)}, indent=2, ensure_ascii=False))
        return 0
    if args.action == "cancel":
        result = store.cancel(args.target, now, "console", campaign=CALLBACK_CAMPAIGN)
        print({0: "no pending callback", 1: "cancel requested (call in progress)", 2: "cancelled"}[result])
        return 0 if result else 1
    policy = NumberPolicy.from_text(config.dialer.allowed_kinds, config.dialer.local_area_code)
    if args.action == "dnc":
        verb, number = (args.target, args.number) if args.target in ("add", "remove", "list") else ("add", args.target)
        if verb == "list":
            count, numbers = store.list_dnc(args.limit)
            for masked in sorted(mask_number(national_digits(e164)) for e164 in numbers):
                print(masked)
            shown = f" ({len(numbers)} shown, --limit for more)" if count > len(numbers) else ""
            print(f"{count} number(s) on the do-not-call list{shown}")
            return 0
        decision = policy.check(number)
        if not decision.e164:  # any valid number, whether or not its kind may be dialled
            print(f"refused: {decision.reason}", file=sys.stderr)
            return 1
        masked = mask_number(decision.dial or national_digits(decision.e164))
        if verb == "add":
            store.add_dnc(decision.e164)
            print(f"{masked} is on the do-not-call list")
            return 0
        if not store.remove_dnc(decision.e164):
            print(f"{masked} was not on the do-not-call list", file=sys.stderr)
            return 1
        print(f"{masked} is off the do-not-call list")
        return 0
    decision = policy.check(args.target)
    if not decision.allowed:
        print(f"refused: {decision.reason}", file=sys.stderr)
        return 1
    c = config.callbacks
    call_id = f"console-{int(now * 1000)}"
    result, job_id = store.add(NewJob(job_id_for(call_id), CALLBACK_CAMPAIGN, decision.dial, decision.e164, now, now,
                                      now + c.expiry, c.caller_id, c.mode, c.queue, {"source": "console",
                                                                                     "call_id": call_id,
                                                                                     "queue": c.queue}),
                               now, c.merge_window)
    print(f"{result} {job_id}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hotline-gateway", description="12345 hotline telephony gateway")
    parser.add_argument("--config", help="TOML configuration file (default: $HOTLINE_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="serve FastAGI and HTTP (metrics, health)")
    run.add_argument("--bench", action="store_true", help="also register the 'bench' AGI script")
    run.set_defaults(func=_run)
    check = sub.add_parser("check-flows", help="validate the flow files and exit")
    check.add_argument("directory", nargs="?", help="flow directory (default: configured)")
    check.set_defaults(func=_check_flows)
    sub.add_parser("config", help="print the effective configuration (secrets hidden)").set_defaults(func=_show_config)
    cb = sub.add_parser("callbacks", help="list / show / cancel / add callbacks; the do-not-call list "
                                          "(dnc [add] NUMBER, dnc remove NUMBER, dnc list)")
    cb.add_argument("action", choices=("list", "show", "cancel", "add", "dnc"))
    cb.add_argument("target", nargs="?", default="",
                    help="callback id (show, cancel), number (add), add|remove|list or a number to add (dnc)")
    cb.add_argument("number", nargs="?", default="", help="dnc add|remove: the number")
    cb.add_argument("--state", choices=("pending", "leased", "done"), help="list: only this state")
    cb.add_argument("--limit", type=int, default=50)
    cb.set_defaults(func=_callbacks)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"hotline-gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    except SentinelError as exc:
        print(f"hotline-gateway: cannot start: {exc}", file=sys.stderr)
        return 1
    except FlowError as exc:
        print("hotline-gateway: flow errors:\n" + "\n".join(f"  {p}" for p in exc.problems), file=sys.stderr)
        return 2
