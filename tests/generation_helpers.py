"""In-process helpers for tests of ``Generations``: a paced model source and a reader."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from streaming.events import GenerationEvent
from streaming.generations import Generations


async def paced(count: int, delay: float, finished: list[str]) -> AsyncIterator[str]:
    """``count`` tokens ``"0 "``, ``"1 "`` … one per ``delay`` seconds; notes ``"finally"``
    in ``finished`` when the source is closed (so a test sees the model was stopped)."""
    try:
        for index in range(count):
            await asyncio.sleep(delay)
            yield f"{index} "
    finally:
        finished.append("finally")


async def everything(generations: Generations, generation_id: str) -> list[GenerationEvent]:
    """Every event of a generation owned by ``"me"``, followed to its end."""
    events: list[GenerationEvent] = []
    async for batch in generations.follow(generation_id, "me"):
        events += batch
    return events
