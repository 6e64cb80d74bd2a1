"""The typed call-session API that flows program against.

Flows never see sockets or AGI syntax: they ``await session.play("welcome")``.
Every method sends one AGI command and turns the reply into a plain value or
an exception:

* :class:`CallerHungUp` — the channel is gone (``HANGUP`` notice, ``result=-1``,
  ``511``, or the socket closed). Flows simply let it propagate; the server
  closes the call record with outcome ``caller_hangup``.
* :class:`AgiCommandError` — Asterisk refused the command (``510``/``520``).

Hand-offs (:meth:`AgiSession.queue`, :meth:`AgiSession.transfer`) do not run
the long-lived Queue()/Dial() over AGI: they set channel variables and end the
session; the dialplan acts on them (see ``asterisk_conf/extensions.conf``).
If the gateway is away the same dialplan sends the caller to the queue.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from twisted.internet import defer

from .. import channel_vars as cv
from . import codec
from .protocol import AgiConnectionLost

__all__ = ["AgiCommandError", "AgiSession", "CallerHungUp", "CommandSender", "Handoff", "RecordResult"]


#: Commands Asterisk still runs after the caller hung up (dead-channel AGI).
DEAD_SAFE = frozenset({"SET VARIABLE", "GET VARIABLE", "GET FULL VARIABLE", "VERBOSE"})


class CallerHungUp(Exception):
    """The caller's channel is gone."""


class AgiCommandError(RuntimeError):
    """Asterisk rejected a command (510 unknown, 520 bad syntax)."""

    def __init__(self, command: str, reply: codec.AgiReply) -> None:
        super().__init__(f"{command}: {reply.code} {reply.text}".strip())
        self.command = command
        self.reply = reply


class CommandSender(Protocol):
    hangup_received: bool

    def send_command(self, line: bytes, timeout: float) -> defer.Deferred: ...


@dataclass(frozen=True)
class Handoff:
    """Where the call goes when the flow ends."""

    kind: str  # "queue" | "transfer" | "hangup"
    target: str
    priority: int = 0


@dataclass(frozen=True)
class RecordResult:
    path: str
    ended_by: str  # "dtmf" | "silence" | "timeout" | "hangup" | "error" (the file could not be written)
    digit: str | None
    end_position: int


class AgiSession:
    """One call as the flow sees it."""

    def __init__(
        self,
        sender: CommandSender,
        environment: codec.AgiEnvironment,
        command_timeout: float = 10.0,
        language_dir: str = "hotline",
    ) -> None:
        self._sender = sender
        self.environment = environment
        self.command_timeout = command_timeout
        self.language_dir = language_dir
        self.path: list[str] = []
        #: flow variables (not channel variables): choices, typed numbers, lookups
        self.vars: dict[str, object] = {}
        self.handoff: Handoff | None = None
        self.commands_sent = 0
        #: the gateway's CallRecord for this call (set by the server)
        self.call_record = None

    # -- plumbing ------------------------------------------------------------
    @property
    def call_id(self) -> str:
        return self.environment.uniqueid

    @property
    def caller(self) -> str:
        return self.environment.caller_id

    def step(self, description: str) -> None:
        """Note a step of the call's path (kept in the call record)."""
        self.path.append(description)

    async def command(
        self, name: str, *args: object, timeout: float | None = None, allow_hangup: bool = False
    ) -> codec.AgiReply:
        """Send one raw AGI command and return its reply (200 only)."""
        if self._sender.hangup_received and name not in DEAD_SAFE:
            # Asterisk would answer 511 anyway; save the round trip.
            raise CallerHungUp(f"{name} after hang-up")
        line = codec.format_command(name, *args)
        self.commands_sent += 1
        try:
            reply: codec.AgiReply = await self._sender.send_command(line, timeout or self.command_timeout)
        except AgiConnectionLost as exc:
            raise CallerHungUp(str(exc)) from exc
        # reply.hung_up / reply.ok, spelled out: this runs for every command
        code = reply.code
        if code == 200:
            if reply.result == -1 and not allow_hangup:
                raise CallerHungUp(f"{name}: channel hung up")
            return reply
        if code == 511:
            raise CallerHungUp(f"{name}: channel hung up")
        raise AgiCommandError(name, reply)

    def _prompt_file(self, prompt: str) -> str:
        if "/" in prompt or not self.language_dir:
            return prompt
        return f"{self.language_dir}/{prompt}"

    # -- the flow API --------------------------------------------------------
    async def answer(self) -> None:
        await self.command("ANSWER")

    async def play(self, prompt: str, escape_digits: str = "") -> str | None:
        """Play a prompt; return the key that interrupted it, if any."""
        reply = await self.command("STREAM FILE", self._prompt_file(prompt), escape_digits, timeout=self._long())
        # A missing sound file also answers "result=0 endpos=0": the flow goes
        # on (Asterisk logs the missing file); a caller is never stuck on it.
        return reply.digit

    async def wait_for_digit(self, timeout_ms: int) -> str | None:
        reply = await self.command("WAIT FOR DIGIT", int(timeout_ms), timeout=timeout_ms / 1000 + self.command_timeout)
        return reply.digit

    async def get_digits(self, prompt: str, max_digits: int, timeout_ms: int = 5000) -> tuple[str, bool]:
        """GET DATA: play ``prompt`` and collect up to ``max_digits`` keys.

        Returns the digits and whether input ended by timeout.
        """
        reply = await self.command(
            "GET DATA",
            self._prompt_file(prompt),
            int(timeout_ms),
            int(max_digits),
            timeout=self._long() + timeout_ms / 1000 * max(1, max_digits),
        )
        # GET DATA puts the keys themselves in result= (leading zeros, * and
        # # included); "result=" alone means nothing was keyed.
        return reply.value, reply.data == "timeout"

    async def record(
        self,
        path: str,
        fmt: str = "wav",
        escape_digits: str = "#",
        timeout_ms: int = 60000,
        silence_s: int = 5,
        beep: bool = True,
    ) -> RecordResult:
        args: list[object] = [path, fmt, escape_digits, int(timeout_ms)]
        if beep:
            args.append("BEEP")
        if silence_s:
            args.append(f"s={int(silence_s)}")
        # A caller who hangs up instead of pressing # has still left a message:
        # Asterisk answers "result=-1 (hangup) endpos=N" and the file is there.
        reply = await self.command(
            "RECORD FILE", *args, timeout=timeout_ms / 1000 + self.command_timeout, allow_hangup=True
        )
        # "(writefile)": Asterisk could not open or write the file (disk full, permissions): no message
        ended_by = {"dtmf": "dtmf", "timeout": "timeout", "hangup": "hangup", "writefile": "error"}.get(
            reply.data or "", "silence")
        try:
            endpos = int(reply.extra.get("endpos", "0"))
        except ValueError:
            endpos = 0
        digit = reply.digit if reply.data == "dtmf" else None
        return RecordResult(path=path, ended_by=ended_by, digit=digit, end_position=endpos)

    async def set_variable(self, name: str, value: object) -> None:
        await self.command("SET VARIABLE", name, value)

    async def get_variable(self, name: str) -> str | None:
        reply = await self.command("GET VARIABLE", name)
        return reply.data if reply.result == 1 else None

    async def get_full_variable(self, expression: str) -> str | None:
        """Evaluate a dialplan expression (``${QUEUE_WAITING_COUNT(12345)}``)."""
        reply = await self.command("GET FULL VARIABLE", expression)
        return reply.data if reply.result == 1 else None

    async def say_digits(self, digits: str, escape_digits: str = "") -> str | None:
        reply = await self.command("SAY DIGITS", digits, escape_digits, timeout=self._long())
        return reply.digit

    async def verbose(self, message: str, level: int = 1) -> None:
        await self.command("VERBOSE", message, int(level))

    async def hangup(self) -> None:
        await self.command("HANGUP")
        self.handoff = Handoff("hangup", "")

    async def queue(self, queue: str, priority: int = 0) -> None:
        """Hand the call to the agent queue (run by the dialplan after AGI)."""
        await self.set_variable(cv.QUEUE, queue)
        await self.set_variable(cv.PRIORITY, int(priority))
        await self.set_variable(cv.NEXT, cv.NEXT_QUEUE)
        self.handoff = Handoff("queue", queue, int(priority))
        self.step(f"queue:{queue}")

    async def transfer(self, target: str) -> None:
        """Hand the call to a fixed transfer target of the dialplan."""
        await self.set_variable(cv.TRANSFER, target)
        await self.set_variable(cv.NEXT, cv.NEXT_TRANSFER)
        self.handoff = Handoff("transfer", target)
        self.step(f"transfer:{target}")

    def _long(self) -> float:
        # Prompts can be long; a stuck STREAM FILE still ends eventually.
        return max(self.command_timeout, 120.0)

