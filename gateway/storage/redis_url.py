"""Redis connection URLs and Sentinel sets as data: pure parsers, no sockets, no Twisted.

Accepted (the shapes ``redis.url`` has always allowed)::

    redis://[[user]:password@]host[:port][/db]
    rediss://[[user]:password@]host[:port][/db]      (TLS)
    unix://[[user]:password@]/path/to/redis.sock[?db=N]

``?db=N`` is also accepted on the TCP schemes (as redis-py does) when the path
names no database. Anything else — another scheme, a missing host or socket
path, a bad port or db, other query parameters — is a :class:`ValueError`
naming the problem, raised when the client is built, not on the first call.

The password is kept out of ``repr`` and of every message: a URL is only ever
shown through :func:`redact`.

With Redis Sentinel (``redis.sentinels``), :func:`parse_sentinels` reads the
``host:port,host:port`` list and the master name into a :class:`Sentinels`;
the URL then gives only the database and the credentials of the primary.
:class:`SentinelError` is what every client raises when no sentinel names the
primary; its messages are built here so both clients (the reactor's and
redis-py) word them alike.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = [
    "DEFAULT_PORT",
    "RedisAddress",
    "SentinelError",
    "Sentinels",
    "parse_redis_url",
    "parse_sentinels",
    "redact",
]

DEFAULT_PORT = 6379
SCHEMES = ("redis", "rediss", "unix")


@dataclass(frozen=True)
class RedisAddress:
    """Where and how to connect; ``password`` never shows in ``repr``."""

    scheme: str
    host: str = ""
    port: int = DEFAULT_PORT
    #: the socket file (``unix://`` only)
    path: str = ""
    #: ``None``: no SELECT (the server's default database, 0)
    db: int | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def tls(self) -> bool:
        return self.scheme == "rediss"

    def __str__(self) -> str:
        """The address for log lines: credentials replaced by ``***``."""
        auth = ""
        if self.username or self.password is not None:
            auth = f"{self.username or ''}{':***' if self.password is not None else ''}@"
        if self.scheme == "unix":
            query = f"?db={self.db}" if self.db is not None else ""
            return f"unix://{auth}{self.path}{query}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        db = f"/{self.db}" if self.db is not None else ""
        return f"{self.scheme}://{auth}{host}:{self.port}{db}"


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages about a URL that may not parse)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url if "@" not in url else "<not a URL, hidden: it may hold a password>"
    # a password written unencoded may hold '/', '?', '#' or '@', and then the host seems to start inside
    # it: all up to the last '@' may be credentials; hidden as such once it holds a ':'
    credentials, at, after = rest.rpartition("@")
    if at and ":" in credentials:
        return f"{scheme}://{credentials.split(':', 1)[0]}:***@{_redact_query(after)}"
    netloc, slash, tail = rest.partition("/")
    userinfo, at, hostport = netloc.rpartition("@")
    if at and ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    return f"{scheme}://{userinfo}{at}{_redact_query(hostport + slash + tail)}"


def _redact_query(text: str) -> str:
    """A password may also travel as a query parameter: every query value hidden."""
    text, question, query = text.partition("?")
    if question:
        query = "&".join(part.split("=", 1)[0] + "=***" for part in query.split("&"))
    return f"{text}{question}{query}"


def parse_redis_url(url: str) -> RedisAddress:
    """Parse ``url`` into a :class:`RedisAddress`; :class:`ValueError` with a clear message otherwise."""
    shown = redact(url)
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme not in SCHEMES:
        raise ValueError(f"Redis URL {shown}: the scheme must be redis://, rediss:// or unix://")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError(f"Redis URL {shown}: bad port") from None
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=False)
    unknown = sorted(set(query) - {"db"})
    if unknown:
        # a name that is no word may be a password written unencoded ("redis://?:secret@host")
        names = ", ".join(name if _WORD.fullmatch(name) else "<hidden>" for name in unknown)
        raise ValueError(f"Redis URL {shown}: unsupported parameter(s) {names} (only db)")
    query_db = _db(query["db"][-1], shown) if "db" in query else None
    if parts.fragment:
        raise ValueError(f"Redis URL {shown}: unexpected '#' fragment")
    if scheme == "unix":
        if not parts.path or parts.path == "/":
            raise ValueError(f"Redis URL {shown}: no socket path (unix:///path/to/redis.sock)")
        if parts.hostname:
            raise ValueError(f"Redis URL {shown}: a unix:// URL names no host (unix:///path/to/redis.sock)")
        return RedisAddress("unix", path=unquote(parts.path), db=query_db, username=username, password=password)
    if not parts.hostname:
        raise ValueError(f"Redis URL {shown}: no host")
    path = parts.path.strip("/")
    if path and query_db is not None:
        raise ValueError(f"Redis URL {shown}: the database is given twice (path and ?db=)")
    if "/" in path:
        raise ValueError(f"Redis URL {shown}: the path may only name the database number")
    db = _db(path, shown) if path else query_db
    return RedisAddress(
        scheme, host=parts.hostname, port=port if port is not None else DEFAULT_PORT, db=db,
        username=username, password=password,
    )


def _db(text: str, shown: str) -> int:
    if not (text.isascii() and text.isdigit()):  # "²".isdigit(), but int("²") fails
        what = f", not {text!r}" if _WORD.fullmatch(text) else ""  # maybe a password's part: shown only if a word
        raise ValueError(f"Redis URL {shown}: the database must be a number{what}")
    return int(text)


_WORD = re.compile(r"[A-Za-z0-9_.-]{1,40}")


# -- Sentinel ---------------------------------------------------------------------------
#: a master name as Sentinel's configuration accepts it without quoting
MASTER_NAME = re.compile(r"[A-Za-z0-9._-]+")


class SentinelError(ConnectionError):
    """No sentinel named the primary: none answered, or none knows the master."""


@dataclass(frozen=True)
class Sentinels:
    """Where the sentinels are, the master name they know the primary by, their password (never shown)."""

    addresses: tuple[tuple[str, int], ...]
    master: str
    password: str | None = field(default=None, repr=False)

    def __str__(self) -> str:
        return f"sentinels {self.listed()} (master {self.master!r})"

    def listed(self) -> str:
        return ", ".join(format_host_port(host, port) for host, port in self.addresses)

    def none_answered(self, errors: list[str]) -> SentinelError:
        """The error when no sentinel could be asked; ``errors`` say why, one per sentinel."""
        return SentinelError(f"redis.sentinels: no sentinel of {self.listed()} answered ({'; '.join(errors)})")

    def unknown_master(self, answered: list[str], errors: list[str]) -> SentinelError:
        """The error when the sentinels that answered do not know the master name."""
        rest = f"; {'; '.join(errors)}" if errors else ""
        return SentinelError(
            f"redis.sentinels: the sentinels {', '.join(answered)} do not know master {self.master!r} "
            f"(check redis.sentinel_master){rest}"
        )


def format_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_sentinels(text: str, master: str, password: str | None = None) -> Sentinels | None:
    """``host:port,host:port`` (``[v6]:port`` too) and a master name; None for an empty list.

    :class:`ValueError` names the bad entry (``redis.sentinels: ...``) or the bad master name
    (``redis.sentinel_master: ...``).
    """
    if not MASTER_NAME.fullmatch(master):
        raise ValueError(f"redis.sentinel_master: {master!r} is not a master name ([A-Za-z0-9._-]+)")
    entries = [entry.strip() for entry in text.split(",")]
    if not any(entries):
        return None
    addresses = []
    for entry in entries:
        if not entry:
            raise ValueError(f"redis.sentinels: an empty entry in {text!r} (host:port,host:port)")
        host, sep, port = entry.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not sep or not host or (":" in host and not entry.startswith("[")):
            raise ValueError(f"redis.sentinels: {entry!r} is not host:port ([host]:port for IPv6)")
        if not (port.isascii() and port.isdigit()) or not 0 < int(port) <= 65535:
            raise ValueError(f"redis.sentinels: {entry!r}: {port!r} is not a TCP port")
        addresses.append((host, int(port)))
    return Sentinels(tuple(addresses), master, password or None)
