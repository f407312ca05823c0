"""A connection's keep-alive clock: no timer per wait, nor one per connection.

``sent()`` notes when something last went out (a message, or the keep-alive itself);
nothing else happens per message. When the timer fires before ``seconds`` of silence
have passed, it moves to where the silence would reach them; once they have passed, it
calls ``on_silence`` (which sends a keep-alive, or has it sent) and comes back
``seconds`` later. Its timers fall due on a grid (a 64th of the period, at most 50 ms),
so the keep-alives of many quiet connections go out in the same turns of the event loop:
a few wake-ups of the process a second for all of them, not one or more per keep-alive.
So a connection is never silent for longer than ``seconds`` and one step of the grid
(give or take the event loop's delay), and a busy one costs one call per period.

The clocks due at one point of the grid share one timer of the event loop
(``_SharedTimers``): the loop's heap of timers holds one entry per point in use (a few
hundred at most), not one per connection. Ten thousand quiet connections made that heap
10,000 deep, and each push and pop compared timers some 15 times in Python: about a
third of what their keep-alives cost the process.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import weakref
from collections.abc import Callable

#: A timer that finds less than this share of the period left counts the silence as
#: reached (a keep-alive slightly early), so that the one it set off, going out a moment
#: after the timer, does not cost another timer callback.
EARLY_SHARE = 1 / 64
#: The grid its timers fall due on: a 64th of the period, at most ``MAX_GRID`` seconds
#: (a timer is at most that late). Longer would wake the process less often, but would
#: send more keep-alives in one turn, which a streaming reply then waits for.
GRID_SHARE = 1 / 64
MAX_GRID = 0.05

#: The context the shared timers run in: no connection's (``on_silence`` reads none).
_NO_CONTEXT = contextvars.Context()


class _SharedTimers:
    """One event loop's clocks by the point of the grid they fall due on, with one timer
    of the loop per point in use. It lives while it has clocks (``shared_timers``)."""

    __slots__ = ("loop", "points")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.points: dict[float, dict[KeepAlive, None]] = {}

    def add(self, clock: KeepAlive, point: float) -> None:
        clocks = self.points.get(point)
        if clocks is None:
            clocks = self.points[point] = {}
            self.loop.call_at(point, self._fire, point, context=_NO_CONTEXT)
        clocks[clock] = None

    def remove(self, clock: KeepAlive, point: float) -> None:
        """``clock`` stopped: its point's timer still fires, and finds one clock fewer."""
        clocks = self.points.get(point)
        if clocks is not None:
            clocks.pop(clock, None)

    def _fire(self, point: float) -> None:
        for clock in self.points.pop(point):
            try:
                clock.tick()
            except Exception as exc:  # one connection's failure must not stop the others'
                self.loop.call_exception_handler(
                    {"message": "A keep-alive callback failed", "exception": exc}
                )
        if not self.points:
            _shared.pop(self.loop, None)


_shared: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _SharedTimers] = (
    weakref.WeakKeyDictionary()
)


def shared_timers(loop: asyncio.AbstractEventLoop) -> _SharedTimers:
    """The shared timers of ``loop``, made on first use."""
    timers = _shared.get(loop)
    if timers is None:
        timers = _shared[loop] = _SharedTimers(loop)
    return timers


class KeepAlive:
    """Calls ``on_silence`` after ``seconds`` without ``sent()``, then every ``seconds``
    while the silence lasts (``None``: nothing to call; its owner looks at ``due``, and
    may set ``on_silence`` later). ``cancel()`` stops it. ``on_silence`` runs in no
    connection's context."""

    __slots__ = ("grid", "last", "loop", "on_silence", "point", "seconds", "timers")

    def __init__(self, seconds: float, on_silence: Callable[[], object] | None) -> None:
        self.seconds = seconds
        self.grid = min(seconds * GRID_SHARE, MAX_GRID)
        self.on_silence = on_silence
        self.loop = asyncio.get_running_loop()
        self.timers = shared_timers(self.loop)
        self.last = self.loop.time()
        #: The point of the grid it is due at next; ``None`` once cancelled.
        self.point: float | None = None
        self._at(self.last + seconds)

    def sent(self) -> None:
        """Something went out (a message or a keep-alive): the silence starts again."""
        self.last = self.loop.time()

    @property
    def due(self) -> bool:
        """Whether the silence has lasted ``seconds`` (a keep-alive should go out)."""
        return self.loop.time() - self.last >= self.seconds * (1 - EARLY_SHARE)

    def cancel(self) -> None:
        if self.point is not None:
            self.timers.remove(self, self.point)
            self.point = None

    def tick(self) -> None:
        """Its point of the grid came (``_SharedTimers``): move on, or call ``on_silence``."""
        if self.point is None:  # cancelled by an earlier clock's callback in the same turn
            return
        now = self.loop.time()
        reached = self.last + self.seconds
        if reached - now > self.seconds * EARLY_SHARE:
            self._at(reached)
            return
        self._at(now + self.seconds)
        if self.on_silence is not None:
            self.on_silence()

    def _at(self, when: float) -> None:
        """Due at the first grid point from ``when`` (every clock on the same grid
        computes the same point, so they share its timer and fire in one turn)."""
        grid = self.grid
        self.point = math.ceil(when / grid) * grid
        self.timers.add(self, self.point)
