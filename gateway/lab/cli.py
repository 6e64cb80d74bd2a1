"""``hotline-lab``: bring the telephony lab up and down, place test calls.

hotline-lab up [--no-gateway] [--bench]
hotline-lab status [--json]
hotline-lab call [--via local|trunk] [--dtmf 1] [--speech 我要投诉噪音] [--hangup-after 20] [--json]
hotline-lab carrier-behaviour NUMBER|default "answer,wait:3,dtmf:1,talk:20,hangup" | --clear
hotline-lab outbound NUMBER [--json]
hotline-lab demo
hotline-lab down
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence

from ..masking import mask_number
from .callflow import CallRequest, CallResult
from .cluster import ClusterLab, cluster_nodes
from .errors import LabError
from .lab import Lab
from .nodes import NODES
from .settings import LabSettings
from .sipagents import parse_modes

__all__ = ["main"]

# SendDTMF also takes w (0.5 s pause) and W (1 s pause) between keys
_DTMF = re.compile(r"^[0-9*#A-Da-dwW]*$")
_NUMBER = re.compile(r"^\+?[0-9]{3,20}$")


def _say(message: str) -> None:
    try:
        print(message, flush=True)
    except BrokenPipeError:
        # the reader went away (`hotline-lab up | head`): finish the job quietly
        # rather than die half-way through bringing the lab up
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def _dtmf(text: str) -> str:
    if not _DTMF.match(text):
        raise argparse.ArgumentTypeError("DTMF digits are 0-9, *, #, A-D (w/W pause 0.5/1 s)")
    return "".join(ch if ch in "wW" else ch.upper() for ch in text)


def _number(text: str) -> str:
    if not _NUMBER.match(text):
        raise argparse.ArgumentTypeError("a caller number is 3 to 20 digits, optionally with a leading +")
    return text


def _add_call_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--caller", type=_number, default="13800138000", help="citizen's number (default %(default)s)")
    parser.add_argument("--dtmf", type=_dtmf, default="", help="digits the citizen keys after --dtmf-delay")
    parser.add_argument("--dtmf-delay", type=_positive, help="seconds after the answer before keying (default 2)")
    parser.add_argument("--speech", help="what the citizen says: Mandarin text (espeak-ng) or an audio file")
    parser.add_argument("--dtmf-after", type=_dtmf, default="", help="digits keyed after the speech (# ends a message)")
    parser.add_argument("--hangup-after", type=_positive, help="seconds the citizen stays on the line (default 20)")
    parser.add_argument("--agent-ring", type=_positive, help="seconds a lab agent rings before answering (default 1)")
    parser.add_argument("--agent-talk", type=_positive, help="seconds a lab agent talks (default 3)")
    parser.add_argument("--timeout", type=_positive, default=None, help="seconds to follow the call")
    parser.add_argument(
        "--via", choices=("local", "trunk"), default="local",
        help="local: Local/12345@from-lab; trunk: the lab carrier calls over the PJSIP trunk ([from-carrier])",
    )
    parser.add_argument("--json", action="store_true", help="print a machine-readable summary")


def _request(lab: Lab, args: argparse.Namespace) -> CallRequest:
    speech = lab.speech_sound(args.speech) if args.speech else ""
    hangup_after = args.hangup_after
    timeout = args.timeout or max(60.0, (hangup_after or 20.0) + 40.0)
    return CallRequest(
        caller=args.caller,
        dtmf=args.dtmf,
        dtmf_delay=args.dtmf_delay,
        speech=speech,
        dtmf_after=args.dtmf_after,
        hangup_after=hangup_after,
        agent_ring=args.agent_ring,
        agent_talk=args.agent_talk,
        timeout=timeout,
        via=args.via,
    )


def _voice_message_drafts(lab: Lab, result: CallResult) -> list[dict] | None:
    """The drafts of the call's voice message (None: no message, or no ASR worker to draft it)."""
    record = result.gateway_record or {}
    if "voice_message:stored" not in record.get("path", "") or lab.asr.pid() is None:
        return None
    return lab.wait_drafts(result.call_id, timeout=90.0)


def _describe_draft(draft: dict) -> str:
    category, topic = draft.get("category") or {}, draft.get("topic") or {}
    urgency, transcript = draft.get("urgency") or {}, draft.get("transcript") or {}
    return (f"draft {draft.get('draft_id')}: category {category.get('code') or '?'}, topic {topic.get('code') or '?'}, "
            f"urgency {urgency.get('level', '?')}, due {draft.get('due_at')}, needs_review {draft.get('needs_review')}"
            f"; transcript ({transcript.get('confidence', 0):.2f}): {transcript.get('text', '')!r}")


def _print_call(result: CallResult, as_json: bool, drafts: list[dict] | None = None) -> None:
    if as_json:
        data = result.as_json()
        if drafts is not None:
            data["drafts"] = drafts
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return
    print(f"call {result.call_id} from {result.caller_masked}")
    print(f"  {result.describe()}")
    record = result.gateway_record
    if record is None:
        print("  gateway record: none (gateway down, or Redis unreachable)")
    else:
        fields = ("flow", "outcome", "handoff", "caller_masked")
        print("  gateway record: " + ", ".join(f"{k}={record.get(k, '')}" for k in fields))
    if drafts is not None:
        if not drafts:
            print("  voice message: no draft yet (see the ASR worker's log)")
        for draft in drafts:
            print(f"  voice message -> {_describe_draft(draft)}")


def _cmd_up(lab: Lab, args: argparse.Namespace) -> int:
    if args.fresh:
        _cmd_down(lab, args)
    if args.nodes > 1:
        return _cmd_up_nodes(lab, args)
    if cluster_nodes(lab) > 1:
        raise LabError("the lab runs with several nodes: `hotline-lab down` first")
    modes = parse_modes(args.agent_modes or "")  # refuse a bad --agent-modes before anything starts
    lab.phones.remember(args.sip_agents)  # the installed queue members follow it
    lab.up(gateway=not args.no_gateway, bench=args.bench, asr=not args.no_asr)
    if args.sip_agents:
        lab.phones.start(modes)
        _say("agent phones: queue members PJSIP/agent1..3, " + ", ".join(
            f"{name} {phone['sip']} {phone['mode']} ({phone['status'] or 'not registered'})"
            for name, phone in lab.phones.status().items()))
    else:
        lab.phones.stop()
    s = lab.settings
    _say(
        f"lab up: AMI {s.ami_host}:{s.ami_port} gateway user {s.ami_user} "
        f"(secret: {'$HOTLINE_AMI_SECRET' if s.ami_secret_env else s.state_dir / 'ami.secret'}), "
        f"lab user {s.lab_ami_user} (secret: {s.state_dir / 'ami-lab.secret'}), "
        f"FastAGI {s.agi_url}, Redis {s.redis_url}; lab carrier SIP {s.carrier_host}:{s.carrier_sip_port}, "
        f"AMI {s.ami_host}:{s.carrier_ami_port} (lab user)"
    )
    return 0


def _cmd_up_nodes(lab: Lab, args: argparse.Namespace) -> int:
    if args.bench or getattr(args, "sip_agents", False):
        raise LabError("--bench and --sip-agents are for the single-node lab")
    if cluster_nodes(lab) == 1 and (lab.gateway.pid() is not None or lab.asterisk.pid() is not None):
        raise LabError("the single-node lab is up: `hotline-lab down` first (or `up --nodes 2 --fresh`)")
    cluster = ClusterLab(lab, NODES[: args.nodes])
    cluster.up(gateway=not args.no_gateway, asr=not args.no_asr)
    status = cluster.status()
    nodes = ", ".join(f"{name} SIP {node['sip']} (gateway pid {node['gateway']['pid'] or '-'})"
                      for name, node in status["nodes"].items())
    _say(f"lab up with {args.nodes} nodes: front door (Kamailio) SIP {status['kamailio']['sip']}, {nodes}; "
         f"Redis primary {status['redis']['primary']} via sentinels {status['redis']['sentinels']}")
    return 0


def _cmd_down(lab: Lab, args: argparse.Namespace) -> int:
    if cluster_nodes(lab) > 1:
        ClusterLab(lab).down()
    else:
        lab.down()
    _say("lab down")
    return 0


def _cmd_status(lab: Lab, args: argparse.Namespace) -> int:
    if cluster_nodes(lab) > 1:
        print(json.dumps(ClusterLab(lab).status(), ensure_ascii=False, indent=None if args.json else 2))
        return 0
    status = lab.status()
    if args.json:
        print(json.dumps(status, ensure_ascii=False, indent=2))
        return 0
    ch, ast, gw, rd = status["chroot"], status["asterisk"], status["gateway"], status["redis"]
    print(f"chroot   {ch['path']} built={ch['built']} mounted={ch['mounted']}")
    if ast["running"]:
        print(f"asterisk pid {ast['pid']}: {ast['version'].splitlines()[0]}")
        print(f"         {' / '.join(ast['channels'].splitlines())}")
    else:
        print("asterisk not running")
    print(f"gateway  pid {gw['pid'] or '-'}, {gw['url']} {'ok' if gw['healthy'] else 'not answering'}")
    asr = status["asr"]
    print(f"asr      pid {asr['pid'] or '-'}, {asr['url']} {'ok' if asr['healthy'] else 'not answering'}, "
          f"model {asr['model'] or '(none)'}")
    carrier, trunk = status["carrier"], status["trunk"]
    if carrier["running"]:
        print(f"carrier  pid {carrier['pid']}: lab carrier (second Asterisk) on {carrier['sip']}, "
              f"{carrier['channels'].splitlines()[0]}")
    else:
        print("carrier  not running")
    print(f"trunk    carrier: registration {trunk['registration'] or '?'}, qualify {trunk['contact'] or '?'}")
    owner = "started by the lab" if rd["started_by_lab"] else "external"
    print(f"redis    {rd['url']} {'PONG' if rd['ping'] else 'not answering'} ({owner})")
    if lab.phones.enabled():
        for name, phone in lab.phones.status().items():
            print(f"phone    {name} SIPp {phone['sip']} pid {phone['pid'] or '-'}, mode {phone['mode']}, "
                  f"contact {phone['status'] or 'not registered'}")
    return 0


def _cmd_call(lab: Lab, args: argparse.Namespace) -> int:
    if cluster_nodes(lab) > 1:
        if args.via != "trunk":
            raise LabError("with several nodes, citizens call over the trunk: --via trunk")
        result = ClusterLab(lab).call(_request(lab, args))
        _print_call(result, args.json)
        return 0 if result.went_through else 1
    result = lab.call(_request(lab, args))
    _print_call(result, args.json, _voice_message_drafts(lab, result))
    if lab.phones.enabled() and not args.json:
        phone = lab.phones.status().get(result.agent or "")
        print(f"  answered by the registered phone {result.agent} (PJSIP/{result.agent}, SIPp at {phone['sip']})"
              if phone and result.agent_answered else "  no registered agent phone answered")
    return 0 if result.went_through else 1


def _cmd_carrier_behaviour(lab: Lab, args: argparse.Namespace) -> int:
    if args.clear:
        lab.set_carrier_behaviour(args.number, None)
        _say(f"carrier: calls to {args.number} get the default behaviour")
    elif not args.behaviour:
        raise LabError("give a behaviour (e.g. answer,wait:3,dtmf:1,talk:20,hangup) or --clear")
    else:
        lab.set_carrier_behaviour(args.number, args.behaviour)
        _say(f"carrier: calls to {args.number}: {args.behaviour}")
    return 0


def _cmd_outbound(lab: Lab, args: argparse.Namespace) -> int:
    result = lab.outbound(args.number, listen=args.listen)
    if args.json:
        print(json.dumps(result.as_json(), ensure_ascii=False, indent=2))
    else:
        print(f"hotline -> trunk -> {result.number_masked}: " + " -> ".join(result.steps or ["(nothing happened)"]))
    return 0 if result.completed else 1


def _cmd_faults(lab: Lab, args: argparse.Namespace) -> int:
    """Bring the two-node lab up with the dialers on, run the fault scenarios, print the table."""
    from .faults import DIALER_ENV, SCENARIOS, format_table

    if args.single:
        from . import faults_single

        return faults_single.main((["--only", args.only] if args.only else []) + (["--json"] if args.json else [])
                                  + (["--write"] if args.write else []))
    names = args.only.split(",") if args.only else list(SCENARIOS)
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        raise LabError(f"unknown scenario(s) {unknown}; choose from {sorted(SCENARIOS)}")
    if cluster_nodes(lab) > 1:
        ClusterLab(lab).down()
    else:
        lab.down()
    cluster = ClusterLab(lab, gateway_env=DIALER_ENV)
    cluster.up(asr=False, fresh_data=True)
    rows = []
    try:
        for name in names:
            _say(f"fault scenario {name} ...")
            rows.append(SCENARIOS[name](cluster, _say))
    finally:
        if not args.keep:
            cluster.down()
    if args.json:
        print(json.dumps([row.as_json() for row in rows], ensure_ascii=False, indent=2))
    else:
        print(format_table(rows))
    return 0 if all(row.lost == 0 and row.doubled == 0 for row in rows) else 1


def _cmd_demo(lab: Lab, args: argparse.Namespace) -> int:
    if args.nodes > 1:
        args.bench = args.fresh = False
        _cmd_up_nodes(lab, args)
    else:
        lab.up(gateway=not args.no_gateway, asr=not args.no_asr)
    if args.via == "trunk" and args.nodes == 1:
        trunk = lab.wait_trunk()
        if not args.json:
            s = lab.settings
            _say(f"trunk: registered at the lab carrier {s.carrier_host}:{s.carrier_sip_port} "
                 f"(qualify {trunk['contact']}); the citizen's call comes in over it")
    if not args.json:
        _say(f"placing a call from {mask_number(args.caller)} to 12345 ...")
    return _cmd_call(lab, args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hotline-lab", description="12345 hotline telephony lab (real Asterisk 22)")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="build/reuse the chroot, install config and prompts, start everything")
    up.add_argument("--no-gateway", action="store_true", help="do not start the gateway (calls go to the queue)")
    up.add_argument("--bench", action="store_true", help="start the gateway with its 'bench' AGI script")
    up.add_argument("--no-asr", action="store_true", help="do not start the ASR worker (voice messages wait in Redis)")
    up.add_argument("--fresh", action="store_true", help="run `down` first (restart everything)")
    up.add_argument("--nodes", type=int, choices=(1, 2), default=1,
                    help="2: Kamailio front door, two Asterisk nodes, two gateways, Redis with Sentinel")
    up.add_argument("--sip-agents", action="store_true",
                    help="queue members PJSIP/agent1..3: SIPp phones registered with digest auth answer")
    up.add_argument("--agent-modes", metavar="agentN=MODE,...",
                    help="with --sip-agents: answer (default), late:N, reject486 or absent per phone")
    up.set_defaults(func=_cmd_up)

    sub.add_parser("down", help="stop the gateway and Asterisk, unmount /proc and /dev").set_defaults(func=_cmd_down)

    status = sub.add_parser("status", help="what runs")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=_cmd_status)

    call = sub.add_parser("call", help="place a simulated citizen call and print its path")
    _add_call_options(call)
    call.set_defaults(func=_cmd_call)

    behaviour = sub.add_parser(
        "carrier-behaviour", help="script how the lab carrier answers calls to a number (AstDB carrier/<number>)"
    )
    behaviour.add_argument("number", help="the dialled number, or 'default' for every unscripted number")
    behaviour.add_argument("behaviour", nargs="?", help="steps: ring:N answer wait:N dtmf:D talk:N hangup busy "
                           "congestion reject noanswer:N, comma-separated")
    behaviour.add_argument("--clear", action="store_true", help="forget the number's script")
    behaviour.set_defaults(func=_cmd_carrier_behaviour)

    outbound = sub.add_parser("outbound", help="the hotline calls a number out through the trunk")
    outbound.add_argument("number", type=_number)
    outbound.add_argument("--listen", type=_positive, default=15.0, help="seconds to listen for a digit")
    outbound.add_argument("--json", action="store_true")
    outbound.set_defaults(func=_cmd_outbound)

    faults = sub.add_parser("faults", help="two-node lab: kill parts mid-call and count what is lost or doubled")
    faults.add_argument("--only", help="comma-separated scenarios: node,gateway-flow,gateway-dial,redis,ami")
    faults.add_argument("--keep", action="store_true", help="leave the two-node lab up afterwards")
    faults.add_argument("--json", action="store_true")
    faults.add_argument("--single", action="store_true",
                        help="the single-node faults instead (python -m gateway.lab.faults_single; --only "
                             "asterisk,redis,gateway-lease,webhook,disk)")
    faults.add_argument("--write", action="store_true", help="with --single: also write bench/last-faults-single.txt")
    faults.set_defaults(func=_cmd_faults)

    demo = sub.add_parser("demo", help="up + one call (by default over the carrier trunk)")
    demo.add_argument("--no-gateway", action="store_true")
    demo.add_argument("--no-asr", action="store_true", help="do not start the ASR worker")
    demo.add_argument("--nodes", type=int, choices=(1, 2), default=1, help="as for up")
    _add_call_options(demo)
    demo.set_defaults(via="trunk")
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet = getattr(args, "json", False)
    try:
        lab = Lab(LabSettings.from_env(), report=(lambda _m: None) if quiet else _say)
        return args.func(lab, args)
    except LabError as exc:
        print(f"hotline-lab: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hotline-lab: interrupted", file=sys.stderr)
        return 130
