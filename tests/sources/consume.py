"""How the source tests consume a source: up to its error, or until cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from streaming import StreamError

from .upstream import WAIT_LIMIT, Upstream


async def collect(source: AsyncIterator[str]) -> list[str]:
    return [piece async for piece in source]


async def failure(source: AsyncIterator[str]) -> tuple[list[str], StreamError]:
    """The pieces that arrived before the source failed, and its error."""
    pieces: list[str] = []
    with pytest.raises(StreamError) as caught:
        async for piece in source:
            pieces.append(piece)
    return pieces, caught.value


async def cancel_after_first_piece(source: AsyncIterator[str], upstream: Upstream) -> None:
    """Consume ``source`` in a task, cancel the task once a piece arrived, and wait until
    ``upstream`` sees its client go away."""
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in source:
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), WAIT_LIMIT)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(upstream.client_gone.wait(), WAIT_LIMIT)
