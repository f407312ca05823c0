"""Paced tokens in process: the CPU each path spends per token, without a server.

    .venv/bin/python -m benchmarks.per_token [--replies 100] [--tokens 200] [--gap 20]
                                             [--paths raw-http,view,raw-ws,ws] [--rounds 3]
                                             [--redis] [--before CHECKOUT] [--profile PATH]
                                             [--calls] [--fast] [--reasoning]

The capacity app (``benchmarks.capacity_app``) is driven through ASGI in a fresh process
per run (pinned to one core), with no server: N replies of T tokens, each sent by its
model G ms after the last (the replies start spread over one gap, as independent clients
would). ``--paths`` may also name ``raw-merged``: the raw response merging its tokens
every 16 ms as a hand-written view would (reading each token). It prints the process's CPU
(``time.process_time``) per token, over the whole run (request, reply and end), median
of the rounds, paths interleaved, and the ratio to the raw path of the same transport in
the same run. With no server, the difference to raw is
what the library's path costs per token. ``--before DIR``: the library paths of another
checkout run too, in the same rounds (its ``streaming`` package under this benchmark
app). ``--profile PATH``: one run of that path under cProfile, the top functions by own
time. ``--calls``: instead of the CPU, the Python and C function calls per token (from
``sys.setprofile``; counts, so they do not move with the machine's load). ``--fast``: a
500 tokens/s model on its own clock (1,000 tokens due 2 ms apart, those past due ready at
once, as from a socket's buffer), with ``FLUSH_INTERVAL_MS`` = 16 on the library paths.
``--reasoning``: the library paths' model sends its tokens as a reasoning model's
reasoning (``Reasoning`` pieces, ``reasoning`` events), then a short answer; the raw paths
stay the text baseline. Each path also prints the messages its client got per token and
the events the reply stored per token (its last event's seq; library paths only).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import random
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from benchmarks.capacity import pin, this_app
from tests.redis_server import RedisServer
from tests.servers import ROOT

PATHS = {
    "raw-http": ("http", "/raw", "raw async StreamingHttpResponse"),
    "raw-merged": ("http", "/raw-merged", "raw, merged every 16 ms"),
    "view": ("http", "/view", "SSEView + ResponseStreamExtractor"),
    "raw-ws": ("ws", "/ws/raw/", "raw Channels consumer"),
    "ws": ("ws", "/ws/ours/", "StreamConsumer + ResponseStreamExtractor"),
}
Message = dict[str, Any]


class Client:
    """One ASGI connection that reads a paced reply to its end, counting its tokens."""

    def __init__(
        self, kind: str, path: str, tokens: int, gap: float, clock: bool, reasoning: bool = False
    ) -> None:
        self.kind, self.path = kind, path
        self.tokens, self.gap, self.clock = tokens, gap, int(clock)
        self.reasoning = int(reasoning)
        # Reasoning events say "text" around their tokens: count whole ones (never split).
        self.token = b"xyz" if reasoning else b"x"
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.done = asyncio.get_running_loop().create_future()
        self.seen = 0
        #: Messages with content (body parts, frames), and the last two (the events
        #: stored are read from their ids once the reply ended).
        self.messages = 0
        self.last: Any = b""
        self.before_last: Any = b""

    def scope(self) -> Message:
        common: Message = {
            "path": self.path,
            "raw_path": self.path.encode(),
            "root_path": "",
            "headers": [(b"host", b"127.0.0.1")],
            "client": ("127.0.0.1", 10_000),
            "server": ("127.0.0.1", 8000),
            "asgi": {"version": "3.0"},
        }
        if self.kind == "http":
            query = (f"prompt=go&n={self.tokens}&gap={self.gap}&clock={self.clock}"
                     f"&reasoning={self.reasoning}").encode()  # fmt: skip
            return {**common, "type": "http", "http_version": "1.1", "method": "GET",
                    "scheme": "http", "query_string": query}  # fmt: skip
        return {**common, "type": "websocket", "scheme": "ws", "query_string": b"",
                "subprotocols": []}  # fmt: skip

    async def receive(self) -> Message:
        return await self.inbox.get()

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "websocket.accept":
            prompt = {"prompt": "go", "n": self.tokens, "gap": self.gap, "clock": self.clock,
                      "reasoning": self.reasoning}  # fmt: skip
            self.inbox.put_nowait({"type": "websocket.receive", "text": json.dumps(prompt)})
        elif kind == "http.response.body":
            body = message.get("body", b"")
            if body:
                self.messages += 1
                self.last = body
            self.seen += body.count(self.token)
            if not message.get("more_body", False):
                self._end()
        elif kind == "websocket.send":
            text = message.get("text", "")
            self.messages += 1
            self.before_last, self.last = self.last, text
            if '"complete"' in text:
                self._end()
                self.inbox.put_nowait({"type": "websocket.disconnect", "code": 1000})
            elif '"error"' in text:
                self._end(RuntimeError(text[:300]))
            else:
                self.seen += text.count(self.token.decode())
        elif kind == "websocket.close" or message.get("status", 200) != 200:
            self._end(RuntimeError(f"refused: {message!r:.300}"))

    def events(self) -> int:
        """The events the reply stored (its terminal event's seq), 0 on a raw path."""
        if self.kind == "http":  # the last message is the terminal event, "id: <gen>:<seq>"
            found = re.findall(rb"id: [^:\r\n]*:(\d+)", self.last)
            return int(found[-1]) if found else 0
        # The complete frame has no seq: the one before it does.
        found = re.findall(r'"seq": ?(\d+)', self.before_last)
        return int(found[-1]) + 1 if found else 0

    def _end(self, error: Exception | None = None) -> None:
        if self.done.done():
            return
        if error is None and self.seen < self.tokens:
            error = RuntimeError(f"{self.seen} of {self.tokens} tokens")
        if error is None:
            self.done.set_result(None)
        else:
            self.done.set_exception(error)

    def start(self, application: Callable[..., Awaitable[None]]) -> asyncio.Task[None]:
        first = {"type": "http.request", "body": b"", "more_body": False}
        self.inbox.put_nowait(first if self.kind == "http" else {"type": "websocket.connect"})
        return asyncio.create_task(application(self.scope(), self.receive, self.send))


async def run_path(
    key: str,
    replies: int,
    tokens: int,
    gap: float,
    profile: bool,
    calls: bool = False,
    clock: bool = False,
    reasoning: bool = False,
) -> float:
    """CPU seconds per token of ``replies`` paced replies on ``key`` (``calls``: Python
    function calls per token, and the C calls are printed; ``clock``: the model's tokens
    due on its own clock; ``reasoning``: sent as reasoning on the library paths). The
    messages and events per token are printed."""
    from benchmarks.capacity_asgi import application

    kind, route, _ = PATHS[key]
    clients: list[Client] = []

    async def one(delay: float) -> None:
        await asyncio.sleep(delay)
        client = Client(kind, route, tokens, gap, clock, reasoning and not key.startswith("raw"))
        clients.append(client)
        task = client.start(application)
        try:
            await asyncio.wait_for(client.done, tokens * gap / 1000 * 5 + 30)
        finally:
            await asyncio.wait({task}, timeout=5)
            task.cancel()

    await one(0)  # imports, first-use caches
    await asyncio.sleep(0.2)
    clients.clear()
    profiler = cProfile.Profile() if profile else None
    counted = {"call": 0, "c_call": 0}

    def count(frame: Any, event: str, arg: Any) -> None:
        if event in counted:
            counted[event] += 1

    cpu = time.process_time()
    if profiler is not None:
        profiler.enable()
    if calls:
        sys.setprofile(count)
    await asyncio.gather(*(one(random.uniform(0, gap / 1000)) for _ in range(replies)))
    sys.setprofile(None)
    if profiler is not None:
        profiler.disable()
    total = replies * tokens
    print(json.dumps({"messages": sum(c.messages for c in clients) / total,
                      "events": sum(c.events() for c in clients) / total}))  # fmt: skip
    if calls:
        print(json.dumps({"c_calls": counted["c_call"] / (replies * tokens)}))
        return counted["call"] / (replies * tokens)
    used = time.process_time() - cpu
    if profiler is not None:
        stats = pstats.Stats(profiler)
        stats.sort_stats("tottime").print_stats(40)
        if os.environ.get("BENCH_PROFILE_DUMP"):
            stats.dump_stats(os.environ["BENCH_PROFILE_DUMP"])
    return used / (replies * tokens)


def child(args: argparse.Namespace) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings_capacity")
    per_token = asyncio.run(
        run_path(
            args.one,
            args.replies,
            args.tokens,
            args.gap,
            args.profile,
            args.calls,
            args.fast,
            args.reasoning,
        )
    )
    print(json.dumps({"us": per_token if args.calls else per_token * 1e6}))


def measure(
    key: str, checkout: Path, args: argparse.Namespace, redis_url: str | None, core: int
) -> dict[str, float]:
    """The child's results: ``us`` (or calls) per token, ``messages`` and ``events``."""
    command = [sys.executable, "-m", "benchmarks.per_token", "--one", key,
               "--replies", str(args.replies), "--tokens", str(args.tokens),
               "--gap", str(args.gap), *(["--calls"] if args.calls else []),
               *(["--fast"] if args.fast else []),
               *(["--reasoning"] if args.reasoning else [])]  # fmt: skip
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "benchmarks.settings_capacity"}
    env.pop("STREAMING_BENCH_REDIS", None)
    if redis_url is not None:
        env["STREAMING_BENCH_REDIS"] = redis_url
    process = subprocess.Popen(command, cwd=checkout, env=env, stdout=subprocess.PIPE, text=True)
    pin(process.pid, core)
    out, _ = process.communicate(timeout=600)
    if process.returncode:
        raise RuntimeError(f"{key} in {checkout} failed")
    results: dict[str, float] = {}
    for line in out.strip().splitlines():
        if line.startswith("{"):
            results.update(json.loads(line))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--replies", type=int, default=100)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--gap", type=float, default=20.0, help="ms between two tokens")
    parser.add_argument("--paths", default="raw-http,view,raw-ws,ws")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--redis", action="store_true", help="the Redis store (else memory)")
    parser.add_argument("--before", help="a checkout of an earlier commit, run alongside")
    parser.add_argument("--core", type=int, default=0, help="the core the runs are pinned to")
    parser.add_argument("--profile", metavar="PATH", help="one run of PATH under cProfile")
    parser.add_argument("--calls", action="store_true", help="function calls, not CPU")
    parser.add_argument(
        "--fast", action="store_true", help="500 tokens/s on the model's clock, flush 16 ms"
    )
    parser.add_argument(
        "--reasoning", action="store_true", help="the library paths' tokens as reasoning"
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fast:
        args.tokens, args.gap = 1000, 2.0
        os.environ["STREAMING_BENCH_FLUSH_MS"] = "16"
    if args.one:
        args.profile = bool(args.profile)
        child(args)
        return
    redis = None
    if args.redis:
        redis = RedisServer()
        redis.start()
        os.environ["STREAMING_BENCH_REDIS"] = redis.url
    try:
        if args.profile:
            os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings_capacity")
            asyncio.run(
                run_path(
                    args.profile,
                    args.replies,
                    args.tokens,
                    args.gap,
                    True,
                    clock=args.fast,
                    reasoning=args.reasoning,
                )
            )
            return
        table(args, None if redis is None else redis.url)
    finally:
        if redis is not None:
            redis.close()


def table(args: argparse.Namespace, redis_url: str | None) -> None:
    keys = args.paths.split(",")
    runs: list[tuple[str, Path, str]] = [(key, ROOT, PATHS[key][2]) for key in keys]
    with this_app(Path(args.before)) if args.before else nullcontext() as before:
        if before is not None:
            runs += [(key, before, f"{PATHS[key][2]} (before)")
                     for key in keys if not key.startswith("raw")]  # fmt: skip
        results: dict[str, list[float]] = {label: [] for _, _, label in runs}
        ratios: dict[str, list[float]] = {label: [] for _, _, label in runs}
        messages: dict[str, list[float]] = {label: [] for _, _, label in runs}
        events: dict[str, list[float]] = {label: [] for _, _, label in runs}
        for _ in range(args.rounds):
            measured = {label: measure(key, where, args, redis_url, args.core)
                        for key, where, label in random.sample(runs, len(runs))}  # fmt: skip
            for key, _, label in runs:
                results[label].append(measured[label]["us"])
                messages[label].append(measured[label]["messages"])
                events[label].append(measured[label]["events"])
                raw = measured.get(PATHS["raw-http" if PATHS[key][0] == "http" else "raw-ws"][2])
                if raw is not None:  # (the raw path of its transport was run)
                    ratios[label].append(measured[label]["us"] / raw["us"])
    store = "Redis" if redis_url else "memory"
    fast = " on the model's clock, FLUSH_INTERVAL_MS = 16" if args.fast else ""
    reasoning = ", library paths' tokens as reasoning" if args.reasoning else ""
    print(f"\n{args.replies} replies x {args.tokens} tokens, {args.gap:g} ms apart{fast}, "
          f"{store} store{reasoning}, median of {args.rounds} rounds")  # fmt: skip
    print(f"| path | {'Python calls' if args.calls else 'µs'} per token | x raw "
          "| messages per token | events per token |")  # fmt: skip
    print("|---|---:|---:|---:|---:|")
    for label, values in results.items():
        ratio = f"{statistics.median(ratios[label]):.2f}" if ratios[label] else "-"
        stored = statistics.median(events[label])
        print(f"| {label} | {statistics.median(values):.1f} | {ratio} "
              f"| {statistics.median(messages[label]):.3f} "
              f"| {f'{stored:.3f}' if stored else '-'} |")  # fmt: skip


if __name__ == "__main__":
    main()
