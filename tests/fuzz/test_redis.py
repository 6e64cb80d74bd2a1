"""Fuzzing Redis: connection URLs, Sentinel lists, and RESP replies through the reactor client's protocol.

A URL is an address or a ``ValueError`` that starts ``Redis URL`` and never shows the password, however it
is written (unencoded ``/``, ``?``, ``#``, ``@`` included); a Sentinel list is addresses or a ``ValueError``
naming the setting; RESP replies (RESP2 and RESP3, nested, maybe garbled) complete, fail or wait the same
whatever the reads were. (Fixed replies cut anywhere and short garbage: tests/unit/test_redis_resp.py.)
"""
from __future__ import annotations

import math

import hiredis
from hypothesis import example, given, settings
from hypothesis import strategies as st
from twisted.python.failure import Failure

from gateway.storage.redis_url import SCHEMES, parse_redis_url, parse_sentinels, redact
from gateway.storage.resp import RespProtocolError

from ..reactor_helpers import outcome
from ..unit.test_redis_resp import REPLIES, connected
from .support import CUTS, TALLY, chunked, mutated, parse_or_reject

# -- URLs -----------------------------------------------------------------------------------------------------------
_PASSWORDS = st.text(min_size=1, max_size=10).map(lambda text: f"Pw{text}Zq")  # marked: found if it leaks


@st.composite
def redis_urls(draw) -> tuple[str, str | None]:
    """A URL of the accepted shapes or near them; the password (if any) is returned beside it."""
    scheme = draw(st.sampled_from(["redis", "rediss", "unix", "REDIS", "http", "redis+sentinel"]))
    password = draw(st.none() | _PASSWORDS)
    user = draw(st.sampled_from(["", "app", "u%40x"]) | st.text(max_size=4))
    auth = f"{user}:{password}@" if password is not None else draw(st.sampled_from(["", f"{user}@"]))
    host = draw(st.sampled_from(["127.0.0.1", "redis.local", "[::1]", "", "H", "[::1"]) | st.text(max_size=6))
    port = draw(st.sampled_from(["", ":6379", ":0", ":70000", ":x", ":²", ":٣", ":"]))
    path = draw(st.sampled_from(["", "/", "/0", "/15", "/²", "/0/1", "/run/redis.sock"]) | st.text(max_size=6))
    query = draw(st.sampled_from(["", "?db=1", "?db=²", "?db=", "?password=x", "?db=1&db=2", "#frag"]))
    return f"{scheme}://{auth}{host}{port}{path}{query}", password


@settings(max_examples=400, deadline=None)
@given(redis_urls() | st.text(max_size=60).map(lambda text: (text, None)))
@example(("redis://:Pwpa/ssZq@redis.local:6379/0", "Pwpa/ssZq"))  # an unencoded '/': the URL's reading moves
@example(("redis://h/²", None))  # int("²") fails after isdigit() says yes
@example(("redis://?:Pw0Zq@127.0.0.1", "Pw0Zq"))  # the password read as a query parameter's name
@example(("redis://a/b:PwZq@h", "PwZq"))  # ... or as the database
def test_a_url_is_an_address_or_a_clear_error_never_showing_the_password(case):
    url, password = case
    address, error = parse_or_reject("redis-url", ValueError, parse_redis_url, url, hide=[redact(url)])
    if error is not None:
        assert str(error).startswith("Redis URL "), str(error)
        assert password is None or password not in str(error), str(error)
        return
    assert address.scheme in SCHEMES and 0 <= address.port <= 65535 and (address.db is None or address.db >= 0)
    assert (address.path if address.scheme == "unix" else address.host)
    assert password is None or (password not in str(address) and password not in repr(address))


_SENTINEL_ENTRIES = st.builds("{}{}".format, st.sampled_from(["10.0.0.1", "[::1]", "::1", "h", "", "[", "名字"]),
                              st.sampled_from([":26379", ":0", ":²", ":٣", "", ":70000", ":-1", ": 1", ":"]))


@settings(max_examples=300, deadline=None)
@given(text=st.lists(_SENTINEL_ENTRIES, max_size=4).map(",".join) | st.text(max_size=30),
       master=st.sampled_from(["mymaster", "", "a b", "名字", "hot.line-1"]) | st.text(max_size=6))
@example(text="h:²", master="mymaster")
def test_a_sentinel_list_is_addresses_or_an_error_naming_the_setting(text, master):
    sentinels, error = parse_or_reject("sentinels", ValueError, parse_sentinels, text, master)
    if error is not None:
        assert str(error).startswith(("redis.sentinels: ", "redis.sentinel_master: ")), str(error)
    elif sentinels is not None:
        assert sentinels.addresses and all(host and 0 < port <= 65535 for host, port in sentinels.addresses)


# -- RESP replies -----------------------------------------------------------------------------------------------------
_LINE = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=12).map(
    lambda text: text.encode())


def _bulk(kind: bytes, data: bytes) -> bytes:
    return kind + b"%d\r\n" % len(data) + data + b"\r\n"


RESP_LEAVES = st.one_of(
    st.sampled_from([wire for wire, _ in REPLIES]),
    _LINE.map(lambda text: b"+" + text + b"\r\n"), _LINE.map(lambda text: b"-ERR " + text + b"\r\n"),
    st.integers(-(2**63), 2**63 - 1).map(lambda n: b":%d\r\n" % n),
    st.binary(max_size=20).map(lambda data: _bulk(b"$", data)),
    st.sampled_from([b"$-1\r\n", b"*-1\r\n", b"_\r\n", b"#t\r\n", b"#f\r\n", b",1.5\r\n", b",inf\r\n", b",-inf\r\n",
                     b",nan\r\n", b"(3492890328409238509324850943850943825024385\r\n", b"=8\r\ntxt:some\r\n"]),
    st.binary(max_size=12).map(lambda d: _bulk(b"!", d)),
)


def _aggregate(kind: bytes, items: list[bytes]) -> bytes:
    return kind + b"%d\r\n" % len(items) + b"".join(items)


RESP_VALUES = st.recursive(RESP_LEAVES, lambda children: st.one_of(
    st.lists(children, max_size=4).map(lambda items: _aggregate(b"*", items)),
    st.lists(children, max_size=3).map(lambda items: _aggregate(b"~", items)),
    st.lists(st.tuples(children, children), max_size=3).map(
        lambda pairs: b"%%%d\r\n" % len(pairs) + b"".join(key + value for key, value in pairs)),
), max_leaves=10)


def _plain(value):
    """A reply in comparable form (error replies and NaN do not compare equal to themselves)."""
    if isinstance(value, hiredis.ReplyError):
        return ("error", str(value))
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return [(_plain(key), _plain(item)) for key, item in value.items()]
    return value


def _outcomes(pieces: list[bytes], asked: int):
    """What ``asked`` one-command requests got from the stream fed in pieces, and whether it was dropped."""
    proto, transport, _ = connected()
    results = [outcome(proto.execute([("GET", f"k{n}")])) for n in range(asked)]
    for piece in pieces:
        proto.dataReceived(piece)  # must not raise
    got = []
    for result in results:
        if not result:
            got.append("pending")
        elif isinstance(result[0], Failure):
            got.append((result[0].type.__name__, result[0].getErrorMessage()))
        else:
            got.append(_plain(result[0]))
    return got, transport.disconnected


RESP_STREAMS = st.lists(RESP_VALUES, min_size=1, max_size=5).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(stream=RESP_STREAMS | mutated(RESP_STREAMS, tokens=[b"*", b"$", b"%", b"-1", b"\r\n"]),
       asked=st.integers(0, 6), cuts=CUTS)
def test_replies_in_any_reads_complete_fail_or_wait_as_the_whole_does(stream, asked, cuts):
    TALLY.example("resp")
    whole = _outcomes([stream], asked)
    TALLY.rejected("resp", *(result[1] for result in whole[0]
                             if isinstance(result, tuple) and result[0] == RespProtocolError.__name__))
    assert _outcomes(chunked(stream, cuts), asked) == whole
