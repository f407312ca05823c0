"""A connection's keep-alive clock: one timer per connection, not one per wait.

``sent()`` notes when something last went out (a message, or the keep-alive itself);
nothing else happens per message. When the timer fires before ``seconds`` of silence
have passed, it moves to where the silence would reach them; once they have passed, it
calls ``on_silence`` (which sends a keep-alive, or has it sent) and comes back
``seconds`` later. Its timers fall due on a grid (a 64th of the period, at most 50 ms),
so the keep-alives of many quiet connections go out in the same turns of the event loop:
a few wake-ups of the process a second for all of them, not one or more per keep-alive.
So a connection is never silent for longer than ``seconds`` and one step of the grid
(give or take the event loop's delay), and a busy one costs one timer callback per period.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
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


def _stopped() -> None:
    """A cancelled clock's callback: nothing to do."""


class KeepAlive:
    """Calls ``on_silence`` after ``seconds`` without ``sent()``, then every ``seconds``
    while the silence lasts (``None``: nothing to call; its owner looks at ``due``, and
    may set ``on_silence`` later). ``cancel()`` stops it."""

    __slots__ = ("context", "grid", "last", "loop", "on_silence", "seconds", "tick", "timer")

    def __init__(self, seconds: float, on_silence: Callable[[], object] | None) -> None:
        self.seconds = seconds
        self.grid = min(seconds * GRID_SHARE, MAX_GRID)
        self.on_silence = on_silence
        self.loop = asyncio.get_running_loop()
        self.last = self.loop.time()
        # One bound method and one context for all its timers, not a new pair per timer:
        # each timer outlives many collections, and ten thousand quiet connections'
        # timers made young objects faster than the collector counted them.
        self.tick = self._tick
        self.context = contextvars.copy_context()
        self.timer = self._at(self.last + seconds)

    def sent(self) -> None:
        """Something went out (a message or a keep-alive): the silence starts again."""
        self.last = self.loop.time()

    @property
    def due(self) -> bool:
        """Whether the silence has lasted ``seconds`` (a keep-alive should go out)."""
        return self.loop.time() - self.last >= self.seconds * (1 - EARLY_SHARE)

    def cancel(self) -> None:
        self.timer.cancel()
        self.tick = _stopped  # no cycle through its bound method: freed once dropped

    def _tick(self) -> None:
        now = self.loop.time()
        reached = self.last + self.seconds
        if reached - now > self.seconds * EARLY_SHARE:
            self.timer = self._at(reached)
            return
        self.timer = self._at(now + self.seconds)
        if self.on_silence is not None:
            self.on_silence()

    def _at(self, when: float) -> asyncio.TimerHandle:
        """A timer at the first grid point from ``when`` (every clock on the same grid
        computes the same point, so their timers fire in one turn)."""
        grid = self.grid
        return self.loop.call_at(math.ceil(when / grid) * grid, self.tick, context=self.context)
