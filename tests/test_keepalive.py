"""``KeepAlive``: a connection is never silent for longer than its period, whether the
silence follows a message or a keep-alive, and a busy connection gets none."""

from __future__ import annotations

import asyncio
import gc
import math
import time

from streaming.keepalive import MAX_GRID, KeepAlive


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


async def test_its_timers_share_one_callback_and_one_context() -> None:
    """A timer per period, not a bound method and a context copy per timer too: with many
    quiet connections those outlived the collector's count of young objects, and its rare
    collections then took tens of milliseconds."""
    seen: list[tuple[object, object]] = []

    def silent() -> None:
        timer = keepalive.timer
        seen.append((timer._callback, timer._context))  # type: ignore[attr-defined]

    keepalive = KeepAlive(0.05, silent)
    tick = keepalive.tick
    await asyncio.sleep(0.3)
    keepalive.cancel()
    assert len(seen) >= 3
    assert {id(callback) for callback, _ in seen} == {id(tick)}
    assert {id(context) for _, context in seen} == {id(keepalive.context)}
    # Cancelled, it holds no bound method of its own: no cycle keeps it for the collector.
    assert all(getattr(r, "__self__", None) is not keepalive for r in gc.get_referents(keepalive))


async def test_clocks_started_apart_fall_due_together() -> None:
    """Quiet connections' keep-alives go out in the same turns of the event loop (their
    timers on one grid), not each at its own moment: ten thousand quiet replies at 15 s
    woke the process 667 times a second."""
    clocks = []
    for _ in range(20):
        clocks.append(KeepAlive(0.64, None))
        time.sleep(0.0002)  # started apart, within a few ms
    for clock in clocks:
        clock.cancel()
    grid = clocks[0].grid
    assert grid == 0.01
    slots: dict[int, set[float]] = {}
    for clock in clocks:
        due = clock.last + 0.64
        when = clock.timer.when()
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
