"""run_flow: the light driver of call-flow coroutines (what fromCoroutine did for them)."""
import contextvars

import pytest
from twisted.internet import defer

from gateway.agi.flowrun import run_flow


def results(d):
    out = []
    d.addBoth(out.append)
    return out


def test_awaits_deferreds_fired_later_and_returns_the_value():
    first, second = defer.Deferred(), defer.Deferred()

    async def flow():
        a = await first
        b = await second
        return a + b

    done = results(run_flow(flow()))
    assert done == []
    first.callback(2)
    assert done == []
    second.callback(3)
    assert done == [5]


def test_a_failed_deferred_raises_at_the_await_and_can_be_caught():
    d = defer.Deferred()

    async def flow():
        try:
            await d
        except KeyError as exc:
            return f"caught {exc.args[0]}"

    done = results(run_flow(flow()))
    d.errback(KeyError("x"))
    assert done == ["caught x"]


def test_an_uncaught_exception_fails_the_run_with_the_flow_traceback():
    d = defer.Deferred()

    async def flow():
        await d
        raise ValueError("bug")

    done = results(run_flow(flow()))
    d.callback(None)
    (failure,) = done
    assert failure.check(ValueError)
    assert "flow" in failure.getTraceback()
    done.clear()  # handled


def test_the_awaited_deferred_is_left_without_an_unhandled_error():
    d = defer.Deferred()

    async def flow():
        await d

    done = run_flow(flow())
    done.addErrback(lambda f: None)
    d.errback(RuntimeError("gone"))
    assert d.result is None  # consumed by the driver: nothing to report as unhandled at gc


def test_already_fired_and_chained_deferreds():
    inner = defer.Deferred()
    outer = defer.succeed(1)
    outer.addCallback(lambda _: inner)  # outer is now paused on inner

    async def flow():
        ready = await defer.succeed("now")
        chained = await outer
        return ready, chained

    done = results(run_flow(flow()))
    assert done == []
    inner.callback("later")
    assert done == [("now", "later")]


def test_the_flow_runs_in_its_own_context():
    var = contextvars.ContextVar("var", default="outside")
    d = defer.Deferred()
    seen = []

    async def flow():
        var.set("inside")
        await d
        seen.append(var.get())

    run_flow(flow())
    assert var.get() == "outside"
    d.callback(None)
    assert seen == ["inside"] and var.get() == "outside"


def test_a_non_deferred_yield_is_sent_back():
    class Bare:
        def __await__(self):
            got = yield "token"
            return got

    async def flow():
        return await Bare()

    assert results(run_flow(flow())) == ["token"]


def test_an_exception_before_the_first_await_fails_at_once():
    async def flow():
        raise LookupError("no")

    (failure,) = results(run_flow(flow()))
    assert failure.check(LookupError)


@pytest.mark.parametrize("n", [1, 200])
def test_many_awaits_in_a_row(n):
    pending = []

    async def flow():
        total = 0
        for _ in range(n):
            d = defer.Deferred()
            pending.append(d)
            total += await d
        return total

    done = results(run_flow(flow()))
    while pending:
        pending.pop().callback(1)
    assert done == [n]
