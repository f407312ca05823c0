"""The input normaliser (``sources.iterables.iterate``) and the queue behind it: every kind
of input as one async iterator, errors and closing passed through, back-pressure."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from typing import Any

import pytest

from streaming.errors import StreamError, StreamErrorCode
from streaming.queue import MessageQueue
from streaming.sources.iterables import iterate


async def collect(value: Any) -> list[Any]:
    async with aclosing(iterate(value)) as items:
        return [item async for item in items]


async def test_every_kind_of_input_becomes_its_items() -> None:
    async def agen() -> AsyncIterator[int]:
        yield 1
        yield 2

    async def awaitable() -> list[int]:
        return [3, 4]

    class Entered:
        async def __aenter__(self) -> list[int]:
            return [5]

        async def __aexit__(self, *exc: object) -> None:
            return None

    assert await collect(agen()) == [1, 2]
    assert await collect(awaitable()) == [3, 4]
    assert await collect(Entered()) == [5]
    assert await collect("text") == ["text"]
    assert await collect(b"raw") == [b"raw"]
    assert await collect(n for n in range(3)) == [0, 1, 2]
    assert await collect(range(2)) == [0, 1]
    with pytest.raises(TypeError, match="Cannot stream a int"):
        await collect(42)


async def test_a_sync_generator_error_arrives_after_its_items() -> None:
    def failing() -> Iterator[str]:
        yield "a"
        raise ValueError("boom")

    received: list[str] = []
    with pytest.raises(ValueError, match="boom"):
        async with aclosing(iterate(failing())) as items:
            async for item in items:
                received.append(item)
    assert received == ["a"]


async def test_closing_stops_a_sync_generator_in_its_thread() -> None:
    finished = threading.Event()

    def endless() -> Iterator[int]:
        n = 0
        try:
            while True:
                n += 1
                yield n
        finally:
            finished.set()

    async with aclosing(iterate(endless())) as items:
        async for item in items:
            if item == 3:
                break
    assert await asyncio.to_thread(finished.wait, 5)


async def test_a_blocked_producer_waits_for_room_and_abort_releases_it() -> None:
    queue: MessageQueue[int] = MessageQueue(high_water=2)
    outcome: list[object] = []

    def produce() -> None:
        try:
            for n in range(10):
                queue.put_blocking(n)
                outcome.append(n)
        except StreamError as error:
            outcome.append(error.code)

    thread = threading.Thread(target=produce)
    thread.start()
    time.sleep(0.2)
    assert outcome == [0]  # the second put filled the queue: it waits
    assert await queue.get(10) == [0, 1]
    await asyncio.sleep(0.2)
    assert outcome == [0, 1, 2]
    queue.abort()
    thread.join(5)
    assert outcome[-1] is StreamErrorCode.STREAM_CLOSED
    assert await queue.get(10) is None


async def test_get_times_out_empty_and_ends_after_close() -> None:
    queue: MessageQueue[str] = MessageQueue(high_water=4, max_queue=2)
    assert await queue.get(10, timeout=0.01) == []
    queue.put_nowait("a")
    queue.put_nowait("b")
    with pytest.raises(StreamError) as full:
        queue.put_nowait("c")
    assert full.value.code is StreamErrorCode.QUEUE_FULL
    queue.close("last")
    assert await queue.get(2) == ["a", "b"]
    assert await queue.get(2) == ["last"]
    assert await queue.get(2) is None
