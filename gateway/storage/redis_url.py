"""Redis connection URLs as data: a pure parser, no sockets, no Twisted.

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
"""
from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["DEFAULT_PORT", "RedisAddress", "parse_redis_url", "redact"]

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
    netloc, slash, tail = rest.partition("/")
    userinfo, at, hostport = netloc.rpartition("@")
    if at and ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    # a password may also travel as a query parameter; hide every query value
    tail, question, query = tail.partition("?")
    if question:
        query = "&".join(part.split("=", 1)[0] + "=***" for part in query.split("&"))
    return f"{scheme}://{userinfo}{at}{hostport}{slash}{tail}{question}{query}"


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
        raise ValueError(f"Redis URL {shown}: unsupported parameter(s) {', '.join(unknown)} (only db)")
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
    if not text.isdigit():
        raise ValueError(f"Redis URL {shown}: the database must be a number, not {text!r}")
    return int(text)
