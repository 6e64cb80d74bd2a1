"""The several-node lab: ``hotline-lab up --nodes 2``.

On top of the single-node lab's chroot, carrier, prompts and AGI scripts:

* Redis with Sentinel (primary, replica, three sentinels; sentinelctl.py)
  instead of the host's single Redis: gateways, dialers, ASR workers and the
  classic AGI safety net find the primary through the sentinels;
* two Asterisk nodes (nodes.py): ast1 is the single-node lab's Asterisk,
  ast2 a second one with its own directories and loopback address;
* one gateway per node (FastAGI + HTTP + the AMI monitor of that node only,
  ``HOTLINE_MONITOR_NODE``), each node naming the other's gateway as its
  FastAGI backup; one ASR worker per node;
* Kamailio as the trunk's front door (kamailio.py), the carrier sending every
  call there and the dispatcher spreading them over the nodes it finds alive.

``nodes`` in the state directory records that the lab runs this way, so
``down`` and ``status`` know what to stop and show.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from .ami_blocking import AmiClient
from .asterisk import Asterisk
from .callflow import CallRequest, CallResult
from .errors import LabError
from .gatewayctl import AsrWorkerProcess, GatewayProcess
from .install import CARRIER_RUNTIME_DIRS, ConfigInstaller, install_agi_scripts
from .kamailio import KamailioProcess, front_door_defines
from .lab import SOUNDS, Lab
from .nodes import FRONT_DOOR, NODES, Node, render_carrier_for_nodes, render_node
from .prompts import LAB_TONES, collect_prompts
from .redisctl import RedisControl
from .sentinelctl import SentinelSet
from .trunkcalls import originate_citizen_via_trunk

__all__ = ["ClusterLab", "cluster_nodes"]

Report = Callable[[str], None]

#: seconds between the dispatcher's OPTIONS probes in the lab (production: 10)
PROBE_INTERVAL = 1
#: seconds a node that failed an INVITE (5xx, timeout) gets no new calls in the lab (production: 300)
HOLDDOWN = 10


def cluster_nodes(lab: Lab) -> int:
    """How many nodes the lab was brought up with (1 = the single-node lab)."""
    try:
        return int((lab.settings.state_dir / "nodes").read_text().strip() or 1)
    except (FileNotFoundError, ValueError):
        return 1


class ClusterLab:
    def __init__(self, lab: Lab, nodes: tuple[Node, ...] = NODES, gateway_env: dict[str, str] | None = None) -> None:
        self.lab = lab
        self.nodes = nodes
        #: added to every gateway's environment (the fault runs switch the dialers on)
        self.gateway_env = dict(gateway_env or {})
        s = lab.settings
        self.redis = SentinelSet(s.state_dir)
        self.pbx: dict[str, Asterisk] = {
            node.name: lab.asterisk if not node.suffix else Asterisk(
                lab.chroot, s.state_dir, name=node.name, config_file=node.config_file,
                run_dir=node.run_dir, log_dir=node.log_dir,
            )
            for node in nodes
        }
        self.gateways: dict[str, GatewayProcess] = {}
        self.asr: dict[str, AsrWorkerProcess] = {}
        for index, node in enumerate(nodes, start=1):
            suffix = "" if index == 1 else str(index)
            self.gateways[node.name] = GatewayProcess(
                python=s.python, repo_root=s.repo_root, state_dir=s.state_dir,
                healthz_url=f"http://127.0.0.1:{node.http_port}/healthz",
                environment=self.gateway_environment(node), name=f"gateway{suffix}",
            )
            self.asr[node.name] = AsrWorkerProcess(
                python=s.python, repo_root=s.repo_root, state_dir=s.state_dir,
                healthz_url=f"http://127.0.0.1:{s.asr_metrics_port + 10 * (index - 1)}/healthz",
                environment=self.asr_environment(index), model_path=s.asr_model_path, name=f"asr-worker{suffix}",
            )
        self.kamailio = KamailioProcess(
            s.repo_root / "kamailio" / "kamailio.cfg", s.state_dir,
            # lab: a node that failed an INVITE is back in rotation soon after it answers again
            defines=front_door_defines(FRONT_DOOR, [s.carrier_host], PROBE_INTERVAL, HOLDDOWN=str(HOLDDOWN)),
            destinations=[node.sip for node in nodes],
        )

    # -- environments ------------------------------------------------------------------
    def _redis_environment(self) -> dict[str, str]:
        return {
            "HOTLINE_REDIS_SENTINELS": self.redis.sentinels,
            "HOTLINE_REDIS_SENTINEL_MASTER": self.redis.master,
            # db (and password) for the primary; its host and port come from the sentinels
            "HOTLINE_REDIS_URL": f"redis://{self.redis.host}:{self.redis.data_ports[0]}/0",
        }

    def gateway_environment(self, node: Node) -> dict[str, str]:
        env = self.lab._gateway_environment()
        env.update(self._redis_environment())
        env.update({
            "HOTLINE_AGI_PORT": str(node.agi_port),
            "HOTLINE_HTTP_PORT": str(node.http_port),
            "HOTLINE_AMI_HOST": node.host,
            "HOTLINE_MONITOR_NODE": node.name,
            "HOTLINE_MONITOR_QUEUE_LOG": str(self.lab.chroot.path(f"{node.log_dir}/queue_log")),
        })
        env.update(self.gateway_env)
        return env

    def asr_environment(self, index: int) -> dict[str, str]:
        env = self.lab._asr_environment()
        env.update(self._redis_environment())
        env["HOTLINE_ASR_METRICS_PORT"] = str(self.lab.settings.asr_metrics_port + 10 * (index - 1))
        return env

    # -- up / down ---------------------------------------------------------------------
    def install(self) -> None:
        lab, s = self.lab, self.lab.settings
        values = lab.config_values(redis_url=self.redis.missed_call_url)
        for index, node in enumerate(self.nodes):
            backup = self.nodes[(index + 1) % len(self.nodes)] if len(self.nodes) > 1 else None
            ConfigInstaller(
                lab.chroot, s.conf_dir, etc=node.etc,
                render=lambda v, node=node, backup=backup: render_node(v, node, backup, s.conf_dir),
                runtime_dirs=(*node.runtime_dirs, "/var/spool/asterisk/hotline",
                              "/var/spool/asterisk/hotline/messages"),
                keep_debian_samples=not node.suffix,
            ).install(values, lab.report)
        ConfigInstaller(
            lab.chroot, s.carrier_conf_dir, etc=lab.carrier_installer.etc_inside,
            render=lambda v: render_carrier_for_nodes(v, s.carrier_conf_dir, self.nodes),
            runtime_dirs=CARRIER_RUNTIME_DIRS, secrets_dir="carrier-secrets", keep_debian_samples=False,
        ).install(values, lab.report)
        install_agi_scripts(lab.chroot, s.repo_root / "agi_scripts", lab.report)
        prompts = collect_prompts(s.flows_dir, s.conf_dir / "prompts.yaml")
        lab.sounds.install_prompts(prompts, lab.chroot.path(f"{SOUNDS}/zh"), lab.report)
        lab.sounds.install_tones(LAB_TONES, lab.chroot.path, lab.report)

    def up(self, gateway: bool = True, asr: bool = True, fresh_data: bool = False) -> None:
        """Build or reuse everything and start what is not running; ``fresh_data``: Redis starts empty."""
        lab = self.lab
        lab._require_root()
        with lab._lock():
            lab.chroot.ensure_built(lab.report)
            for pbx in (lab.carrier, *self.pbx.values()):
                pbx.cleanup_stale(lab.report)
            lab.chroot.mount(lab.report)
            lab.chroot.ensure_packages(lab.report)
            (lab.settings.state_dir / "nodes").write_text(f"{len(self.nodes)}\n")
            self.redis.start(lab.report, fresh=fresh_data)
            self.install()
            for pbx in (lab.carrier, *self.pbx.values()):
                if pbx.pid() is not None and pbx.responsive():
                    pbx.reload(lab.report)
                else:
                    pbx.start(lab.report)
            self.forget_registrations()
            self.kamailio.start(lab.report)
            state = self.kamailio.wait_active([node.sip for node in self.nodes], timeout=30)
            lab.report(f"kamailio: dispatcher {state}")
            if gateway:
                for process in self.gateways.values():
                    process.start(lab.report)
            if asr and lab.asr.available():
                for index, process in enumerate(self.asr.values(), start=1):
                    process.start(lab.report, ("--consumer", f"lab-asr-{index}"), timeout=120.0)

    def forget_registrations(self) -> None:
        """The carrier keeps registered contacts in its AstDB across restarts: a contact the
        single-node lab's Asterisk registered would take calls straight to ast1, past the front
        door, until it expires. With several nodes nothing registers; drop what is left."""
        self.lab.carrier_cli("database deltree registrar/contact")
        contacts = self.lab.carrier_cli("pjsip show contacts")
        if "127.0.0.1:5060" in contacts:
            raise LabError(f"the carrier still has a registered hotline contact:\n{contacts}")

    def down(self) -> None:
        lab = self.lab
        lab._require_root()
        with lab._lock():
            for process in (*self.asr.values(), *self.gateways.values()):
                process.stop(lab.report)
            self.kamailio.stop(lab.report)
            for pbx in (*self.pbx.values(), lab.carrier):
                pbx.stop(lab.report)
            lab.chroot.unmount(lab.report)
            self.redis.stop(lab.report)
            (lab.settings.state_dir / "nodes").unlink(missing_ok=True)

    def status(self) -> dict[str, Any]:
        primary = self.redis.primary()
        return {
            "nodes": {
                node.name: {
                    "pid": self.pbx[node.name].pid(),
                    "sip": f"{node.host}:5060",
                    "gateway": {"pid": self.gateways[node.name].pid(),
                                "healthy": self.gateways[node.name].healthy()},
                    "asr": {"pid": self.asr[node.name].pid(), "healthy": self.asr[node.name].healthy()},
                }
                for node in self.nodes
            },
            "kamailio": {"pid": self.kamailio.pid(), "sip": "%s:%d" % FRONT_DOOR,
                         "dispatcher": self.kamailio.dispatcher_state()},
            "redis": {"sentinels": self.redis.sentinels, "primary": f"{primary[0]}:{primary[1]}" if primary else None},
        }

    # -- calls -------------------------------------------------------------------------
    def node_ami(self, node: Node) -> AmiClient:
        """The lab tool's own AMI session (every event) on one node."""
        s = self.lab.settings
        return self.lab._open(node.host, s.ami_port, s.lab_ami_user, self.lab.lab_ami_secret())

    def records(self) -> RedisControl:
        """The call records and drafts, read from the primary the sentinels name now."""
        address = self.redis.primary()
        if address is None:
            raise LabError(f"no sentinel of {self.redis.sentinels} answered")
        return RedisControl(f"redis://{address[0]}:{address[1]}/0", self.lab.settings.state_dir)

    def call(self, request: CallRequest, on_step: Callable[[str], None] | None = None) -> CallResult:
        """A citizen calls 12345 through the carrier and the front door; the call is
        followed on whichever node Kamailio gave it to."""
        with contextlib.ExitStack() as stack:
            nodes = [stack.enter_context(self.node_ami(node)) for node in self.nodes]
            carrier = stack.enter_context(self.lab.carrier_ami())
            return originate_citizen_via_trunk(nodes, carrier, request, read_record=self.records().read_call,
                                               on_step=on_step)
