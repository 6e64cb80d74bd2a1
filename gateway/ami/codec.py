"""Pure AMI framing (wazo-amid style): bytes in, messages and leftover bytes out.

An AMI message is ``Key: Value`` lines ended by a blank line (``\\r\\n\\r\\n``).
The connection starts with a one-line banner (``Asterisk Call Manager/x.y``).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["AmiMessage", "AmiProtocolError", "format_action", "parse_messages"]

MAX_MESSAGE = 1 << 20


class AmiProtocolError(ValueError):
    """Not AMI, or a message larger than we accept."""


@dataclass(frozen=True)
class AmiMessage:
    """One message; ``headers`` keeps the first value of each key, ``lines`` all pairs."""

    headers: Mapping[str, str]
    lines: tuple[tuple[str, str], ...]

    @property
    def kind(self) -> str:
        if "Event" in self.headers:
            return "event"
        if "Response" in self.headers:
            return "response"
        return "other"

    @property
    def name(self) -> str:
        return self.headers.get("Event") or self.headers.get("Response") or ""

    @property
    def action_id(self) -> str:
        return self.headers.get("ActionID", "")

    def get(self, key: str, default: str = "") -> str:
        return self.headers.get(key, default)

    def get_all(self, key: str) -> list[str]:
        return [value for name, value in self.lines if name == key]


def _parse_block(block: bytes) -> AmiMessage | None:
    headers: dict[str, str] = {}
    lines: list[tuple[str, str]] = []
    for raw in block.split(b"\r\n"):
        if not raw:
            continue
        text = raw.decode("utf-8", errors="replace")
        key, sep, value = text.partition(":")
        if not sep:
            # Output lines of a "Command" action have no colon; keep them.
            lines.append(("Output", text))
            headers.setdefault("Output", text)
            continue
        key = key.strip()
        value = value.removeprefix(" ")
        lines.append((key, value))
        headers.setdefault(key, value)
    if not lines:
        return None
    return AmiMessage(headers, tuple(lines))


def parse_messages(
    buffer: bytes, max_message: int = MAX_MESSAGE, expect_banner: bool = False
) -> tuple[list[AmiMessage], bytes]:
    """Split ``buffer`` into complete messages and the unconsumed rest.

    With ``expect_banner`` (the start of a connection) the banner line
    (``Asterisk Call Manager/…``), which ends with a single CRLF, is returned
    as a message with header ``Banner``.
    """
    messages: list[AmiMessage] = []
    if expect_banner:
        if len(buffer) < 22 and b"Asterisk Call Manager/".startswith(buffer):
            return messages, buffer
        if not buffer.startswith(b"Asterisk Call Manager/"):
            raise AmiProtocolError("peer did not greet with the AMI banner")
        end = buffer.find(b"\r\n")
        if end < 0:
            return messages, buffer
        banner = buffer[:end].decode("utf-8", errors="replace")
        messages.append(AmiMessage({"Banner": banner}, (("Banner", banner),)))
        buffer = buffer[end + 2 :]
    parts = buffer.split(b"\r\n\r\n")
    rest = parts.pop()
    if len(rest) > max_message:
        raise AmiProtocolError(f"AMI message longer than {max_message} bytes")
    for block in parts:
        message = _parse_block(block)
        if message is not None:
            messages.append(message)
    return messages, rest


def format_action(action: str, fields: Mapping[str, object] | Iterable[tuple[str, object]] = ()) -> bytes:
    """Render an action. Repeated keys (``Variable``) come as a list of pairs."""
    pairs = list(fields.items()) if isinstance(fields, Mapping) else list(fields)
    out = [f"Action: {action}"]
    for key, value in pairs:
        text = str(value)
        if any(ch in text for ch in "\r\n") or any(ch in str(key) for ch in ":\r\n"):
            raise ValueError(f"AMI field {key!r} may not contain line breaks")
        out.append(f"{key}: {text}")
    return ("\r\n".join(out) + "\r\n\r\n").encode("utf-8")
