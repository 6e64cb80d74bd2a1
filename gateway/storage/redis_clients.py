"""Blocking redis-py clients, plain or through Redis Sentinel, and the start-up check of the sentinels.

Every user of redis-py (the gateway's thread-pool services: flows, dialer,
callbacks, surveys, monitor checkpoints; the ASR worker; the console commands)
gets its client from :func:`blocking_client`, so all of them follow the primary
alike. With ``redis.sentinels`` the client is redis-py's
``Sentinel(...).master_for(...)``: every new connection asks the sentinels where
the primary is, and a ``READONLY`` reply (a demoted primary) closes the
connection and raises ``ConnectionError``. A command that fails while the
sentinels fail over raises ``redis.ConnectionError``/``TimeoutError`` after
redis-py's own few quick retries: the callers' retry loops take it from there.

:func:`check_sentinels` runs before a process starts serving (blocking, never in
the reactor): it asks each sentinel for the primary with a short timeout and
raises :class:`~gateway.storage.redis_url.SentinelError` with a message naming
every sentinel and why, instead of a start that hangs or retries forever.
"""
from __future__ import annotations

from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from .redis_url import SentinelError, Sentinels, format_host_port, parse_redis_url, parse_sentinels

__all__ = ["SentinelError", "blocking_client", "check_sentinels", "sentinels_of"]

#: seconds each sentinel may take to connect and answer in :func:`check_sentinels`
CHECK_TIMEOUT = 2.0


def sentinels_of(redis_config) -> Sentinels | None:
    """The sentinels of a ``RedisConfig`` (validated at load), or None without them."""
    return parse_sentinels(redis_config.sentinels, redis_config.sentinel_master,
                           redis_config.sentinel_password or None)


def blocking_client(redis_config, *, timeout: float, connect_timeout: float | None = None,
                    decode_responses: bool = True, **options: Any) -> redis.Redis:
    """A redis-py client of ``redis_config`` (a ``RedisConfig``): the URL's server, or the sentinels' primary.

    ``timeout`` is the socket timeout of every command, ``connect_timeout`` (default: ``timeout``)
    that of a connect, also of asking a sentinel; ``options`` go to the client as they are.
    """
    connect_timeout = timeout if connect_timeout is None else connect_timeout
    sentinels = sentinels_of(redis_config)
    if sentinels is None:
        return redis.Redis.from_url(redis_config.url, socket_timeout=timeout, socket_connect_timeout=connect_timeout,
                                    decode_responses=decode_responses, **options)
    address = parse_redis_url(redis_config.url)
    sentinel = Sentinel(
        list(sentinels.addresses),
        socket_timeout=timeout,
        sentinel_kwargs={"socket_timeout": connect_timeout, "socket_connect_timeout": connect_timeout,
                         "password": sentinels.password},
    )
    return sentinel.master_for(
        sentinels.master, socket_timeout=timeout, socket_connect_timeout=connect_timeout, db=address.db or 0,
        username=address.username, password=address.password, ssl=address.tls, decode_responses=decode_responses,
        **options,
    )


def check_sentinels(redis_config, timeout: float = CHECK_TIMEOUT) -> tuple[str, int] | None:
    """Ask each sentinel (``timeout`` s to connect, as much to answer) where the primary is.

    Returns the primary's (host, port) from the first sentinel that knows it (None without
    sentinels); :class:`SentinelError` when none answered or none knows the master.
    """
    sentinels = sentinels_of(redis_config)
    if sentinels is None:
        return None
    errors: list[str] = []
    answered: list[str] = []
    for host, port in sentinels.addresses:
        shown = format_host_port(host, port)
        client = redis.Redis(host, port, password=sentinels.password, socket_timeout=timeout,
                             socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0))
        try:
            reply = client.execute_command("SENTINEL", "get-master-addr-by-name", sentinels.master)
        except redis.RedisError as exc:
            errors.append(f"{shown}: {_reason(exc)}")
            continue
        finally:
            client.close()
        if reply:
            primary_host, primary_port = (part.decode() if isinstance(part, bytes) else str(part) for part in reply)
            return primary_host, int(primary_port)
        answered.append(shown)
    if answered:
        raise sentinels.unknown_master(answered, errors)
    raise sentinels.none_answered(errors)


def _reason(exc: redis.RedisError) -> str:
    """``connection refused`` / ``timed out`` rather than redis-py's ``Error 111 connecting to h:p. …``."""
    if isinstance(exc, redis.TimeoutError):
        return "timed out"
    if isinstance(exc, redis.ResponseError):
        return f"error reply: {exc}"
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, TimeoutError):
        return "timed out"
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror.lower()
    return str(exc) or type(exc).__name__
