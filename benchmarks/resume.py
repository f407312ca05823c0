"""Resumable replies under random disconnects, and what the event store adds to latency.

    .venv/bin/python -m benchmarks.resume [--cycles 1000] [--quick]

Part 1 starts redis-server and two daphne processes sharing it, then runs replies of 200
timestamped chunks that clients drop after a random number of events and resume on a
random process with ``Last-Event-ID``, until ``--cycles`` disconnect/reconnect cycles are
done; it counts chunks lost and chunks received twice (both must be 0).
Part 2 measures how long a chunk takes from the model to the client: straight through
``sse_response``, and through a generation and the in-memory or the Redis store (with
``STORE_BATCH_MS`` at its default and at 0, to show what gathering the writes adds).
Part 3 (``--followers 100,1000``) measures followers of replies running in another process:
this script writes N replies to Redis as a process running them would (one token at a
time, 2,000 tokens a second in all), while N SSE clients follow them, resumed with
``Last-Event-ID``, on one daphne process: the Redis connections that process holds (the
most seen in ``CLIENT LIST`` during the run, and how many were in a blocking read), its CPU
per 1,000 tokens delivered, and redis-server's. It runs the same daphne from this tree
and from ``--before`` (a git ref, default ``main``, exported with ``git archive``; this
tree's ``benchmarks/`` are copied over it so that only the library differs), interleaved.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from redis import Redis

from benchmarks.capacity import CLIENT_CORE, Server, cpu_seconds, daphne, pin
from streaming.sse import SSEParser
from streaming.store.redis import RedisStore
from tests.redis_server import RedisServer
from tests.servers import ROOT, daphne_server

CHUNKS = 200
CONCURRENT = 20
LIMIT = 30.0


@contextmanager
def servers(
    count: int, redis_url: str | None, store_batch_ms: float | None = None
) -> Iterator[list[str]]:
    env = {"DJANGO_SETTINGS_MODULE": "benchmarks.settings_resume"}
    if redis_url:
        env["STREAMING_BENCH_REDIS"] = redis_url
    if store_batch_ms is not None:
        env["STREAMING_BENCH_STORE_BATCH_MS"] = str(store_batch_ms)
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


# ---------------------------------------------- part 3: followers in another process
#: Tokens a second the replies of part 3 carry in all, and the tokens of one run (at
#: least 30 per reply).
REMOTE_RATE = 2000
REMOTE_RUN_TOKENS = 6000


def tokens_per_reply(count: int) -> int:
    return max(30, REMOTE_RUN_TOKENS // count)


@contextmanager
def exported(ref: str) -> Iterator[Path]:
    """This repository's tree at ``ref`` in a temporary directory, with this tree's
    ``benchmarks/`` over it (the same benchmark routes, the library of ``ref``)."""
    directory = Path(tempfile.mkdtemp(prefix="resume-before-"))
    try:
        archive = subprocess.run(
            ["git", "archive", ref], cwd=ROOT, check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(directory)], input=archive, check=True)
        shutil.rmtree(directory / "benchmarks")
        shutil.copytree(ROOT / "benchmarks", directory / "benchmarks")
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def follower_server(redis_url: str, name: str, tree: Path) -> Iterator[Server]:
    """A daphne of the resume benchmark's project run from ``tree``, pinned to the server
    core, its Redis connections named ``name``."""
    env = {
        "DJANGO_SETTINGS_MODULE": "benchmarks.settings_resume",
        "STREAMING_BENCH_REDIS": f"{redis_url}?client_name={name}",
        "PYTHONPATH": str(tree),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    with daphne(env, tree, "project.asgi:application") as server:
        yield server


class Follower(asyncio.Protocol):
    """One SSE client resuming a reply: counts the tokens (``x``) of its chunks."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.body = b""
        self.tokens = 0
        self.transport: asyncio.Transport | None = None
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.body += data
        if b'{"done":true}' in data or b'"code"' in data:
            self.tokens = self.body.partition(b"\r\n\r\n")[2].count(b"x")
            if not self.ended.done():
                self.ended.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ended.done():
            self.ended.set_result(None)


@dataclass
class RemoteRun:
    tokens: int = 0
    cpu: float = 0.0
    redis_cpu: float = 0.0
    connections: int = 0
    blocked: int = 0
    failed: list[str] = field(default_factory=list)


def named_clients(admin: Redis, name: str) -> tuple[int, int]:
    """(connections named ``name``, how many of them are in a blocking command)."""
    held = [c for c in admin.client_list() if c.get("name") == name]
    return len(held), sum("b" in c["flags"] for c in held)


async def remote_run(
    server: Server, name: str, redis: RedisServer, writer: RedisStore, count: int
) -> RemoteRun:
    """``count`` replies written here, followed by ``count`` clients of ``server``."""
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        answer = await client.get("/stamps/owner")
        cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    owner = answer.json()["owner"]
    ids = [uuid.uuid4().hex for _ in range(count)]
    for generation_id in ids:
        await writer.create(generation_id, owner=owner, lease=600)
    followers: list[Follower] = []
    for start in range(0, count, 50):  # small batches: the listen backlog never overflows
        batch = await asyncio.gather(
            *(
                loop.create_connection(
                    lambda key=key: Follower(
                        f"GET /stamps/stored HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        f"Cookie: {cookie}\r\nLast-Event-ID: {key}:0\r\n"
                        "Connection: close\r\n\r\n".encode()
                    ),
                    "127.0.0.1",
                    server.port,
                )
                for key in ids[start : start + 50]
            )
        )
        followers += [protocol for _, protocol in batch]
    await asyncio.sleep(2.0)  # every follower is waiting for its first token
    run = RemoteRun()
    admin = Redis.from_url(redis.url)
    assert redis.process is not None
    cpu_before, redis_before = cpu_seconds(server.pid), cpu_seconds(redis.process.pid)
    # One token for each reply every count / REMOTE_RATE seconds, in groups every 5 ms.
    groups = [ids[i : i + max(1, count // 100)] for i in range(0, count, max(1, count // 100))]
    tick = count / REMOTE_RATE / len(groups)
    started = loop.time()
    tokens = tokens_per_reply(count)
    for index in range(tokens * len(groups)):
        group = groups[index % len(groups)]
        await writer.append_batches({key: [{"type": "chunk", "text": "x"}] for key in group})
        if index % 20 == 0:
            held, blocked = named_clients(admin, name)
            run.connections, run.blocked = max(run.connections, held), max(run.blocked, blocked)
        await asyncio.sleep(max(0.0, started + (index + 1) * tick - loop.time()))
    await writer.append_batches({key: [{"type": "complete"}] for key in ids})
    for key in ids:
        await writer.finish(key)
    await asyncio.wait([f.ended for f in followers], timeout=30)
    run.cpu = cpu_seconds(server.pid) - cpu_before
    run.redis_cpu = cpu_seconds(redis.process.pid) - redis_before
    admin.close()
    for follower in followers:
        run.tokens += follower.tokens
        if follower.tokens != tokens:
            run.failed.append(follower.body[-200:].decode(errors="replace"))
        if follower.transport is not None:
            follower.transport.close()
    return run


def remote_followers(
    redis: RedisServer, levels: list[int], before: str | None, rounds: int
) -> list[str]:
    """Part 3, as the lines of a table: the library of ``before`` and this tree,
    interleaved, ``rounds`` times (the median CPU, the most connections); this client
    runs on the client core meanwhile."""
    affinity = os.sched_getaffinity(0)
    pin(os.getpid(), CLIENT_CORE)
    with ExitStack() as stack:
        stack.callback(os.sched_setaffinity, 0, affinity)
        trees = {"after": ROOT}
        if before:
            trees = {"before": stack.enter_context(exported(before)), **trees}
        servers = {
            side: stack.enter_context(follower_server(redis.url, side, tree))
            for side, tree in trees.items()
        }
        for side, server in servers.items():
            module = httpx.get(f"http://127.0.0.1:{server.port}/stamps/owner").json()["module"]
            assert module.startswith(str(trees[side])), (side, module)
        runs: dict[tuple[str, int], list[RemoteRun]] = {}

        async def measure() -> None:
            writer = RedisStore(url=redis.url, max_connections=10)
            try:
                for count in levels:
                    for _ in range(rounds):
                        for side, server in servers.items():
                            run = await remote_run(server, side, redis, writer, count)
                            runs.setdefault((side, count), []).append(run)
                            print(f"  {side}, N={count}: {run}"[:300], flush=True)
                            await asyncio.sleep(2.0)
            finally:
                await writer.close()

        asyncio.run(measure())
    lines = [
        f"Part 3: N followers on one daphne process of replies another process writes "
        f"({REMOTE_RATE:,} tokens/s in all; median of {rounds} runs of at least "
        f"{REMOTE_RUN_TOKENS:,} tokens, interleaved)",
        "| code | N | Redis connections held | in a blocking read | daphne CPU s / 1,000 tokens "
        "| redis-server CPU s / 1,000 tokens | followers that did not get every token |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for (side, count), done in runs.items():
        label = f"`{before}`" if side == "before" else "this tree"
        per_k = statistics.median(r.cpu / max(r.tokens, 1) * 1000 for r in done)
        redis_k = statistics.median(r.redis_cpu / max(r.tokens, 1) * 1000 for r in done)
        held = max(r.connections for r in done)
        blocked = max(r.blocked for r in done)
        failed = sum(len(r.failed) for r in done)
        lines.append(
            f"| {label} | {count:,} | {held} | {blocked} | {per_k:.3f} | {redis_k:.3f} "
            f"| {failed} of {count * len(done):,} |"
        )
    return lines


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cycles", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="100 cycles, fewer samples")
    parser.add_argument(
        "--followers", default="100,1000", help="part 3: numbers of remote followers ('' skips)"
    )
    parser.add_argument("--before", default="main", help="part 3: the git ref to compare with")
    parser.add_argument("--only-followers", action="store_true", help="part 3 alone")
    parser.add_argument("--rounds", type=int, default=3, help="part 3: runs of each")
    args = parser.parse_args()
    target = 100 if args.quick else args.cycles
    samples = 5 if args.quick else 20
    levels = [int(n) for n in args.followers.split(",") if n]
    redis = RedisServer()
    redis.start()
    remote: list[str] = []
    if args.only_followers:
        try:
            print("\n".join(remote_followers(redis, levels, args.before or None, args.rounds)))
        finally:
            redis.close()
        return
    try:
        with servers(2, redis.url) as bases:
            started = time.perf_counter()
            cycles, replies, lost, duplicated = asyncio.run(disconnect_cycles(bases, target, 7))
            elapsed = time.perf_counter() - started
            redis_direct = asyncio.run(chunk_latencies(bases[0], "direct", samples))
            redis_stored = asyncio.run(chunk_latencies(bases[0], "stored", samples))
        with servers(1, redis.url, store_batch_ms=0) as (base,):
            unbatched = asyncio.run(chunk_latencies(base, "stored", samples))
        with servers(1, None) as (base,):
            memory_direct = asyncio.run(chunk_latencies(base, "direct", samples))
            memory_stored = asyncio.run(chunk_latencies(base, "stored", samples))
        if levels:
            remote = remote_followers(redis, levels, args.before or None, args.rounds)
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
        ("generation + RedisStore, `STORE_BATCH_MS` = 0", unbatched, redis_direct),
    ]
    for label, values, baseline in rows:
        median = statistics.median(values)
        added = median - statistics.median(baseline)
        print(f"| {label} | {median:.2f} | {percentile(values, 0.99):.2f} | {added:+.2f} |")
    if remote:
        print()
        print("\n".join(remote))


if __name__ == "__main__":
    main()
