"""SIPp citizens over the carrier trunk: build the command line, run it, read the result.

The scenarios in ``sipp/`` are UACs that call 12345 the way the carrier's SBC
does: bound to the carrier's address (127.0.0.2, matched by the hotline's
``identify``, so the call lands in ``[from-carrier]``), G.711 A-law audio from
a capture, keys as RFC 4733 events or SIP INFO. The target is a parameter: the
hotline's Asterisk (127.0.0.1:5060) or the Kamailio front door of the
multi-node lab (127.0.0.10:5060); in-dialog requests follow Record-Route.

Blocking by design, like the rest of the lab tool::

    run = SippRun(scenario_path("citizen_key"), target="127.0.0.1:5060",
                  keys=scenario_keys("citizen_key", digit="9"), calls=10, rate=2)
    result = run_sipp(run, workdir)
    result.ok, result.successful, result.response_time_ms

What SIPp 3.6 reports and how it is read:

* exit code (``sipp -h``; 0, 1 and 255 seen here) 0 = every call successful,
  1 = at least one failed -- and also when the scenario does not load, then
  without a statistics file --, 97 = stopped by an internal command, 99 =
  ended without processing calls, 255/254 (-1/-2) = fatal error / could not
  bind a socket (e.g. -i not a local address).
* ``-timeout`` stops SIPp from starting calls, but it waits for the calls
  already running to end (checked: a UAC at ``-timeout 2`` with an 8 s call
  ended after 8 s, the call successful). A run cut short creates fewer calls
  than ``-m``: :attr:`SippResult.ok` compares the two. Every scenario here
  ends by itself (bounded pauses, SIP retransmission timers); the runner's
  own bound is ``timeout_s`` + the scenario's waits + two SIP transaction
  timeouts, after which the process is stopped.
* ``-trace_stat`` writes a ``;``-separated CSV: a header line, then one row per
  ``-fd`` period and a last row at exit; the ``(C)`` columns are cumulative.
  Durations read ``HH:MM:SS:micro`` (``ElapsedTime`` reads ``HH:MM:SS``).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType

from .errors import LabError
from .settings import REPO_ROOT

__all__ = [
    "EXIT_CODES",
    "SCENARIOS",
    "Scenario",
    "SippFiles",
    "SippResult",
    "SippRun",
    "build_command",
    "dtmf_pcap",
    "hard_bound_s",
    "parse_stats",
    "run_sipp",
    "scenario_keys",
    "scenario_path",
]

SCENARIO_DIR = REPO_ROOT / "sipp"
#: where Debian's sip-tester puts its RTP captures
SIPP_SHARE = Path("/usr/share/sip-tester")
#: G.711 A-law (payload type 8, 30 ms packets, 7 s): the only voice capture shipped
AUDIO_PCAP = SIPP_SHARE / "g711a.pcap"

#: the hotline's Asterisk, and the multi-node lab's Kamailio front door
HOTLINE_TARGET = "127.0.0.1:5060"
FRONT_DOOR_TARGET = "127.0.0.10:5060"
#: the lab's carrier identity: the hotline's ``identify`` matches this source address
CARRIER_ADDRESS = "127.0.0.2"

EXIT_CODES = MappingProxyType(
    {
        0: "all calls successful",
        1: "at least one call failed (or the scenario did not load)",
        97: "stopped by an internal command; calls may have been processed",
        99: "ended without processing calls",
        255: "fatal error",
        254: "fatal error binding a socket",
    }
)

_DIGITS = {str(d): str(d) for d in range(10)} | {"*": "star", "#": "pound"}
_INT_KEY = re.compile(r"_ms$")


@dataclass(frozen=True)
class Scenario:
    """A scenario file of ``sipp/``: the keys it needs (with defaults) and what it should do."""

    name: str
    keys: Mapping[str, str]
    expected: str


def _scenario(name: str, expected: str, **keys: str) -> Scenario:
    return Scenario(name, MappingProxyType({"caller": "13800138000", **keys}), expected)


_VOICE = {"audio_pcap": str(AUDIO_PCAP)}

#: default key values, timed on ivr_flows/main.yaml as the lab speaks it (espeak-ng, 175 wpm):
#: the greeting lasts ~8.7 s and says "press 9" from ~3.5 s to ~5.9 s; at a peak the
#: callback offer (~10.9 s, "press 1" within its first ~7 s, then 4 s to answer) follows it
#: and silence there costs ~30 s more (no_input, retry) before the queue
SCENARIOS: Mapping[str, Scenario] = MappingProxyType(
    {
        s.name: s
        for s in (
            _scenario(
                "citizen_queue",
                "answered; greeting, queue/agent, our BYE (or the hotline's BYE first)",
                greeting_ms="9000",
                talk_ms="20000",
                **_VOICE,
            ),
            _scenario(
                "citizen_key",
                "answered; one digit as RFC 4733 events after dtmf_delay_ms, our BYE after talk_ms",
                dtmf_delay_ms="6500",
                dtmf_pcap=str(SIPP_SHARE / "dtmf_2833_9.pcap"),
                talk_ms="20000",
                **_VOICE,
            ),
            _scenario(
                "citizen_abandon",
                "answered; our BYE while queued, before an agent (far-end hang-ups should be 0)",
                abandon_ms="15000",
                **_VOICE,
            ),
            _scenario(
                "citizen_silent",
                "answered; no key at all, the flow's timeouts queue the call; our BYE after stay_ms",
                stay_ms="60000",
                **_VOICE,
            ),
            _scenario(
                "citizen_info_dtmf",
                "answered; one digit as SIP INFO (application/dtmf-relay) answered 200, our BYE",
                dtmf_delay_ms="6500",
                digit="9",
                dtmf_duration_ms="250",
                talk_ms="20000",
                **_VOICE,
            ),
            _scenario("citizen_bad_sdp", "refused with 400/488 (415/606), ACKed: counted successful"),
            _scenario("citizen_bad_codec", "G.729 only: refused with 488 (400/415/606), ACKed: counted successful"),
        )
    }
)


def scenario_path(name: str, directory: Path = SCENARIO_DIR) -> Path:
    if name not in SCENARIOS:
        raise LabError(f"unknown SIPp scenario {name!r}; known: {', '.join(SCENARIOS)}")
    return directory / f"{name}.xml"


def dtmf_pcap(digit: str, share: Path = SIPP_SHARE) -> Path:
    """The RFC 4733 capture SIPp ships for one key: ``dtmf_2833_<0-9|star|pound>.pcap``."""
    if digit not in _DIGITS:
        raise LabError(f"no DTMF capture for {digit!r}: keys are 0-9, * and #")
    return share / f"dtmf_2833_{_DIGITS[digit]}.pcap"


def scenario_keys(name: str, digit: str | None = None, **overrides: object) -> dict[str, str]:
    """The ``-key`` values for scenario ``name``: its defaults, then ``overrides``.

    ``digit`` sets the key to press: the capture path for ``citizen_key``
    (SIPp 3.6 cannot build a pcap path from a key inside the scenario), the
    ``Signal=`` for ``citizen_info_dtmf``. SIPp refuses a scenario whose
    keys are missing, so unknown names are refused here, before it runs.
    """
    scenario_path(name)  # refuses an unknown name
    keys = dict(SCENARIOS[name].keys)
    if digit is not None:
        if "dtmf_pcap" in keys:
            keys["dtmf_pcap"] = str(dtmf_pcap(digit))
        elif "digit" in keys:
            dtmf_pcap(digit)  # the same keys are valid either way
            keys["digit"] = digit
        else:
            raise LabError(f"scenario {name} keys no digit")
    for key, value in overrides.items():
        if key not in keys:
            raise LabError(f"scenario {name} has no key {key!r}; its keys: {', '.join(keys)}")
        keys[key] = str(value)
    for key, value in keys.items():
        if _INT_KEY.search(key) and not value.isdigit():
            raise LabError(f"{key} must be a whole number of milliseconds, not {value!r}")
    return keys


@dataclass(frozen=True)
class SippRun:
    """One SIPp process: a scenario, where it calls from and to, how many calls how fast."""

    scenario: Path
    #: host:port of the hotline (HOTLINE_TARGET) or of the front door; "" for a UAS
    target: str
    keys: Mapping[str, str] = field(default_factory=dict)
    local_ip: str = CARRIER_ADDRESS
    #: SIP port; not 5070, the lab carrier's own
    local_port: int = 5080
    #: first RTP port; call n sends from media_port + 4 (n - 1): give each run its own range,
    #: above the Asterisk RTP range of the lab
    media_port: int = 40000
    calls: int = 1
    #: calls per rate_period_ms
    rate: float = 1.0
    rate_period_ms: int = 1000
    #: most simultaneous calls (SIPp's default: 3 × call length × rate)
    concurrency: int | None = None
    #: SIPp's -timeout: no call is started after it (running calls still end normally)
    timeout_s: int = 120
    #: the dialled number (Request-URI user)
    service: str = "12345"
    #: answer in-dialog UPDATE/INFO/OPTIONS/NOTIFY the scenario does not expect (connected line)
    auto_answer: bool = True
    extra_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class SippFiles:
    """Where a run's statistics and traces go (SIPp also writes its automatic files in cwd)."""

    stats: Path
    errors: Path
    screen: Path
    stderr: Path

    @classmethod
    def in_dir(cls, workdir: Path) -> SippFiles:
        return cls(workdir / "stats.csv", workdir / "errors.log", workdir / "screen.log", workdir / "sipp.stderr")


def build_command(run: SippRun, files: SippFiles, sipp: str = "sipp") -> list[str]:
    """The sipp argv for ``run``; no terminal needed (``-nostdin``, screen to a file)."""
    if run.calls < 1 or run.rate <= 0 or run.rate_period_ms < 1 or run.timeout_s < 1:
        raise LabError("calls, rate, rate period and timeout must be positive")
    cmd = [sipp]
    if run.target:
        cmd.append(run.target)
    cmd += [
        "-sf", str(run.scenario),
        "-s", run.service,
        "-i", run.local_ip,
        "-mi", run.local_ip,
        "-bind_local",
        "-p", str(run.local_port),
        "-mp", str(run.media_port),
        "-m", str(run.calls),
        "-r", f"{run.rate:g}",
        "-rp", str(run.rate_period_ms),
    ]  # fmt: skip
    if run.concurrency is not None:
        cmd += ["-l", str(run.concurrency)]
    cmd += [
        "-timeout", f"{run.timeout_s}s",
        "-nostdin",
        "-trace_stat", "-stf", str(files.stats),
        "-trace_err", "-error_file", str(files.errors),
        "-trace_screen", "-screen_file", str(files.screen),
    ]  # fmt: skip
    if run.auto_answer:
        cmd.append("-aa")
    for key, value in run.keys.items():
        cmd += ["-key", key, value]
    return cmd + list(run.extra_args)


@dataclass(frozen=True)
class SippResult:
    """The last cumulative row of a ``-trace_stat`` file (and, from :func:`run_sipp`, the exit code)."""

    calls_created: int
    successful: int
    failed: int
    #: calls per second over the whole run
    call_rate: float
    #: mean of response time 1: the post-dial delay, INVITE to the first 180/183/200
    #: (to the refusal in the bad-SDP/codec scenarios); None if the scenario measures none
    response_time_ms: float | None
    #: mean length of the finished calls
    call_length_ms: float | None
    elapsed_s: int
    retransmissions: int
    #: in-dialog requests answered by -aa (connected-line UPDATEs ...)
    auto_answered: int
    #: the non-zero ``Failed...(C)`` counters by name (FailedUnexpectedMessage, ...)
    failures: Mapping[str, int]
    #: GenericCounterN(C) by N (the scenarios: 1 far-end BYE, 2 refused as expected, 3 answered)
    counters: Mapping[int, int]
    exit_code: int | None = None
    #: -m of the run (set by run_sipp)
    calls_requested: int | None = None

    @property
    def incomplete(self) -> int:
        """Calls neither successful nor failed at the last row (still running, or SIPp was killed)."""
        return self.calls_created - self.successful - self.failed

    @property
    def far_end_hangups(self) -> int:
        return self.counters.get(1, 0)

    @property
    def refused(self) -> int:
        return self.counters.get(2, 0)

    @property
    def answered(self) -> int:
        return self.counters.get(3, 0)

    @property
    def ok(self) -> bool:
        """Every requested call was made and succeeded (for the bad-SDP/codec scenarios: was refused)."""
        made = self.calls_created == self.calls_requested if self.calls_requested else self.calls_created > 0
        return self.exit_code == 0 and made and self.failed == 0 and self.incomplete == 0

    def summary(self) -> dict[str, object]:
        out: dict[str, object] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["failures"] = dict(self.failures)
        out["counters"] = dict(self.counters)
        out.update(incomplete=self.incomplete, ok=self.ok, meaning=EXIT_CODES.get(self.exit_code, "?"))
        return out


_COUNTER = re.compile(r"^GenericCounter(\d+)\(C\)$")


def _duration_ms(text: str) -> float:
    hours, minutes, seconds, micro = (int(part) for part in text.split(":"))
    return ((hours * 60 + minutes) * 60 + seconds) * 1000 + micro / 1000


def _seconds(text: str) -> int:
    hours, minutes, seconds = (int(part) for part in text.split(":"))
    return (hours * 60 + minutes) * 60 + seconds


def parse_stats(text: str) -> SippResult:
    """Read a ``-trace_stat`` CSV (the whole file) into its last cumulative figures."""
    rows = [row for row in csv.reader(io.StringIO(text), delimiter=";") if any(cell.strip() for cell in row)]
    if len(rows) < 2:
        raise LabError("SIPp statistics file has no data row")
    header, last = rows[0], rows[-1]
    row = dict(zip(header, last, strict=False))
    try:
        return SippResult(
            calls_created=int(row["TotalCallCreated"]),
            successful=int(row["SuccessfulCall(C)"]),
            failed=int(row["FailedCall(C)"]),
            call_rate=float(row["CallRate(C)"]),
            response_time_ms=_duration_ms(row["ResponseTime1(C)"]) if "ResponseTime1(C)" in row else None,
            call_length_ms=_duration_ms(row["CallLength(C)"]) if "CallLength(C)" in row else None,
            elapsed_s=_seconds(row["ElapsedTime(C)"]),
            retransmissions=int(row["Retransmissions(C)"]),
            auto_answered=int(row.get("AutoAnswered(C)", "0")),
            failures=MappingProxyType(
                {
                    name[: -len("(C)")]: int(value)
                    for name, value in row.items()
                    if name.startswith("Failed") and name.endswith("(C)") and name != "FailedCall(C)" and value != "0"
                }
            ),
            counters=MappingProxyType(
                {int(m.group(1)): int(value) for name, value in row.items() if (m := _COUNTER.match(name))}
            ),
        )
    except (KeyError, ValueError) as exc:
        raise LabError(f"unreadable SIPp statistics row ({exc!r})") from None


def _tail(path: Path, limit: int = 2000) -> str:
    try:
        return path.read_text(errors="replace").strip()[-limit:]
    except FileNotFoundError:
        return ""


#: two SIP transaction timeouts (Timer B/F, 64 x T1): an INVITE and a BYE left unanswered
_SIP_TIMERS_S = 64


def hard_bound_s(run: SippRun, grace_s: float = 15.0) -> float:
    """How long a run may take at most: ``-timeout``, the scenario's waits (its ``*_ms`` keys), SIP timers."""
    waits_ms = sum(int(value) for key, value in run.keys.items() if _INT_KEY.search(key) and value.isdigit())
    return run.timeout_s + waits_ms / 1000 + _SIP_TIMERS_S + grace_s


def run_sipp(run: SippRun, workdir: Path, sipp: str = "sipp", grace_s: float = 15.0) -> SippResult:
    """Run SIPp to its end (stopped past :func:`hard_bound_s`) and read its statistics.

    Raises LabError when SIPp could not run the scenario at all (no statistics,
    fatal exit code, killed by the hard bound); a run whose calls failed is a
    result (``ok`` false), not an error.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    files = SippFiles.in_dir(workdir)
    for old in (files.stats, files.errors, files.screen):
        old.unlink(missing_ok=True)
    cmd = build_command(run, files, sipp)
    with files.stderr.open("w") as stderr:
        try:
            # stdout is SIPp's screen, redrawn every second: the last one goes to files.screen
            proc = subprocess.Popen(
                cmd, cwd=workdir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr
            )
        except FileNotFoundError:
            raise LabError(f"{sipp} not found: apt-get install sip-tester") from None
        try:
            code = proc.wait(timeout=hard_bound_s(run, grace_s))
        except subprocess.TimeoutExpired:
            _stop(proc)
            raise LabError(f"sipp ran past its bound of {hard_bound_s(run, grace_s):.0f} s and was stopped") from None
        except BaseException:
            _stop(proc)
            raise
    if code in (254, 255) or not files.stats.exists():
        detail = _tail(files.stderr) or _tail(files.errors)
        raise LabError(f"sipp failed ({code}: {EXIT_CODES.get(code, '?')}): {shlex.join(cmd)}\n{detail}")
    return replace(parse_stats(files.stats.read_text(errors="replace")), exit_code=code, calls_requested=run.calls)


def _stop(proc: subprocess.Popen) -> None:
    """SIGUSR1 (SIPp's soft stop: no new calls, finish the current ones), then SIGKILL."""
    try:
        proc.send_signal(signal.SIGUSR1)
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m gateway.lab.sipp SCENARIO [options]``: one SIPp run, the result as JSON."""
    parser = argparse.ArgumentParser(prog="python -m gateway.lab.sipp", description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=list(SCENARIOS))
    parser.add_argument("--target", default=HOTLINE_TARGET, help=f"host:port (front door: {FRONT_DOOR_TARGET})")
    parser.add_argument("--local-ip", default=CARRIER_ADDRESS)
    parser.add_argument("--local-port", type=int, default=5080)
    parser.add_argument("--media-port", type=int, default=40000)
    parser.add_argument("--calls", type=int, default=1)
    parser.add_argument("--rate", type=float, default=1.0)
    parser.add_argument("--rate-period-ms", type=int, default=1000)
    parser.add_argument("--concurrency", type=int)
    parser.add_argument("--timeout", type=int, default=120)
    parser.add_argument("--service", default="12345")
    parser.add_argument("--digit")
    parser.add_argument("--key", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--workdir", type=Path, default=Path("sipp-run"))
    parser.add_argument("--dry-run", action="store_true", help="print the command line only")
    args = parser.parse_args(argv)
    try:
        overrides = dict(item.split("=", 1) for item in args.key)
        run = SippRun(
            scenario_path(args.scenario), args.target, scenario_keys(args.scenario, args.digit, **overrides),
            local_ip=args.local_ip, local_port=args.local_port, media_port=args.media_port, calls=args.calls,
            rate=args.rate, rate_period_ms=args.rate_period_ms, concurrency=args.concurrency,
            timeout_s=args.timeout, service=args.service,
        )  # fmt: skip
        if args.dry_run:
            print(shlex.join(build_command(run, SippFiles.in_dir(args.workdir.resolve()))))
            return 0
        result = run_sipp(run, args.workdir.resolve())
    except (LabError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result.summary(), ensure_ascii=False, indent=2))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
