"""Typed, layered configuration: defaults < file (TOML) < ``HOTLINE_*`` environment.

Every setting is a field of a frozen dataclass with a type and a default. The
file is TOML (``HOTLINE_CONFIG`` or ``--config``), one table per section::

    [agi]
    port = 4573

Environment variables are ``HOTLINE_<SECTION>_<FIELD>`` (``HOTLINE_AGI_PORT``,
``HOTLINE_REDIS_URL``). Secrets are read only from the environment (or a file
named by ``HOTLINE_<NAME>_FILE``); a secret in the config file is an error.
"""
from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

__all__ = ["ConfigError", "GatewayConfig", "load_config"]

REPO_ROOT = Path(__file__).resolve().parent.parent
SECRET_FIELDS = {("ami", "secret"), ("asr", "webhook_token"), ("callbacks", "api_token"), ("surveys", "api_token"),
                 ("surveys", "webhook_token"), ("redis", "sentinel_password")}
#: the ``node`` label of the monitor's metrics when ``monitor.node`` is empty: the first Asterisk node's
#: name, so a single-PBX stack's series keep their labels when a second node (ast2) is added
DEFAULT_MONITOR_NODE = "ast1"
_NODE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,32}")


class ConfigError(ValueError):
    """A configuration value is missing, unknown or of the wrong type."""


@dataclass(frozen=True)
class AgiConfig:
    host: str = "127.0.0.1"
    port: int = 4573
    #: seconds Asterisk may take to answer one command before we drop the call's AGI
    command_timeout: float = 10.0
    #: seconds for the agi_* header block after connect
    header_timeout: float = 5.0
    max_line: int = 8192
    #: whole-session cap: a flow that runs longer is cut off (caller → queue)
    session_timeout: float = 900.0
    #: send each command straight to the socket instead of on the reactor's next
    #: turn (saves two epoll_ctl calls and a loop turn per command)
    direct_writes: bool = True


@dataclass(frozen=True)
class HttpConfig:
    host: str = "127.0.0.1"
    port: int = 9512


@dataclass(frozen=True)
class RedisConfig:
    url: str = "redis://127.0.0.1:6379/0"
    #: socket timeout in seconds; kept short so a dead Redis never holds a call
    timeout: float = 0.5
    #: call records expire after this many seconds (90 days)
    call_ttl: int = 90 * 24 * 3600
    key_prefix: str = "hotline"
    #: calls waiting to be written while Redis is away (kept in memory)
    backlog: int = 50000
    retry_interval: float = 5.0
    threads: int = 4
    #: Redis Sentinel: "host:port,host:port" ("" = none: connect to the URL's host). With sentinels
    #: every client asks them for the primary at each (re)connection; the URL then gives only the
    #: database and the primary's credentials, its host and port are ignored
    sentinels: str = ""
    #: the name the sentinels monitor the primary under
    sentinel_master: str = "hotline"
    #: the sentinels' own password: environment only (HOTLINE_REDIS_SENTINEL_PASSWORD[_FILE])
    sentinel_password: str = field(default="", repr=False)


@dataclass(frozen=True)
class AmiConfig:
    host: str = "127.0.0.1"
    port: int = 5038
    username: str = "hotline-gateway"
    secret: str = field(default="", repr=False)
    #: event classes asked for at login (the user's read= classes cap them);
    #: dialplan (Newexten/VarSet) is left out on purpose
    events: str = "call,agent,user,system"
    #: a Ping every this many seconds; no answer within keepalive_timeout → reconnect
    keepalive_interval: float = 15.0
    keepalive_timeout: float = 5.0
    #: seconds an action (QueueStatus …) may take before it fails
    action_timeout: float = 10.0
    #: seconds for the banner and the login after a connect
    login_timeout: float = 10.0
    #: reconnect backoff: first delay, cap (seconds), plus up to 1 s of jitter
    reconnect_initial: float = 0.5
    reconnect_max: float = 30.0


@dataclass(frozen=True)
class MonitorConfig:
    #: answered within this many seconds of the first queue entry counts for the service level
    service_level: float = 15.0
    #: an abandon after a shorter wait than this is a short abandon (秒挂)
    short_abandon: float = 5.0
    #: PJSIP endpoints that are carrier trunks, comma separated (registrations add theirs)
    trunks: str = "carrier"
    #: channel capacity per trunk: "carrier=30,backup=10"
    trunk_capacity: str = ""
    #: Asterisk's queue_log, replayed after an AMI reconnect ("" = no replay)
    queue_log: str = "/var/log/asterisk/queue_log"
    #: seconds replayed before the last event seen (queue_log has whole seconds)
    queue_log_margin: float = 2.0
    #: QueueStatus and CoreShowChannels every this many seconds to correct what lost events left (0: never)
    refresh_interval: float = 60.0
    #: the restart checkpoint (what was counted, open calls) is written to Redis this often, and at stop
    #: (0: only at stop); a restarted gateway replays queue_log from it
    checkpoint_interval: float = 10.0
    #: finished calls remembered so a replay or resync never counts them twice
    retention: int = 100_000
    #: the Asterisk node this gateway's AMI session watches: the ``node`` label of every queue, trunk and
    #: AMI metric, and the name of its restart checkpoint; set per gateway (ast1, ast2 …), one gateway per
    #: node ("" = DEFAULT_MONITOR_NODE)
    node: str = ""

    def node_label(self) -> str:
        return self.node or DEFAULT_MONITOR_NODE

    def trunk_names(self) -> tuple[str, ...]:
        return tuple(name.strip() for name in self.trunks.split(",") if name.strip())

    def capacities(self) -> dict[str, int]:
        """``trunk_capacity`` as a mapping (validated by ``load_config``)."""
        result = {}
        for item in self.trunk_capacity.split(","):
            if not item.strip():
                continue
            name, sep, value = item.partition("=")
            if not sep or not name.strip() or not value.strip().isdigit():
                raise ConfigError(f"monitor.trunk_capacity: {item.strip()!r} is not trunk=channels")
            result[name.strip()] = int(value)
        return result


@dataclass(frozen=True)
class FlowsConfig:
    #: every flow here is an AGI script of its name (the dialplan calls agi://…/main)
    directory: str = str(REPO_ROOT / "ivr_flows")
    #: prompts live under sounds/<language>/<prompt_dir>/
    prompt_dir: str = "hotline"
    default_queue: str = "12345"
    #: local time for time windows and working days
    timezone: str = "Asia/Shanghai"
    #: the default path (look-up, greeting, queue) in two AGI round trips (gateway/flows/fastpath.py);
    #: a flow opts out with settings.fast_path: false
    fast_path: bool = True
    #: where the gateway sees Asterisk's file tree ("/" on the same host, the chroot in the lab): a voice
    #: message RECORD FILE reports as saved is then checked for audio (gateway/flows/recordings.py);
    #: "" = not visible, not checked
    recordings_root: str = ""


@dataclass(frozen=True)
class DialerConfig:
    """The outbound dialer core (callbacks now, surveys next)."""

    #: off until the operator switches it on (it needs AMI and Redis)
    enabled: bool = False
    #: PJSIP trunk the outbound calls use (capacity shared with inbound)
    trunk: str = "carrier"
    #: the trunk's channels; ``reserve`` of them are never used by outbound calls
    trunk_channels: int = 30
    inbound_reserve: int = 10
    max_outbound: int = 5
    #: new outbound calls per second on the trunk (all gateway instances together)
    calls_per_second: float = 1.0
    #: a call bound for the agent queue (callbacks) starts only while available agents − callers
    #: already waiting − such calls not yet in the queue ≥ this margin: outbound never takes an
    #: agent a waiting citizen needs
    agent_margin: int = 1
    #: number kinds that may be dialled: mobile, landline (the only kinds the dialplan's
    #: [hotline-callback-out] dials; tollfree, shared, premium, international, other are refused at load)
    allowed_kinds: str = "mobile,landline"
    #: area code completing a local landline number written without it ("020")
    local_area_code: str = ""
    #: daily call window in local time (flows.timezone)
    window_start: str = "08:00"
    window_end: str = "21:00"
    #: allow | statutory (no calls on statutory holidays) | workdays
    holidays: str = "statutory"
    #: extra closed days, "2026-12-24,2026-12-31"
    closed_days: str = ""
    #: attempts per number per 24 h (all jobs together)
    per_number_cap: int = 3
    max_attempts: int = 3
    #: seconds before a retry, per outcome (doubled per further attempt)
    backoff: str = "no_answer=600,busy=300,congestion=120,failed=300,unconfirmed=1800"
    ring_timeout: float = 30.0
    #: lease of a job while an instance works on it (renewed during the call)
    lease: float = 60.0
    poll_interval: float = 1.0
    batch: int = 20


@dataclass(frozen=True)
class CallbacksConfig:
    """Abandoned-call callbacks (漏话回拨); needs ``dialer.enabled``."""

    enabled: bool = True
    #: citizen-first (the citizen answers, presses 1, joins the queue) or agent-first
    mode: str = "citizen-first"
    queue: str = "12345"
    #: caller id the citizen sees ("" = the trunk's default)
    caller_id: str = ""
    #: queue priority of a citizen who pressed 1 (0..100)
    priority: int = 20
    #: abandons after a shorter wait are not called back (0 = all are)
    min_wait: float = 0.0
    #: a repeat from the same number within this many seconds merges into the open callback
    merge_window: float = 14400.0
    #: a callback not connected this long after the original call expires
    expiry: float = 86400.0
    #: seconds of talk after pressing 1 for a callback to count as connected
    min_talk: float = 10.0
    #: how often the safety-net and IVR-request streams are read
    poll_interval: float = 2.0
    #: the safety net's spool (missed calls written while Redis was away; "" = none)
    missed_spool: str = "/var/spool/asterisk/hotline/missed.jsonl"
    #: bearer token of the HTTP API (/callbacks): environment only (HOTLINE_CALLBACKS_API_TOKEN[_FILE])
    api_token: str = field(default="", repr=False)


@dataclass(frozen=True)
class LogConfig:
    level: str = "info"
    #: "text" or "json"
    format: str = "text"


@dataclass(frozen=True)
class AsrConfig:
    """Voice-message transcription workers (``hotline-asr worker``)."""

    #: directory of an unpacked Vosk model ("" → the worker refuses to start)
    model_path: str = ""
    #: where ``hotline-asr model fetch`` unpacks models
    models_dir: str = str(REPO_ROOT / ".cache" / "vosk-models")
    #: prefix prepended to the recording paths in jobs (they are paths inside Asterisk's filesystem)
    recordings_root: str = ""
    jobs_stream: str = "hotline:jobs:transcribe"
    group: str = "asr"
    dead_letter_stream: str = "hotline:jobs:transcribe:dead"
    #: the drafts stream is also the outbox of the webhook and JSON-lines sinks (one consumer group each)
    drafts_stream: str = "hotline:drafts"
    draft_key_prefix: str = "hotline:draft:"
    #: draft records expire after this many seconds (0: never)
    draft_ttl: int = 90 * 24 * 3600
    #: deliveries of one job before it goes to the dead-letter stream
    max_attempts: int = 3
    #: a job pending this long (its worker died or failed) is reclaimed by another worker
    reclaim_idle_seconds: float = 60.0
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9514
    #: work-order platform endpoint for drafts ("" = no webhook sink)
    webhook_url: str = ""
    webhook_token: str = field(default="", repr=False)
    webhook_timeout: float = 10.0
    #: tries of one delivery (with backoff) before it is left for redelivery
    webhook_retries: int = 5
    #: a sink delivery left pending this long is redelivered
    sink_redeliver_seconds: float = 300.0
    #: drafts appended as JSON lines to this file ("" = no file sink)
    jsonl_path: str = ""
    low_confidence: float = 0.6
    taxonomy_path: str = ""
    gazetteer_path: str = ""
    #: seconds a stopping worker lets the current job finish before releasing it
    shutdown_grace: float = 20.0


@dataclass(frozen=True)
class SurveysConfig:
    """Satisfaction-survey calls (全量回访); needs the dialer (and so AMI)."""

    enabled: bool = False
    #: the caller ID citizens see on survey calls
    caller_id: str = ""
    #: seconds after closure before an order is surveyed
    delay: float = 7200.0
    #: orders of the number due within this many seconds of its call join that call
    combine_ahead: float = 21600.0
    max_orders_per_call: int = 3
    #: seconds between two survey calls to one number
    spacing: float = 86400.0
    #: a survey call not connected this long after it was planned is given up
    expiry: float = 259200.0
    #: orders closed longer ago are not surveyed
    max_age: float = 1296000.0
    #: the survey's own call window (inside the dialer's) and holiday policy (allow|statutory|workdays)
    window_start: str = "09:00"
    window_end: str = "20:00"
    holidays: str = "statutory"
    closed_days: str = ""
    max_attempts: int = 3
    #: OUTCOME=SECONDS over the dialer's defaults, doubled per further attempt
    backoff: str = "no_answer=3600,busy=1800,unconfirmed=7200"
    #: how often due numbers become calls (and the closed-orders stream is read)
    interval: float = 5.0
    closed_stream: str = "hotline:workorders:closed"
    reopen_stream: str = "hotline:workorders:reopen"
    #: bearer token of POST /surveys/closed: environment only (HOTLINE_SURVEYS_API_TOKEN[_FILE])
    api_token: str = field(default="", repr=False)
    #: the platform's results endpoint ("" = results stay in Redis and the outbox)
    webhook_url: str = ""
    webhook_token: str = field(default="", repr=False)
    webhook_timeout: float = 10.0
    webhook_max_tries: int = 10
    webhook_backoff: float = 5.0
    webhook_max_backoff: float = 600.0
    #: spoken answers: a Vosk model directory ("" = keys only) and the flow's grammar language
    speech_model_path: str = ""
    speech_language: str = "zh"
    speech_threads: int = 2
    speech_timeout: float = 5.0
    #: prefix to read Asterisk's recordings from the gateway's host (e.g. the lab chroot)
    recordings_root: str = ""
    #: survey results kept this many seconds
    result_ttl: int = 400 * 24 * 3600


@dataclass(frozen=True)
class GatewayConfig:
    agi: AgiConfig = field(default_factory=AgiConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    ami: AmiConfig = field(default_factory=AmiConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    flows: FlowsConfig = field(default_factory=FlowsConfig)
    log: LogConfig = field(default_factory=LogConfig)
    asr: AsrConfig = field(default_factory=AsrConfig)
    dialer: DialerConfig = field(default_factory=DialerConfig)
    callbacks: CallbacksConfig = field(default_factory=CallbacksConfig)
    surveys: SurveysConfig = field(default_factory=SurveysConfig)


def _coerce(value: Any, target: type, where: str) -> Any:
    if target is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if target in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            return target(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected {target.__name__}, got {value!r}") from None
    if target is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{where}: expected text, got {type(value).__name__}")
        return str(value)
    raise ConfigError(f"{where}: unsupported type {target}")


def _section_types(section_cls: type) -> dict[str, type]:
    return get_type_hints(section_cls)


def load_config(path: str | os.PathLike | None = None, environ: Mapping[str, str] | None = None) -> GatewayConfig:
    """Build the configuration from defaults, an optional TOML file and the environment."""
    env = dict(os.environ if environ is None else environ)
    path = path or env.get("HOTLINE_CONFIG") or None
    layers: dict[str, dict[str, Any]] = {}
    if path:
        try:
            with open(path, "rb") as handle:
                data = tomllib.load(handle)
        except FileNotFoundError:
            raise ConfigError(f"configuration file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"configuration file {path}: {exc}") from None
        for section, values in data.items():
            if not isinstance(values, dict):
                raise ConfigError(f"{path}: [{section}] must be a table")
            for key in values:
                if (section, key) in SECRET_FIELDS:
                    raise ConfigError(
                        f"{path}: {section}.{key} is a secret; set HOTLINE_{section.upper()}_{key.upper()} "
                        "in the environment instead"
                    )
            layers[section] = dict(values)

    top_types = get_type_hints(GatewayConfig)
    sections: dict[str, Any] = {}
    for section, section_cls in top_types.items():
        types = _section_types(section_cls)
        values: dict[str, Any] = {}
        file_values = layers.pop(section, {})
        for key, raw in file_values.items():
            if key not in types:
                raise ConfigError(f"{path}: unknown setting {section}.{key}")
            values[key] = _coerce(raw, types[key], f"{section}.{key}")
        for key, typ in types.items():
            env_name = f"HOTLINE_{section.upper()}_{key.upper()}"
            if env_name in env:
                values[key] = _coerce(env[env_name], typ, env_name)
            elif (section, key) in SECRET_FIELDS and f"{env_name}_FILE" in env:
                secret_path = env[f"{env_name}_FILE"]
                try:
                    values[key] = Path(secret_path).read_text().strip()
                except OSError as exc:
                    raise ConfigError(f"{env_name}_FILE: cannot read {secret_path}: {exc.strerror}") from None
        sections[section] = section_cls(**values)
    if layers:
        raise ConfigError(f"{path}: unknown section(s) {', '.join(sorted(layers))}")
    config = GatewayConfig(**sections)
    _validate(config)
    return config


def _validate(config: GatewayConfig) -> None:
    for name, port in (("agi.port", config.agi.port), ("http.port", config.http.port), ("ami.port", config.ami.port)):
        if not 0 <= port <= 65535:
            raise ConfigError(f"{name}: {port} is not a TCP port")
    for name, value in (
        ("agi.command_timeout", config.agi.command_timeout),
        ("agi.header_timeout", config.agi.header_timeout),
        ("redis.timeout", config.redis.timeout),
    ):
        if value <= 0:
            raise ConfigError(f"{name} must be positive")
    for name, value in (
        ("ami.keepalive_interval", config.ami.keepalive_interval),
        ("ami.keepalive_timeout", config.ami.keepalive_timeout),
        ("ami.action_timeout", config.ami.action_timeout),
        ("ami.login_timeout", config.ami.login_timeout),
        ("ami.reconnect_initial", config.ami.reconnect_initial),
        ("monitor.service_level", config.monitor.service_level),
    ):
        if value <= 0:
            raise ConfigError(f"{name} must be positive")
    if config.ami.keepalive_timeout >= config.ami.keepalive_interval:
        raise ConfigError("ami.keepalive_timeout must be shorter than ami.keepalive_interval")
    if config.ami.reconnect_max < config.ami.reconnect_initial:
        raise ConfigError("ami.reconnect_max must not be below ami.reconnect_initial")
    if min(config.monitor.short_abandon, config.monitor.queue_log_margin, config.monitor.refresh_interval,
           config.monitor.checkpoint_interval) < 0:
        raise ConfigError(
            "monitor.short_abandon/queue_log_margin/refresh_interval/checkpoint_interval must not be negative"
        )
    if config.monitor.retention < 1:
        raise ConfigError("monitor.retention must be positive")
    if config.monitor.node and not _NODE_NAME.fullmatch(config.monitor.node):
        raise ConfigError(f"monitor.node: {config.monitor.node!r} is not 1-32 of A-Z a-z 0-9 _ . -")
    config.monitor.capacities()
    _validate_dialer(config)
    if config.log.format not in ("text", "json"):
        raise ConfigError("log.format must be text or json")
    _validate_redis_url(config.redis.url)
    _validate_sentinels(config.redis)
    _validate_asr(config.asr)
    _validate_surveys(config)


def _validate_redis_url(url: str) -> None:
    """The URL as the call-record client will read it, so a bad one stops the start here (password hidden)."""
    from .storage.redis_url import parse_redis_url

    try:
        parse_redis_url(url)
    except ValueError as exc:
        raise ConfigError(f"redis.url: {exc}") from None


def _validate_sentinels(redis: RedisConfig) -> None:
    """Each sentinel host:port, the master name; with sentinels the URL must name a TCP scheme."""
    from .storage.redis_url import parse_redis_url, parse_sentinels

    try:
        sentinels = parse_sentinels(redis.sentinels, redis.sentinel_master)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if sentinels is not None and parse_redis_url(redis.url).scheme == "unix":
        raise ConfigError("redis.url: with redis.sentinels it must be redis:// or rediss:// (its db and password "
                          "are used; host and port come from the sentinels)")


def _validate_surveys(config: GatewayConfig) -> None:
    from .dialer.retry import RetryPolicy
    from .dialer.windows import CallWindows
    from .surveys.rules import SurveyRules

    s = config.surveys
    try:
        SurveyRules(s.delay, s.combine_ahead, s.max_orders_per_call, s.spacing, s.expiry, s.max_age)
        CallWindows(s.window_start, s.window_end, config.flows.timezone, s.holidays, CallWindows.parse_days(s.closed_days))
        RetryPolicy.from_text(s.backoff, s.max_attempts)
    except ValueError as exc:
        raise ConfigError(f"surveys: {exc}") from None
    if s.max_attempts < 1 or s.interval <= 0 or s.speech_threads < 1 or s.speech_timeout <= 0:
        raise ConfigError("surveys: max_attempts, speech_threads ≥ 1; interval, speech_timeout > 0")
    if s.webhook_max_tries < 1 or min(s.webhook_timeout, s.webhook_backoff, s.webhook_max_backoff) <= 0:
        raise ConfigError("surveys: webhook_max_tries ≥ 1; webhook_timeout, webhook_backoff, webhook_max_backoff > 0")
    if s.webhook_url and not s.webhook_url.startswith(("http://", "https://")):
        raise ConfigError(f"surveys.webhook_url: {s.webhook_url!r} is not an http(s) URL")


def _validate_asr(asr: AsrConfig) -> None:
    if not 0 <= asr.metrics_port <= 65535:
        raise ConfigError(f"asr.metrics_port: {asr.metrics_port} is not a TCP port")
    if asr.max_attempts < 1:
        raise ConfigError("asr.max_attempts must be at least 1")
    if asr.webhook_retries < 1:
        raise ConfigError("asr.webhook_retries must be at least 1")
    for name in ("reclaim_idle_seconds", "webhook_timeout", "sink_redeliver_seconds"):
        if getattr(asr, name) <= 0:
            raise ConfigError(f"asr.{name} must be positive")
    if asr.draft_ttl < 0 or asr.shutdown_grace < 0:
        raise ConfigError("asr.draft_ttl/shutdown_grace must not be negative")
    if not 0 <= asr.low_confidence <= 1:
        raise ConfigError("asr.low_confidence must be between 0 and 1")
    if asr.webhook_url and not asr.webhook_url.startswith(("http://", "https://")):
        raise ConfigError(f"asr.webhook_url: {asr.webhook_url!r} is not an http(s) URL")


def _validate_dialer(config: GatewayConfig) -> None:
    from .dialer.policy import NumberPolicy, undialable_kinds
    from .dialer.retry import RetryPolicy
    from .dialer.windows import CallWindows

    d, c = config.dialer, config.callbacks
    try:
        NumberPolicy.from_text(d.allowed_kinds, d.local_area_code)
        CallWindows(d.window_start, d.window_end, config.flows.timezone, d.holidays, CallWindows.parse_days(d.closed_days))
        RetryPolicy.from_text(d.backoff, d.max_attempts)
    except ValueError as exc:
        raise ConfigError(f"dialer: {exc}") from None
    undialable = undialable_kinds(d.allowed_kinds)
    if undialable:
        raise ConfigError(
            f"dialer.allowed_kinds: {', '.join(undialable)} cannot be dialled — asterisk_conf/extensions.conf "
            "[hotline-callback-out] only dials Chinese mobile (1XXXXXXXXXX) and landline (0 + area code) numbers "
            "and refuses every other call; allow only mobile and landline"
        )
    if min(d.trunk_channels, d.max_attempts, d.batch) < 1 or d.inbound_reserve < 0 or d.max_outbound < 0:
        raise ConfigError("dialer: trunk_channels, max_attempts, batch ≥ 1; inbound_reserve, max_outbound ≥ 0")
    if d.agent_margin < 1:
        raise ConfigError("dialer.agent_margin must be ≥ 1 (callbacks must not take agents inbound callers wait for)")
    if d.inbound_reserve >= d.trunk_channels:
        raise ConfigError("dialer.inbound_reserve must leave channels for outbound calls (or set max_outbound = 0)")
    if min(d.calls_per_second, d.ring_timeout, d.lease, d.poll_interval) <= 0:
        raise ConfigError("dialer: calls_per_second, ring_timeout, lease, poll_interval must be positive")
    if c.mode not in ("citizen-first", "agent-first"):
        raise ConfigError("callbacks.mode must be citizen-first or agent-first")
    if not 0 <= c.priority <= 100:
        raise ConfigError("callbacks.priority must be 0..100")
    if min(c.min_wait, c.merge_window, c.min_talk) < 0 or c.expiry <= 0 or c.poll_interval <= 0:
        raise ConfigError("callbacks: min_wait, merge_window, min_talk ≥ 0; expiry, poll_interval > 0")


def as_dict(config: GatewayConfig) -> dict[str, Any]:
    """The configuration with secrets blanked, for ``hotline-gateway config``."""
    data = dataclasses.asdict(config)
    for section, key in SECRET_FIELDS:
        if data[section][key]:
            data[section][key] = "***"
    return data
