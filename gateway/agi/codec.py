"""Pure FastAGI wire format: no I/O, no Twisted.

Three jobs:

* ``parse_environment`` turns the ``agi_*: value`` header block Asterisk sends
  when a FastAGI connection opens into an :class:`AgiEnvironment`.
* ``format_command`` renders a command and its arguments as one line, quoting
  the way Asterisk's ``parse_args`` (res_agi.c) reads them back.
* ``parse_replies`` consumes a byte buffer and returns the complete replies in
  it plus the unconsumed rest (wazo-amid style: bytes in, messages + leftover
  out). Every shape Asterisk sends is handled: ``200 result=N (data) k=v``,
  ``510``/``511`` errors, the multi-line ``520-`` usage block, and the
  ``HANGUP`` notification. Anything else is a :class:`AgiProtocolError`.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Union

__all__ = [
    "MAX_LINE_LENGTH",
    "AgiEnvironment",
    "AgiProtocolError",
    "AgiReply",
    "HangupNotice",
    "format_command",
    "parse_env_line",
    "parse_environment",
    "parse_header_block",
    "parse_replies",
    "parse_reply_line",
]

#: Asterisk's own AGI buffer is 2048 bytes; a usage block line is shorter.
#: Anything longer than this is not Asterisk talking.
MAX_LINE_LENGTH = 8192


class AgiProtocolError(ValueError):
    """The peer sent something that is not AGI."""


@dataclass(frozen=True)
class AgiEnvironment:
    """The ``agi_*`` variables Asterisk sends at the start of a session."""

    variables: Mapping[str, str]

    def get(self, name: str, default: str = "") -> str:
        return self.variables.get(name, default)

    @property
    def network_script(self) -> str:
        """The script name: the path part of ``agi://host:port/NAME?args``."""
        script = self.get("agi_network_script")
        return script.split("?", 1)[0].strip("/")

    @property
    def uniqueid(self) -> str:
        return self.get("agi_uniqueid")

    @property
    def channel(self) -> str:
        return self.get("agi_channel")

    @property
    def caller_id(self) -> str:
        number = self.get("agi_callerid")
        return "" if number in ("", "unknown") else number

    @property
    def extension(self) -> str:
        return self.get("agi_extension")

    @property
    def arguments(self) -> tuple[str, ...]:
        """``agi_arg_1`` … in order (the AGI() application's extra args)."""
        args = []
        index = 1
        while f"agi_arg_{index}" in self.variables:
            args.append(self.variables[f"agi_arg_{index}"])
            index += 1
        return tuple(args)


@dataclass(slots=True, frozen=True)
class AgiReply:
    """One reply to one command (immutable: common replies are shared, see ``parse_replies``).

    ``code`` is the numeric status (200, 510, 511, 520); ``result`` the value
    of ``result=`` for 200 replies; ``data`` the text in parentheses (e.g.
    ``timeout`` or a variable's value); ``extra`` any ``key=value`` pairs that
    follow (``endpos``); ``text`` the human text of an error reply, all lines
    joined for the multi-line 520 usage block.
    """

    code: int
    result: int | None = None
    value: str = ""
    data: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)
    text: str = ""

    @property
    def ok(self) -> bool:
        return self.code == 200

    @property
    def hung_up(self) -> bool:
        """Asterisk's way of saying the channel is gone."""
        return self.code == 511 or (self.code == 200 and self.result == -1)

    @property
    def digit(self) -> str | None:
        """For WAIT FOR DIGIT / STREAM FILE: the key pressed, or ``None``."""
        if self.code != 200 or self.result is None or self.result <= 0:
            return None
        try:
            return chr(self.result)
        except (ValueError, OverflowError):
            return None


@dataclass(slots=True)
class HangupNotice:
    """The bare ``HANGUP`` line Asterisk writes when the channel hangs up."""


Message = Union[AgiReply, HangupNotice]

_NAME_OK = re.compile(r"^[A-Z][A-Z ]*$")
_KEY_VALUE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(\S*)")


def _decode(line: bytes) -> str:
    return line.decode("utf-8", errors="replace")


def parse_env_line(line: bytes | str) -> tuple[str, str]:
    """Parse one ``agi_name: value`` header line."""
    text = (_decode(line) if isinstance(line, bytes) else line).rstrip("\r\n")
    if "\n" in text:
        raise AgiProtocolError(f"malformed AGI environment line: {text[:80]!r}")
    return _split_env_line(text)


#: header names already checked against ``_ENV_KEY`` (Asterisk sends the same
#: two dozen on every call); bounded so odd peers cannot grow it without end
_KNOWN_ENV_KEYS: set[str] = set()
_MAX_KNOWN_ENV_KEYS = 1024
_ENV_KEY = re.compile(r"agi_[A-Za-z0-9_]+")


def _split_env_line(text: str) -> tuple[str, str]:
    """One header line (no newline in it) → (name, value).

    The grammar is ``agi_[A-Za-z0-9_]+`` ``:`` an optional single whitespace
    character, then the value (the regex ``^(agi_[A-Za-z0-9_]+):\\s?(.*)$``).
    A partition on the first colon plus a cached check of the name, instead of
    a regex match per line: the header is ~22 lines on every call.
    """
    key, colon, value = text.partition(":")
    if not colon or (key not in _KNOWN_ENV_KEYS and not _check_env_key(key)):
        raise AgiProtocolError(f"malformed AGI environment line: {text[:80]!r}")
    if value[:1].isspace():  # the regex's ``\s?``: at most one separator
        value = value[1:]
    return key, value


def _check_env_key(key: str) -> bool:
    if _ENV_KEY.fullmatch(key) is None:
        return False
    if len(_KNOWN_ENV_KEYS) < _MAX_KNOWN_ENV_KEYS:
        _KNOWN_ENV_KEYS.add(key)
    return True


def parse_environment(lines: Iterable[bytes | str]) -> AgiEnvironment:
    """Build the environment from header lines (the blank terminator excluded)."""
    variables: dict[str, str] = {}
    for line in lines:
        key, value = parse_env_line(line)
        variables[key] = value
    return _environment(variables)


def parse_header_block(block: bytes) -> AgiEnvironment:
    """Build the environment from the raw header, up to (not including) the blank line.

    Same result as :func:`parse_environment` on the block's lines, but the
    block is decoded once (a newline is never part of a UTF-8 sequence, so
    decoding per line or per block gives the same text).
    """
    text = _decode(block)
    # The usual header: one regex pass in C over the whole block. It is used
    # only when every line matched and no name repeats; anything else takes
    # the line-by-line path, which says what is wrong.
    pairs = _HEADER_LINE.findall(text)
    if len(pairs) == text.count("\n") + (not text.endswith("\n")):
        variables = dict(pairs)
        if len(variables) == len(pairs):
            return _environment(variables)
    variables = {}
    for line in text.split("\n"):
        if line:
            key, value = _split_env_line(line.rstrip("\r"))
            variables[key] = value
    return _environment(variables)


#: one header line: the ``_split_env_line`` grammar (name, ``:``, at most one
#: whitespace separator, value, trailing ``\r`` dropped) for a whole block.
#: The value is matched greedily up to the line's end (a lazy ``.*?`` tries
#: ``\r*$`` at every character: ~30 % slower on a real header); a value with
#: a ``\r`` inside does not match, and the line-by-line path takes the block.
_HEADER_LINE = re.compile(r"^(agi_[A-Za-z0-9_]+):[^\S\n]?([^\r\n]*)\r*$", re.MULTILINE)


def _environment(variables: dict[str, str]) -> AgiEnvironment:
    if "agi_request" not in variables and "agi_network_script" not in variables:
        raise AgiProtocolError("AGI environment has neither agi_request nor agi_network_script")
    return AgiEnvironment(variables)


def _quote(arg: str) -> str:
    if "\n" in arg or "\r" in arg or "\x00" in arg:
        # A newline would end the command early and let the rest be read as a
        # second command: refuse rather than let call data inject commands.
        raise ValueError("AGI argument may not contain a line break or NUL")
    if "\\" in arg or '"' in arg:
        arg = arg.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + arg + '"'


#: command names already checked against ``_NAME_OK`` (a flow uses a dozen);
#: bounded like ``_KNOWN_ENV_KEYS``
_KNOWN_NAMES: set[str] = set()
_MAX_KNOWN_NAMES = 256


def format_command(name: str, *args: object) -> bytes:
    """Render ``NAME arg …`` as one newline-terminated line.

    The command words are passed as is (they are ours, upper case, no
    quoting); every argument is double-quoted with ``\\`` and ``"`` escaped,
    which is exactly what res_agi's ``parse_args`` undoes, so empty arguments
    and arguments with spaces survive.
    """
    if name not in _KNOWN_NAMES:
        if not name or not _NAME_OK.match(name):
            raise ValueError(f"bad AGI command name {name!r}")
        if len(_KNOWN_NAMES) < _MAX_KNOWN_NAMES:
            _KNOWN_NAMES.add(name)
    if not args:
        return (name + "\n").encode("utf-8")
    quoted = " ".join([_quote(arg if type(arg) is str else str(arg)) for arg in args])
    return (name + " " + quoted + "\n").encode("utf-8")


def parse_reply_line(text: str) -> AgiReply:
    """Parse one single-line reply (not the ``520-`` block)."""
    if text.startswith("200 result="):
        return _parse_200(text)
    # isascii: "²" is a digit to isdigit() but not to int()
    if len(text) >= 3 and text[:3].isascii() and text[:3].isdigit() and (len(text) == 3 or text[3] == " "):
        code = int(text[:3])
        if code in (510, 511, 520):
            return AgiReply(code=code, text=text[4:].strip())
    raise AgiProtocolError(f"unrecognised AGI reply: {text[:80]!r}")


def _parse_200(text: str) -> AgiReply:
    """``200 result=VALUE[ (DATA)][ key=value …]`` without a regex.

    VALUE is everything up to the first whitespace (the regex
    ``^200 result=(\\S*)(?:\\s+(.*))?$``); ``str.split()`` splits on the same
    whitespace as ``\\s``.
    """
    tail = text[11:]
    if not tail or tail[0].isspace():
        value, rest = "", tail.strip()
    else:
        parts = tail.split(None, 1)
        value = parts[0]
        rest = parts[1].strip() if len(parts) > 1 else ""
    # GET DATA answers "result=" (nothing keyed) or "result=0123":
    # keep the raw text, leading zeros and all, beside the integer.
    digits = value[1:] if value[:1] == "-" else value
    result = int(value) if digits.isdecimal() and len(value) < 19 else None
    if not rest:
        return AgiReply(code=200, result=result, value=value)
    data: str | None = None
    if rest[0] == "(":
        # The data is printed as "(%s)" and may itself contain ")" or
        # spaces; the key=value pairs after it never contain ")".
        close = rest.rfind(")")
        if close < 0:
            raise AgiProtocolError(f"unbalanced parenthesis in AGI reply: {text[:80]!r}")
        data = rest[1:close]
        rest = rest[close + 1 :].strip()
    extra = dict(_KEY_VALUE.findall(rest)) if rest else {}
    return AgiReply(code=200, result=result, value=value, data=data, extra=extra)


#: Replies without data that Asterisk sends over and over (``200 result=1``,
#: ``200 result=0 endpos=800``), parsed once and shared: ``AgiReply`` is
#: immutable. Replies carrying data (a variable's value, which may be a
#: citizen's number) are never kept. Bounded: once full, new lines are parsed
#: every time.
_REPLY_CACHE: dict[bytes, AgiReply] = {}
_MAX_CACHED_REPLIES = 512
_CACHEABLE_LENGTH = 48


def _shareable(reply: AgiReply) -> AgiReply:
    """The same reply with a read-only ``extra`` (a cached reply is shared by every call)."""
    if not reply.extra:
        return AgiReply(code=reply.code, result=reply.result, value=reply.value, extra=_NO_EXTRA)
    return AgiReply(code=reply.code, result=reply.result, value=reply.value, extra=MappingProxyType(dict(reply.extra)))


_NO_EXTRA: Mapping[str, str] = MappingProxyType({})


def parse_replies(buffer: bytes, max_line: int = MAX_LINE_LENGTH) -> tuple[list[Message], bytes]:
    """Split ``buffer`` into complete replies and the unconsumed rest.

    A multi-line ``520-`` usage block is only returned once its closing
    ``520 `` line has arrived; until then it stays in the rest. Raises
    :class:`AgiProtocolError` for a line that is not AGI or is longer than
    ``max_line`` (checked on the unterminated tail too, so a peer cannot make
    us buffer without bound).
    """
    length = len(buffer)
    if buffer.find(b"\n") == length - 1 and 0 < length <= max_line + 1 and buffer.startswith(b"200 "):
        # the usual read: exactly one "200 …" reply, most often one seen before
        reply = _REPLY_CACHE.get(buffer)
        if reply is None:
            reply = parse_reply_line(_decode(buffer[:-1]).rstrip("\r"))
            if length <= _CACHEABLE_LENGTH and reply.data is None and len(_REPLY_CACHE) < _MAX_CACHED_REPLIES:
                reply = _REPLY_CACHE[buffer] = _shareable(reply)
        return [reply], b""
    messages: list[Message] = []
    position = 0
    while position < length:
        newline = buffer.find(b"\n", position)
        if newline < 0:
            if length - position > max_line:
                raise AgiProtocolError(f"AGI line longer than {max_line} bytes")
            break
        if newline - position > max_line:
            raise AgiProtocolError(f"AGI line longer than {max_line} bytes")
        reply = _REPLY_CACHE.get(buffer[position : newline + 1])
        if reply is not None:  # a reply seen before, here followed by more (HANGUP's "200 result=1\nHANGUP\n")
            messages.append(reply)
            position = newline + 1
            continue
        text = _decode(buffer[position:newline]).rstrip("\r")
        if text == "":
            position = newline + 1
            continue
        if text == "HANGUP":
            messages.append(HangupNotice())
            position = newline + 1
            continue
        if text.startswith("520-"):
            block, end = _read_usage_block(buffer, position, max_line)
            if block is None:
                break  # wait for the rest of the block
            messages.append(block)
            position = end
            continue
        messages.append(parse_reply_line(text))
        position = newline + 1
    return messages, buffer[position:]


def _read_usage_block(buffer: bytes, start: int, max_line: int) -> tuple[AgiReply | None, int]:
    """Read ``520-…`` up to and including the ``520 End of proper usage.`` line."""
    lines: list[str] = []
    position = start
    while True:
        newline = buffer.find(b"\n", position)
        if newline < 0:
            if len(buffer) - position > max_line:
                raise AgiProtocolError(f"AGI line longer than {max_line} bytes")
            return None, start
        if newline - position > max_line:  # as any other line (a block that came in one read too)
            raise AgiProtocolError(f"AGI line longer than {max_line} bytes")
        text = _decode(buffer[position:newline]).rstrip("\r")
        position = newline + 1
        if text.startswith("520 "):
            lines.append(text[4:])
            return AgiReply(code=520, text="\n".join(lines).strip()), position
        lines.append(text.removeprefix("520-"))
        if len(lines) > 200:
            raise AgiProtocolError("AGI 520 usage block without an end line")


def command_words(line: bytes) -> Sequence[str]:
    """The command name of a formatted line, for logs and metrics labels."""
    text = _decode(line).strip()
    words = []
    for word in text.split(" "):
        if word.startswith('"'):
            break
        words.append(word)
    return words
