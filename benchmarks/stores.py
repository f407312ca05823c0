"""Event store throughput and wake-up latency: ``MemoryStore`` against ``RedisStore``.

    .venv/bin/python -m benchmarks.stores [--quick]

Throughput: one writer appends N events (one by one, or in batches of 64 with
``append_many``) while a reader follows the stream from cursor 0; events/s from the first
append to the reader's last event. Latency: the writer appends one event carrying its
``perf_counter_ns()`` and waits for the reader to get it; the added latency is append to
reader wake-up. Redis runs in its own ``redis-server`` (tests/redis_server.py), written
and read through two ``RedisStore`` instances, as two server processes would.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable

from streaming.store.base import EventStore
from streaming.store.memory import MemoryStore
from streaming.store.redis import RedisStore
from tests.redis_server import redis_server

BATCH = 64


async def follow(store: EventStore, stream_id: str) -> int:
    """Read the stream to its end; return how many events came."""
    after = 0
    while events := await store.read(stream_id, after, timeout=10):
        after = events[-1].seq
    return after


async def throughput(writer: EventStore, reader: EventStore, n: int, batch: int) -> float:
    """Events per second through the store, written ``batch`` at a time."""
    stream_id = f"throughput-{batch}-{time.monotonic_ns()}"
    await writer.create(stream_id, owner="bench")
    start = time.perf_counter()
    following = asyncio.create_task(follow(reader, stream_id))
    for first in range(0, n, batch):
        if batch == 1:
            await writer.append(stream_id, {"n": first, "text": "hello world"})
        else:
            items = [{"n": i, "text": "hello world"} for i in range(first, first + batch)]
            await writer.append_many(stream_id, items)
    await writer.finish(stream_id)
    assert await following == n
    return n / (time.perf_counter() - start)


async def latency(writer: EventStore, reader: EventStore, samples: int) -> list[float]:
    """Microseconds from ``append()`` to the reader holding the event, one per sample."""
    stream_id = f"latency-{time.monotonic_ns()}"
    await writer.create(stream_id, owner="bench")
    got = asyncio.Queue[float]()

    async def read() -> None:
        after = 0
        while events := await reader.read(stream_id, after, timeout=10):
            now = time.perf_counter_ns()
            for event in events:
                got.put_nowait((now - event.data["t"]) / 1000)
            after = events[-1].seq

    reading = asyncio.create_task(read())
    await asyncio.sleep(0.05)
    results = []
    for _ in range(samples):
        await writer.append(stream_id, {"t": time.perf_counter_ns()})
        results.append(await got.get())
    await writer.finish(stream_id)
    await reading
    return results


async def measure(
    name: str, make: Callable[[], EventStore], n: int, samples: int
) -> tuple[str, float, float, float, float]:
    writer, reader = make(), make()
    try:
        await latency(writer, reader, 50)  # warm up connections and scripts
        single = await throughput(writer, reader, n, 1)
        batched = await throughput(writer, reader, n * 4, BATCH)
        waits = sorted(await latency(writer, reader, samples))
    finally:
        await writer.close()
        if reader is not writer:
            await reader.close()
    p99 = waits[min(len(waits) - 1, int(len(waits) * 0.99))]
    return name, single, batched, statistics.median(waits), p99


async def main(quick: bool) -> None:
    n, samples = (2_000, 300) if quick else (20_000, 2_000)
    memory = MemoryStore(max_events=n * 4)
    rows = [await measure("MemoryStore", lambda: memory, n, samples)]
    with redis_server() as server:
        rows.append(
            await measure(
                "RedisStore", lambda: RedisStore(url=server.url, max_events=n * 4), n, samples
            )
        )
    print(f"{n} events one by one, {n * 4} in batches of {BATCH}; {samples} latency samples\n")
    print(
        "| store | append+read (events/s) | append_many+read (events/s) "
        "| latency median (µs) | latency p99 (µs) |"
    )
    print("|---|---:|---:|---:|---:|")
    for name, single, batched, median, p99 in rows:
        print(f"| {name} | {single:,.0f} | {batched:,.0f} | {median:,.0f} | {p99:,.0f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer events, for a smoke run")
    asyncio.run(main(parser.parse_args().quick))
