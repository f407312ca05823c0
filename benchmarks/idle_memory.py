"""Idle replies in process: what each open reply holds, and what it does while idle.

    .venv/bin/python -m benchmarks.idle_memory [--replies 2000] [--paths raw-http,view-mem]
                                               [--window 20] [--top 25] [--in-flight 20]
                                               [--redis [--process-leases]]
                                               [--profile] [--stalls]

The capacity app (``benchmarks.capacity_app``) is driven in this process through ASGI,
with no server: N replies whose model sends one token and then nothing. With tracemalloc
on, a snapshot after they all sent their token is compared with one before they started,
per file and line, so what a reply holds is seen where it was allocated (the
library's, Django's, Channels', asyncio's), apart from what a server adds per
connection (the same for every path). Then, over ``--window`` seconds with tracemalloc
off, the CPU the process uses while nothing streams, with the event loop's callbacks and
timers per reply: with no server, this is what the path itself does for idle replies.
``--stalls``: meanwhile, how late the event loop ran a task that sleeps 10 ms (what a
streaming reply in the same process would wait), and how long the garbage collector took.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import pstats
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import nullcontext, suppress
from typing import Any

from tests.redis_server import RedisServer

PATHS = {
    "raw-http": ("http", "/raw"),
    "view": ("http", "/view"),
    "raw-ws": ("ws", "/ws/raw/"),
    "ws": ("ws", "/ws/ours/"),
}

Message = dict[str, Any]


class Client:
    """One ASGI connection: its receive/send, and when its first token arrived."""

    def __init__(self, kind: str, path: str) -> None:
        self.kind = kind
        self.path = path
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.opened = asyncio.get_running_loop().create_future()
        self.messages = 0

    def scope(self, port: int) -> Message:
        common: Message = {
            "path": self.path,
            "raw_path": self.path.encode(),
            "root_path": "",
            "headers": [(b"host", b"127.0.0.1")],
            "client": ("127.0.0.1", port),
            "server": ("127.0.0.1", 8000),
            "asgi": {"version": "3.0"},
        }
        if self.kind == "http":
            return {
                **common,
                "type": "http",
                "http_version": "1.1",
                "method": "GET",
                "scheme": "http",
                "query_string": b"prompt=go&idle=1",
            }
        return {**common, "type": "websocket", "scheme": "ws", "query_string": b"",
                "subprotocols": []}  # fmt: skip

    async def receive(self) -> Message:
        return await self.inbox.get()

    async def send(self, message: Message) -> None:
        self.messages += 1
        kind = message["type"]
        if kind == "websocket.accept":
            self.inbox.put_nowait(
                {"type": "websocket.receive", "text": '{"prompt": "go", "idle": 1}'}
            )
        elif kind == "websocket.close" or message.get("status", 200) != 200:
            self._fail(message)
        elif b"x" in (message.get("body") or message.get("text", "").encode()):
            if not self.opened.done():
                self.opened.set_result(None)
        elif kind == "websocket.send" and "error" in message.get("text", ""):
            self._fail(message)

    def _fail(self, message: Message) -> None:
        if not self.opened.done():
            self.opened.set_exception(RuntimeError(f"refused: {message!r:.300}"))

    def start(self, application: Callable[..., Awaitable[None]], port: int) -> asyncio.Task[None]:
        if self.kind == "http":
            self.inbox.put_nowait({"type": "http.request", "body": b"", "more_body": False})
        else:
            self.inbox.put_nowait({"type": "websocket.connect"})
        return asyncio.create_task(application(self.scope(port), self.receive, self.send))


class LoopStalls:
    """While in use: how late the loop wakes a task that sleeps ``PROBE`` seconds, and
    how long each garbage collection takes (``gc.callbacks``)."""

    PROBE = 0.01

    def __init__(self) -> None:
        self.lateness: list[float] = []
        self.collections: list[tuple[int, float]] = []
        self._collecting = 0.0
        self._probe: asyncio.Task[None] | None = None

    def __enter__(self) -> LoopStalls:
        gc.callbacks.append(self._on_collection)
        self._probe = asyncio.create_task(self._measure())
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._on_collection)
        if self._probe is not None:
            self._probe.cancel()

    async def _measure(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asleep = loop.time()
            await asyncio.sleep(self.PROBE)
            self.lateness.append(loop.time() - asleep - self.PROBE)

    def _on_collection(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._collecting = time.perf_counter()
        else:
            self.collections.append((info["generation"], time.perf_counter() - self._collecting))

    def summary(self) -> str:
        late = sorted(self.lateness) or [0.0]
        slow = [(gen, took) for gen, took in self.collections if took > 0.005]
        longest = max(self.collections, key=lambda item: item[1], default=(0, 0.0))
        return (
            f"loop late: max {late[-1] * 1000:.1f} ms, p99 "
            f"{late[int(len(late) * 0.99)] * 1000:.1f} ms, p99.9 "
            f"{late[int(len(late) * 0.999)] * 1000:.1f} ms, {sum(x > 0.01 for x in late)} "
            f"times over 10 ms; collector: {len(self.collections)} runs "
            f"({sum(took for _, took in self.collections) * 1000:.0f} ms), {len(slow)} over "
            f"5 ms, longest {longest[1] * 1000:.1f} ms (generation {longest[0]})"
        )


class LoopCounter:
    """Counts the callbacks an event loop runs (``Handle._run``), timers included."""

    def __init__(self) -> None:
        self.count = 0
        self._original = asyncio.events.Handle._run

    def __enter__(self) -> LoopCounter:
        original, counter = self._original, self

        def counted(handle: asyncio.Handle) -> None:
            counter.count += 1
            original(handle)

        asyncio.events.Handle._run = counted  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.events.Handle._run = self._original  # type: ignore[method-assign]


async def measure(
    path_key: str,
    count: int,
    window: float,
    top: int,
    profile: bool,
    trace: bool,
    in_flight: int = 20,
    redis_pid: int | None = None,
    redis_url: str | None = None,
    stalls: bool = False,
) -> None:
    from benchmarks.capacity_asgi import application

    kind, route = PATHS[path_key]
    loop = asyncio.get_running_loop()
    warm = Client(kind, route)  # imports, first-use caches
    warm_task = warm.start(application, 1)
    await asyncio.wait_for(warm.opened, 10)
    await asyncio.sleep(0.5)
    gc.collect()
    if trace:
        tracemalloc.start(8)
        before = tracemalloc.take_snapshot()
    tasks_before = len(asyncio.all_tasks())
    timers_before = _timers(loop)
    clients = [Client(kind, route) for _ in range(count)]
    tasks = []
    # At most ``in_flight`` replies waiting for their first token at a time, as
    # ``benchmarks.capacity --idle`` opens them: faster, the Redis store's pool of
    # connections runs out and refuses some (503).
    # One deadline for all (a ``wait_for`` per reply left a cancelled timer per reply in
    # the loop's heap, which no server has: every timer pop then compared more).
    slots = asyncio.Semaphore(in_flight)
    with suppress(TimeoutError):
        async with asyncio.timeout(600):
            for i, client in enumerate(clients):
                await slots.acquire()
                client.opened.add_done_callback(lambda _: slots.release())
                tasks.append(client.start(application, 10_000 + i))
    done, waiting = await asyncio.wait([c.opened for c in clients], timeout=120)
    failed = [f for f in done if f.exception() is not None]
    if waiting or failed:
        reason = failed[0].exception() if failed else "no token within 120 s"
        raise RuntimeError(f"{len(waiting) + len(failed)} of {count} did not open: {reason}")
    await asyncio.sleep(1.0)
    tasks_now = len(asyncio.all_tasks()) - tasks_before
    timers_now = _timers(loop)
    timers_now.subtract(timers_before)
    print(f"\n## {path_key}: {count} replies, {tasks_now / count:.2f} tasks and "
          f"{timers_now.total() / count:.2f} timers per reply")  # fmt: skip
    for name, number in timers_now.most_common():
        if number:
            print(f"- timer {name}: {number / count:.2f} per reply")
    if trace:
        gc.collect()
        report(before, tracemalloc.take_snapshot(), count, top)
        tracemalloc.stop()
        del before
    gc.collect()
    with LoopCounter() as counter, LoopStalls() if stalls else nullcontext() as stalled:
        cpu, started = time.process_time(), time.perf_counter()
        server_cpu = _cpu_of(redis_pid)
        commands = command_stats(redis_url)
        await asyncio.sleep(window)
        used = time.process_time() - cpu
        elapsed = time.perf_counter() - started
        server_used = _cpu_of(redis_pid) - server_cpu
        commands_after = command_stats(redis_url)
    print(f"idle {elapsed:.0f} s: {used / elapsed * 100:.3f} % of a core, "
          f"{counter.count / elapsed / count:.3f} loop callbacks per reply per second")  # fmt: skip
    if stalled is not None:
        print(stalled.summary())
    if redis_pid is not None:
        print(f"redis-server meanwhile: {server_used / elapsed * 100:.3f} % of a core")
        print("| command (scripts' own calls counted too) | calls/s | µs/s in Redis |")
        print("|---|---:|---:|")
        spent = {
            name: (calls - commands.get(name, (0, 0))[0], usec - commands.get(name, (0, 0))[1])
            for name, (calls, usec) in commands_after.items()
        }
        for name, (calls, usec) in sorted(spent.items(), key=lambda item: -item[1][1]):
            if calls:
                print(f"| {name} | {calls / elapsed:.1f} | {usec / elapsed:.0f} |")
    if profile:
        profiler = cProfile.Profile()
        profiler.enable()
        await asyncio.sleep(window)
        profiler.disable()
        stats = pstats.Stats(profiler)
        stats.sort_stats("tottime").print_stats(top)
        # The library's own calls by cumulative time: what each periodic task costs.
        stats.sort_stats("cumulative").print_stats("/streaming/", top)
    for task in [*tasks, warm_task]:
        task.cancel()
    await asyncio.gather(*tasks, warm_task, return_exceptions=True)


def _timers(loop: asyncio.AbstractEventLoop) -> Counter[str]:
    """The loop's scheduled timers, counted by what each calls when it fires."""
    return Counter(
        getattr(handle._callback, "__qualname__", repr(handle._callback))
        for handle in loop._scheduled  # type: ignore[attr-defined]
    )


def _cpu_of(pid: int | None) -> float:
    """Seconds of CPU (user + system) process ``pid`` used so far; 0 without one."""
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def command_stats(url: str | None) -> dict[str, tuple[int, int]]:
    """Redis's ``INFO commandstats``: (calls, µs) per command so far; {} without Redis."""
    if url is None:
        return {}
    import redis

    client = redis.Redis.from_url(url)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return {
        name.removeprefix("cmdstat_"): (int(value["calls"]), int(value["usec"]))
        for name, value in stats.items()
    }


def report(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, count: int, top: int) -> None:
    """What the replies hold per reply, by file and line, then by package."""
    stats = after.compare_to(before, "lineno")
    total = sum(stat.size_diff for stat in stats)
    print(f"{total / count / 1024:.2f} KiB per reply (Python heap, traced)")
    print("| where | bytes per reply | objects per reply |")
    print("|---|---:|---:|")
    for stat in stats[:top]:
        frame = stat.traceback[0]
        where = f"{_short(frame.filename)}:{frame.lineno}"
        print(f"| {where} | {stat.size_diff / count:.0f} | {stat.count_diff / count:.2f} |")
    by_file: dict[str, int] = {}
    for stat in after.compare_to(before, "filename"):
        key = _area(stat.traceback[0].filename)
        by_file[key] = by_file.get(key, 0) + stat.size_diff
    print("| area | bytes per reply |")
    print("|---|---:|")
    for key, size in sorted(by_file.items(), key=lambda item: -item[1]):
        print(f"| {key} | {size / count:.0f} |")


def _short(filename: str) -> str:
    for marker in ("site-packages/", "lib/python3.", "/work/wt/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def _area(filename: str) -> str:
    short = _short(filename)
    if "/streaming/" in filename:
        return short.split("/", 1)[-1]
    return short.split("/", 1)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--replies", type=int, default=2000)
    parser.add_argument("--paths", default="raw-http,view,raw-ws,ws")
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--in-flight", type=int, default=20, help="replies waiting for their first token at once"
    )
    parser.add_argument("--redis", action="store_true", help="the Redis store (else memory)")
    parser.add_argument(
        "--process-leases", action="store_true", help="Redis with one lease per process"
    )
    parser.add_argument("--no-trace", action="store_true", help="the idle CPU only")
    parser.add_argument(
        "--profile", action="store_true", help="then where the idle CPU goes (cProfile)"
    )
    parser.add_argument(
        "--stalls", action="store_true", help="how late the loop runs, and the collector's time"
    )
    args = parser.parse_args()
    redis = None
    if args.redis:
        redis = RedisServer()
        redis.start()
        os.environ["STREAMING_BENCH_REDIS"] = redis.url
        if args.process_leases:
            os.environ["STREAMING_BENCH_PROCESS_LEASES"] = "1"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings_capacity")
    try:
        for key in args.paths.split(","):
            asyncio.run(
                measure(
                    key,
                    args.replies,
                    args.window,
                    args.top,
                    args.profile,
                    not args.no_trace,
                    args.in_flight,
                    None if redis is None or redis.process is None else redis.process.pid,
                    None if redis is None else redis.url,
                    args.stalls,
                )
            )
            sys.stdout.flush()
    finally:
        if redis is not None:
            redis.close()


if __name__ == "__main__":
    main()
