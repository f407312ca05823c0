"""What only the memory store promises: it is shared by the loops and threads of a process."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from streaming.store.base import Quota, StoredEvent
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


async def test_finished_streams_leave_no_expiry_entries_behind() -> None:
    """A finished stream's first expiry (due ``ttl_active``, an hour, after it began) is
    not kept for that hour once the stream is gone: 1,000 replies left 1,000 of them."""
    store = MemoryStore(ttl_finished=0.01)
    for n in range(1000):
        await store.create(f"s{n}", owner="o")
        await store.finish(f"s{n}")
    await asyncio.sleep(0.05)
    store._next_sweep = 0.0
    store._sweep(time.monotonic())
    assert store._streams == {}
    assert store._expiries == []
    await store.close()


async def test_lapsed_quota_places_leave_memory_on_the_timer_after_the_last_stream() -> None:
    store = MemoryStore(ttl_finished=0.01)
    await store.create("s", owner="o")
    await store.finish("s")
    for n in range(100):
        assert await store.acquire_quotas(f"r{n}", [Quota(f"starts:{n}", 1, 1.5)]) is None
    deadline = time.monotonic() + 5
    while (store._streams or store._quotas) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert store._streams == {}
    assert store._quotas == {}  # nothing touched the store after the stream was dropped
    await store.close()


def lines_run(call: Callable[[], object]) -> int:
    """How many lines of Python ``call`` runs (a cost that grows with a loop shows here)."""
    count = 0

    def trace(frame: FrameType, event: str, arg: object) -> Any:
        nonlocal count
        count += event == "line"
        return trace

    sys.settrace(trace)
    try:
        call()
    finally:
        sys.settrace(None)
    return count


async def test_a_sweep_does_nothing_for_streams_not_due() -> None:
    """10,000 open replies cost a sweep nothing: it looks at the streams due only."""
    store = MemoryStore()
    for n in range(2000):
        await store.create(f"s{n}", owner="o")
    store._next_sweep = 0.0
    assert lines_run(lambda: store._sweep(time.monotonic())) < 50
    assert len(store._streams) == 2000
    await store.close()


async def test_a_stream_written_to_outlives_its_first_expiry() -> None:
    store = MemoryStore(ttl_active=100)
    await store.create("s", owner="o")
    await store.create("quiet", owner="o")
    created = time.monotonic()
    store._streams["s"].expires_at += 50  # as an append 50 s later moves it
    store._next_sweep = 0.0
    store._sweep(created + 120)  # past when both were first due
    assert list(store._streams) == ["s"]
    store._next_sweep = 0.0
    store._sweep(created + 160)
    assert store._streams == {}
    await store.close()


async def test_a_sweep_looks_only_at_the_quota_places_that_may_have_lapsed() -> None:
    """2,000 owners' places cost a sweep nothing until they may lapse; then it frees the
    keys nobody renewed, and keeps a renewed one until its place lapses."""
    store = MemoryStore()
    start = time.monotonic()
    for n in range(2000):
        assert await store.acquire_quotas(f"r{n}", [Quota(f"active:owner:{n}", 1, 60)]) is None
    store._next_sweep = 0.0
    assert lines_run(lambda: store._sweep(time.monotonic())) < 50
    assert len(store._quotas) == 2000
    store._quotas["active:owner:7"]["r7"] = start + 100  # as a renewal 40 s later moves it
    store._next_sweep = 0.0
    store._sweep(start + 61)
    assert list(store._quotas) == ["active:owner:7"]
    store._next_sweep = 0.0
    store._sweep(start + 101)
    assert store._quotas == {}
    assert store._quota_lapses == [] and store._quota_due == {}
    assert await store.acquire_quotas("again", [Quota("active:owner:7", 1, 60)]) is None
    await store.close()
