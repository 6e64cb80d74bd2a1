"""Assemble the monitor from the configuration (called by the composition root).

Everything is injected: the clock, the AMI endpoint, the metrics registry,
the queue_log reader (which must not block the reactor: the composition root
passes ``read_lines_since`` run in a thread pool) and the checkpoint store
(Redis through the same kind of pool). ``gateway/app.py`` wires it::

    endpoint = endpoints.TCP4ClientEndpoint(reactor, config.ami.host, config.ami.port, timeout=5)
    monitor = build_monitor(config, clock=reactor, endpoint=endpoint, registry=registry,
                            read_queue_log=queue_log_reader(config.monitor.queue_log, run_blocking),
                            checkpoints=RedisCheckpointStore(client, run_blocking, config.redis.key_prefix,
                                                             node=config.monitor.node_label()))
    monitor.service.setServiceParent(services)
    # readiness: {"ami": monitor.client.logged_in, ...}
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from prometheus_client import CollectorRegistry
from twisted.application import service
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint

from ..ami.client import AmiClient
from ..ami.router import EventRouter
from ..config import GatewayConfig
from .checkpoint import Checkpointer, CheckpointStore
from .events import AmiEventAdapter, subscription_table
from .metrics import MonitorMetrics
from .model import HotlineState
from .queue_log import read_lines_since
from .resync import ReadQueueLog, Resync

__all__ = ["Monitor", "MonitorService", "build_monitor", "queue_log_reader"]


class MonitorService(service.Service):
    """The AMI session and the checkpoint writer, started and stopped together.

    At stop the AMI session is closed first (no event is counted after that),
    then the last checkpoint is written; the returned Deferred waits for both.
    """

    def __init__(self, client: AmiClient, checkpointer: Checkpointer | None) -> None:
        self.client = client
        self.checkpointer = checkpointer

    def startService(self) -> None:
        super().startService()
        if self.checkpointer is not None:
            self.checkpointer.start()  # reads the stored checkpoint while the AMI login goes on
        self.client.startService()

    def stopService(self) -> defer.Deferred:
        super().stopService()
        stopped = [defer.maybeDeferred(self.client.stopService)]
        if self.checkpointer is not None:
            stopped.append(self.checkpointer.stop())
        return defer.DeferredList(stopped, consumeErrors=True)


@dataclass
class Monitor:
    state: HotlineState
    metrics: MonitorMetrics
    client: AmiClient
    resync: Resync
    router: EventRouter
    service: MonitorService
    checkpointer: Checkpointer | None = None


def queue_log_reader(
    path: str, run_blocking: Callable[[Callable[[], list[str]]], defer.Deferred]
) -> ReadQueueLog | None:
    """``since → Deferred[lines]`` reading ``path`` off the reactor thread (None if no path)."""
    if not path:
        return None
    return lambda since: run_blocking(partial(read_lines_since, path, since))


def build_monitor(
    config: GatewayConfig,
    *,
    clock: IReactorTime,
    endpoint: IStreamClientEndpoint,
    registry: CollectorRegistry,
    read_queue_log: ReadQueueLog | None = None,
    checkpoints: CheckpointStore | None = None,
) -> Monitor:
    """The state model, its metrics (labelled with ``monitor.node``), the AMI client routed by the
    subscription table, the resync, and — given a store — the restart checkpoint."""
    metrics = MonitorMetrics(registry, node=config.monitor.node_label())
    state = HotlineState(
        metrics.sink,
        service_level=config.monitor.service_level,
        short_abandon=config.monitor.short_abandon,
        trunks=config.monitor.trunk_names(),
        trunk_capacity=config.monitor.capacities(),
        retention=config.monitor.retention,
    )
    metrics.watch(state, clock.seconds)
    router = EventRouter(
        subscription_table(AmiEventAdapter(state, clock.seconds)),
        on_event=metrics.ami.event_handled,
        on_error=metrics.ami.handler_error,
    )
    checkpointer = None
    if checkpoints is not None:
        checkpointer = Checkpointer(
            state, checkpoints, clock=clock, position=lambda: resync.replay_position(),
            margin=config.monitor.queue_log_margin, interval=config.monitor.checkpoint_interval,
            observer=metrics.ami,
        )
    resync = Resync(
        state, now=clock.seconds, read_queue_log=read_queue_log, margin=config.monitor.queue_log_margin,
        observer=metrics.ami, clock=clock, refresh_interval=config.monitor.refresh_interval,
        restore=checkpointer.load if checkpointer is not None else None,
    )
    ami = config.ami
    client = AmiClient(
        endpoint,
        ami.username,
        ami.secret,
        clock=clock,
        router=router,
        observer=metrics.ami,
        events=ami.events,
        keepalive_interval=ami.keepalive_interval,
        keepalive_timeout=ami.keepalive_timeout,
        action_timeout=ami.action_timeout,
        login_timeout=ami.login_timeout,
        reconnect_initial=ami.reconnect_initial,
        reconnect_max=ami.reconnect_max,
        on_ready=[resync],
        on_lost=[resync.connection_lost],
    )
    return Monitor(state, metrics, client, resync, router, MonitorService(client, checkpointer), checkpointer)
