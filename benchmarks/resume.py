"""Resumable replies under random disconnects, and what the event store adds to latency.

    .venv/bin/python -m benchmarks.resume [--cycles 1000] [--quick]

Part 1 starts redis-server and two daphne processes sharing it, then runs replies of 200
timestamped chunks that clients drop after a random number of events and resume on a
random process with ``Last-Event-ID``, until ``--cycles`` disconnect/reconnect cycles are
done; it counts chunks lost and chunks received twice (both must be 0).
Part 2 measures how long a chunk takes from the model to the client: straight through
``sse_response``, and through a generation and the in-memory or the Redis store.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import httpx

from streaming.sse import SSEParser
from tests.redis_server import RedisServer
from tests.servers import daphne_server

CHUNKS = 200
CONCURRENT = 20
LIMIT = 30.0


@contextmanager
def servers(count: int, redis_url: str | None) -> Iterator[list[str]]:
    env = {"DJANGO_SETTINGS_MODULE": "benchmarks.settings_resume"}
    if redis_url:
        env["STREAMING_BENCH_REDIS"] = redis_url
    with ExitStack() as stack:
        yield [
            stack.enter_context(daphne_server("project.asgi:application", env=env))
            for _ in range(count)
        ]


def stamps_in(data: str) -> list[str]:
    """The timestamps a ``{"chunk": "<t>;<t>;"}`` message carries."""
    return [stamp for stamp in json.loads(data)["chunk"].split(";") if stamp]


async def read_events(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], stop_after: int | None
) -> tuple[list[str], str, bool]:
    """Chunk texts read (at most ``stop_after`` events), the last event id, and whether
    the reply ended."""
    texts: list[str] = []
    last_id = headers.get("Last-Event-ID", "")
    parser = SSEParser()
    async with client.stream("GET", url, headers=headers) as response:
        if response.status_code == 204:
            return texts, last_id, True
        assert response.status_code == 200, response.status_code
        async for raw in response.aiter_raw():
            for event in parser.feed(raw):
                last_id = event.id or last_id
                if '"chunk"' in event.data:
                    texts.append(event.data)
                elif '"done"' in event.data:
                    return texts, last_id, True
                else:
                    raise AssertionError(f"unexpected event {event.data!r}")
                if stop_after is not None and len(texts) >= stop_after:
                    return texts, last_id, False
    return texts, last_id, False


async def interrupted_reply(bases: list[str], rng: random.Random) -> tuple[int, int, int]:
    """One reply, dropped and resumed at random; return (cycles, lost, duplicated)."""
    async with httpx.AsyncClient(timeout=LIMIT) as client:
        await client.get(f"{bases[0]}/")  # the session that owns the reply
        url = f"/stamps/stored?prompt=go&n={CHUNKS}&delay=0.002"
        headers: dict[str, str] = {}
        received: list[str] = []
        cycles = 0
        while True:
            base = rng.choice(bases)
            texts, last_id, ended = await read_events(
                client, base + url, headers, rng.randint(1, 40)
            )
            received += texts
            if ended:
                break
            cycles += 1
            headers = {"Last-Event-ID": last_id}
    stamps = [
        s for text in received for s in text.split('"chunk":"')[1].split('"')[0].split(";") if s
    ]
    unique = set(stamps)
    return cycles, CHUNKS - len(unique), len(stamps) - len(unique)


async def disconnect_cycles(bases: list[str], target: int, seed: int) -> tuple[int, int, int, int]:
    rng = random.Random(seed)
    totals = [0, 0, 0, 0]  # cycles, replies, lost, duplicated

    async def worker() -> None:
        while totals[0] < target:
            cycles, lost, duplicated = await interrupted_reply(bases, random.Random(rng.random()))
            totals[0] += cycles
            totals[1] += 1
            totals[2] += lost
            totals[3] += duplicated

    await asyncio.gather(*(worker() for _ in range(CONCURRENT)))
    cycles, replies, lost, duplicated = totals
    return cycles, replies, lost, duplicated


async def chunk_latencies(base: str, route: str, replies: int) -> list[float]:
    """Milliseconds from each chunk's timestamp to its arrival, over ``replies`` replies."""
    latencies: list[float] = []
    async with httpx.AsyncClient(timeout=LIMIT) as client:
        await client.get(f"{base}/")
        for _ in range(replies):
            parser = SSEParser()
            url = f"{base}/stamps/{route}?prompt=go&n=100&delay=0.005"
            async with client.stream("GET", url) as response:
                async for raw in response.aiter_raw():
                    now = time.time()
                    for event in parser.feed(raw):
                        if '"chunk"' in event.data:
                            latencies += [(now - float(s)) * 1000 for s in stamps_in(event.data)]
    return latencies


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cycles", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="100 cycles, fewer samples")
    args = parser.parse_args()
    target = 100 if args.quick else args.cycles
    samples = 5 if args.quick else 20
    redis = RedisServer()
    redis.start()
    try:
        with servers(2, redis.url) as bases:
            started = time.perf_counter()
            cycles, replies, lost, duplicated = asyncio.run(disconnect_cycles(bases, target, 7))
            elapsed = time.perf_counter() - started
            redis_direct = asyncio.run(chunk_latencies(bases[0], "direct", samples))
            redis_stored = asyncio.run(chunk_latencies(bases[0], "stored", samples))
        with servers(1, None) as (base,):
            memory_direct = asyncio.run(chunk_latencies(base, "direct", samples))
            memory_stored = asyncio.run(chunk_latencies(base, "stored", samples))
    finally:
        redis.close()
    print(f"Part 1: two daphne processes sharing redis-server, {CONCURRENT} clients at once")
    print("| disconnect/reconnect cycles | replies | chunks lost | chunks twice | seconds |")
    print("|---:|---:|---:|---:|---:|")
    print(f"| {cycles:,} | {replies:,} | {lost} | {duplicated} | {elapsed:.1f} |")
    print()
    print(f"Part 2: ms from model to client per chunk, {samples} replies x 100 chunks, 5 ms apart")
    print("| path | median | p99 | added median vs direct |")
    print("|---|---:|---:|---:|")
    rows = [
        ("direct `sse_response`, server with the memory store", memory_direct, memory_direct),
        ("generation + MemoryStore", memory_stored, memory_direct),
        ("direct `sse_response`, server with the Redis store", redis_direct, redis_direct),
        ("generation + RedisStore", redis_stored, redis_direct),
    ]
    for label, values, baseline in rows:
        median = statistics.median(values)
        added = median - statistics.median(baseline)
        print(f"| {label} | {median:.2f} | {percentile(values, 0.99):.2f} | {added:+.2f} |")


if __name__ == "__main__":
    main()
