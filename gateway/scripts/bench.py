"""The fixed 12-command benchmark script (bench/fastagi_bench.py drives it).

ANSWER, 4× SET VARIABLE, 2× GET VARIABLE, STREAM FILE, WAIT FOR DIGIT (the
other leg keeps sending DTMF), SET VARIABLE BENCH_DIGIT (the 5th SET: the
bench's success check reads it in the ``h`` extension), VERBOSE, HANGUP —
through the same session API, call record and metrics as a real call.
"""
from __future__ import annotations

from ..agi.session import AgiSession


async def bench_script(session: AgiSession) -> None:
    await session.answer()
    for index in range(4):
        await session.set_variable(f"BENCH_V{index}", f"value {index}")
    first = await session.get_variable("BENCH_V0")
    await session.get_variable("BENCH_V3")
    session.step("vars")
    await session.play("hotline/bench-beep")
    digit = await session.wait_for_digit(5000)
    session.step(f"digit:{digit}")
    await session.set_variable("BENCH_DIGIT", digit or "")
    await session.verbose(f"bench done {first}")
    await session.hangup()
