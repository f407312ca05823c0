"""``KeepAlive``: a connection is never silent for longer than its period, whether the
silence follows a message or a keep-alive, and a busy connection gets none."""

from __future__ import annotations

import asyncio
import math
import time

from streaming.keepalive import MAX_GRID, KeepAlive, shared_timers


async def test_a_silence_after_a_message_gets_a_keepalive_every_period() -> None:
    calls: list[float] = []

    def silent() -> None:
        calls.append(asyncio.get_running_loop().time())
        keepalive.sent()  # the keep-alive goes out

    keepalive = KeepAlive(0.4, silent)
    await asyncio.sleep(0.05)
    keepalive.sent()  # a message, just after the clock started
    await asyncio.sleep(2.2)
    keepalive.cancel()
    # 2.2 s of silence: one each 0.4 s (5), not one each 0.8 s (2), which is what a
    # timer that only looked at "anything sent since my last turn?" gave (one more
    # allowed late on a loaded machine).
    assert len(calls) >= 3


async def test_a_busy_connection_gets_no_keepalive() -> None:
    calls: list[None] = []
    keepalive = KeepAlive(0.3, lambda: calls.append(None))
    for _ in range(24):
        await asyncio.sleep(0.05)
        keepalive.sent()
    keepalive.cancel()
    assert calls == []


async def test_without_a_callback_due_tells_the_silence() -> None:
    keepalive = KeepAlive(0.3, None)
    assert not keepalive.due
    await asyncio.sleep(0.35)
    assert keepalive.due
    keepalive.sent()
    assert not keepalive.due
    keepalive.cancel()


async def test_clocks_due_together_share_one_timer_of_the_loop() -> None:
    """Ten thousand quiet connections' timers made the loop's heap 10,000 deep (each push
    and pop comparing timers some 15 times in Python): the clocks due at one point of the
    grid share one timer, and a stopped clock is held by nothing of the loop's."""
    loop = asyncio.get_running_loop()
    before = len(loop._scheduled)  # type: ignore[attr-defined]
    calls: list[int] = []
    clocks = [KeepAlive(0.64, lambda i=i: calls.append(i)) for i in range(1_000)]
    # Started within a few ms of each other on a 10 ms grid: a few timers in all (a slow
    # machine may spread them over some more points), not one each.
    assert len(loop._scheduled) - before <= 10  # type: ignore[attr-defined]
    await asyncio.sleep(1.5)
    # Each was called (twice in 1.5 s of silence), all through those shared timers.
    assert set(calls) == set(range(1_000))
    assert len(loop._scheduled) - before <= 10  # type: ignore[attr-defined]
    for clock in clocks:
        clock.cancel()
    calls.clear()
    await asyncio.sleep(0.8)
    assert calls == []
    # No timer of the loop holds a stopped clock (nor anything its callback holds).
    assert not any(shared_timers(loop).points.values())


async def test_a_failing_callback_stops_no_other_clock() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _, context: reported.append(context))
    calls: list[str] = []

    def failing() -> None:
        raise RuntimeError("this connection's keep-alive failed")

    clocks = [KeepAlive(0.2, failing), KeepAlive(0.2, lambda: calls.append("other"))]
    try:
        await asyncio.sleep(0.7)
    finally:
        for clock in clocks:
            clock.cancel()
        loop.set_exception_handler(None)
    assert len(calls) >= 2  # the other one kept its keep-alives
    assert reported and isinstance(reported[0]["exception"], RuntimeError)


async def test_a_clock_stopped_by_another_s_callback_in_the_same_turn_is_not_called() -> None:
    calls: list[str] = []

    def first() -> None:
        calls.append("first")
        second.cancel()

    for _ in range(10):  # two clocks started across a step of the 1.6 ms grid: again
        clock = KeepAlive(0.1, first)
        second = KeepAlive(0.1, lambda: calls.append("second"))
        if clock.point == second.point:
            break
        clock.cancel()
        second.cancel()
    assert clock.point == second.point  # due in the same turn, first one first
    await asyncio.sleep(0.35)
    clock.cancel()
    assert "second" not in calls
    assert calls.count("first") >= 2


async def test_clocks_started_apart_fall_due_together() -> None:
    """Quiet connections' keep-alives go out in the same turns of the event loop (their
    timers on one grid), not each at its own moment: ten thousand quiet replies at 15 s
    woke the process 667 times a second."""
    clocks = []
    for _ in range(20):
        clocks.append(KeepAlive(0.64, None))
        time.sleep(0.0002)  # started apart, within a few ms
    points = [clock.point for clock in clocks]
    for clock in clocks:
        clock.cancel()
    grid = clocks[0].grid
    assert grid == 0.01
    slots: dict[int, set[float]] = {}
    for clock, when in zip(clocks, points, strict=True):
        assert when is not None
        due = clock.last + 0.64
        assert due <= when < due + grid  # never early, at most one grid step late
        slots.setdefault(math.ceil(due / grid), set()).add(when)
    # Every clock due in the same step of the grid has the very same timer time.
    assert all(len(whens) == 1 for whens in slots.values())
    assert len(slots) < len(clocks)


async def test_a_long_period_keeps_a_fine_grid() -> None:
    """The grid is at most ``MAX_GRID``: a burst of keep-alives in one turn stays short."""
    clocks = [KeepAlive(15.0, None), KeepAlive(0.32, None)]
    for clock in clocks:
        clock.cancel()
    assert [clock.grid for clock in clocks] == [MAX_GRID, 0.005]
