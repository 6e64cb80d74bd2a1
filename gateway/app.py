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
from .http import build_site
from .metrics import GatewayMetrics
from .scripts.bench import bench_script
from .monitor.service import Monitor, build_monitor, queue_log_reader
from .storage.flow_store import RedisFlowServices
from .storage.redis_store import RedisCallStore

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
    import redis  # the blocking client, used only from the thread pool

    registry = CollectorRegistry()
    metrics = GatewayMetrics(registry)
    pool = ThreadPool(minthreads=1, maxthreads=config.redis.threads, name="redis")
    client = redis.Redis.from_url(
        config.redis.url,
        socket_timeout=config.redis.timeout,
        socket_connect_timeout=config.redis.timeout,
        decode_responses=True,
    )

    def run_blocking(fn):
        return deferToThreadPool(reactor, pool, fn)

    flow_services = RedisFlowServices(
        client, run_blocking, reactor, metrics, key_prefix=config.redis.key_prefix, timezone=config.flows.timezone
    )
    library = FlowLibrary(
        config.flows.directory,
        config.flows.default_queue,
        on_load=lambda result: metrics.flow_loads.labels(result=result).inc(),
        services=flow_services,
    )
    scripts = build_scripts(library, enable_bench)

    store = RedisCallStore(
        client,
        run_blocking,
        reactor,
        metrics,
        key_prefix=config.redis.key_prefix,
        ttl=config.redis.call_ttl,
        backlog_size=config.redis.backlog,
        retry_interval=config.redis.retry_interval,
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
        )
    else:
        log.warn("No AMI secret (HOTLINE_AMI_SECRET[_FILE]): queue monitoring is off; FastAGI still serves calls")

    async def readiness() -> dict[str, bool]:
        return {"redis": await store.ping(), "ami": bool(monitor is not None and monitor.client.logged_in)}

    services = service.MultiService()
    agi_endpoint = endpoints.TCP4ServerEndpoint(reactor, config.agi.port, backlog=1024, interface=config.agi.host)
    internet.StreamServerEndpointService(agi_endpoint, factory).setServiceParent(services)
    http_endpoint = endpoints.TCP4ServerEndpoint(reactor, config.http.port, interface=config.http.host)
    internet.StreamServerEndpointService(http_endpoint, build_site(registry, readiness, factory.rtt_samples)).setServiceParent(services)

    class _Pool(service.Service):
        def startService(self):
            super().startService()
            pool.start()

        def stopService(self):
            super().stopService()
            store.stop()
            return defer.maybeDeferred(pool.stop)

    _Pool().setServiceParent(services)
    if monitor is not None:
        monitor.client.setServiceParent(services)
    return Gateway(config, services, library, factory, store, metrics, registry, monitor)


def _run(args: argparse.Namespace) -> int:
    from twisted.internet import reactor

    from .logs import start_logging

    config = load_config(args.config)
    start_logging(config.log.level, config.log.format)
    gateway = build_gateway(reactor, config, enable_bench=args.bench)
    # Everything built so far lives for the whole run: move it out of the
    # collector's view so a full collection does not stall the reactor
    # (bench/ami_flood_bench.py: longest stall under an AMI flood ~20 ms → ~4 ms).
    gc.freeze()
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
    flows = load_flows(directory)
    for flow in flows.values():
        print(f"ok {flow.name} {flow.version} ({len(flow.nodes)} nodes) {flow.source}")
    return 0


def _show_config(args: argparse.Namespace) -> int:
    print(json.dumps(as_dict(load_config(args.config)), indent=2, ensure_ascii=False))
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
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"hotline-gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    except FlowError as exc:
        print("hotline-gateway: flow errors:\n" + "\n".join(f"  {p}" for p in exc.problems), file=sys.stderr)
        return 2
