"""What only the memory store promises: it is shared by the loops and threads of a process."""

from __future__ import annotations

import asyncio
import threading
import time

from streaming.store.base import StoredEvent
from streaming.store.memory import MemoryStore


async def test_a_reader_on_another_loop_wakes_on_append() -> None:
    store = MemoryStore()
    await store.create("s", owner="o")
    waiting = threading.Event()

    async def read_elsewhere() -> list[StoredEvent]:
        task = asyncio.create_task(store.read("s", 0, timeout=5))
        await asyncio.sleep(0.05)
        waiting.set()
        return await task

    reader = asyncio.create_task(asyncio.to_thread(asyncio.run, read_elsewhere()))
    assert await asyncio.to_thread(waiting.wait, 5)
    await store.append("s", {"n": 1})
    assert await asyncio.wait_for(reader, 5) == [StoredEvent(1, {"n": 1})]


async def test_memory_stays_bounded_by_max_events() -> None:
    store = MemoryStore(max_events=100)
    await store.create("s", owner="o")
    for n in range(1, 1001):
        await store.append("s", {"n": n})
    stream = store._streams["s"]
    assert len(stream.events) < 2 * 100
    assert [e.seq for e in await store.read("s", 900, timeout=0)][:3] == [901, 902, 903]


async def test_expired_streams_are_swept_on_create() -> None:
    store = MemoryStore(ttl_finished=0.01)
    for n in range(50):
        await store.create(f"s{n}", owner="o")
        await store.finish(f"s{n}")
    await asyncio.sleep(0.05)
    store._next_sweep = 0.0  # as if a second had passed since the last sweep
    await store.create("new", owner="o")
    assert list(store._streams) == ["new"]


async def test_expired_streams_leave_memory_on_a_timer() -> None:
    store = MemoryStore(ttl_finished=0.05)
    for n in range(20):
        await store.create(f"s{n}", owner="o")
        await store.finish(f"s{n}")
    deadline = time.monotonic() + 5
    while store._streams and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert store._streams == {}  # no new stream was created, no stream was read
    await store.close()
