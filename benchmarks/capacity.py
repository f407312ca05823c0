"""Capacity: concurrent model streams per core, tokens paced as a model sends them.

    .venv/bin/python -m benchmarks.capacity [--quick] [--streams 25,50,100] [--rounds 2]
                                            [--idle 2000] [--in-flight 20] [--no-idle]
                                            [--fast]
                                            [--burst 100000] [--no-paced]
                                            [--before CHECKOUT] [--keepalive S]
                                            [--store-batch-ms MS] [--max-active N]
                                            [--process-leases]

Daphne processes (one with the memory store, one with the Redis store and a real
redis-server the benchmark starts) run pinned to core 0; this client runs pinned to core
1 (a minimal asyncio HTTP/1.1 and WebSocket reader, so it is not the bottleneck). On
every path (``capacity_app``) C concurrent streams each receive 200 tokens sent 20 ms
apart; for each run it prints the client's gap between two deliveries of tokens (p50,
p99), the server's CPU per 1,000 tokens (utime + stime of the daphne process, from
``/proc``) and its ratio to the raw path of the same transport, measured in the same
round. Paths are interleaved and repeated (median of the rounds). The machine is shared:
compare the ratios of one run, not absolute numbers across runs. ``--before DIR``: a
checkout of an earlier commit (``git worktree add DIR <commit>``) whose ``SSEView`` and
``StreamConsumer`` paths run in the same rounds (and idle and fast runs), on their own daphne
processes: its ``streaming`` package and project under this checkout's benchmark app.

Idle: N open replies whose model sends a few tokens and then nothing, per transport and
store, opened with at most ``--in-flight`` of them waiting for their first tokens at a
time (it fails, naming how many, when some do not open); the daphne process's RSS and
thread count growth per reply (a fresh process for each path), its CPU use while nothing
streams (once they have all started, over a whole number of ``KEEPALIVE`` periods, at
least 20 s: an SSE reply's keep-alive comment every ``KEEPALIVE`` seconds is part of it;
``--keepalive S`` sets it on every server), and that CPU less the raw path's of the same
transport in the same run; beside them ``raw-ping``, the raw response with keep-alive
comments every ``KEEPALIVE``, as a hand-written view sends them (what the keep-alives
cost any Django view). ``--burst N``: one reply of N tokens ready at once (as from one
large network read) per path (and per ``--before`` path), interleaved: ms from the
model's first chunk to the client's first token, and from the request (a WebSocket's
prompt frame) to the first token and to the last. ``--fast``: a 500 tokens/s model
(1,000 tokens due 2 ms apart on the model's clock) on the raw paths, on the raw response
merging its tokens into one message every 16 ms (as a hand-written view would: it reads
each token as it comes, one write per message) and on ``SSEView`` and ``StreamConsumer``
with ``FLUSH_INTERVAL_MS`` = 16, with each token's lag from when the model wrote it to
its delivery (counted once every reply of the run streams or was refused). ``--process-leases``:
the Redis store with one lease per process (``process_leases``).
``--store-batch-ms MS``: every server's ``STORE_BATCH_MS`` (how long the Redis store's
writes are gathered: CPU per token against the gap between tokens). ``--max-active N``:
each ``SSEView`` and ``StreamConsumer`` path of the paced and fast runs runs a second
time beside itself, on a server with ``MAX_ACTIVE_PER_PROCESS`` = N: how the streams it
admits fare when more are asked for, and how many it refused (503 ``SERVER_BUSY``, or
the error frame).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.redis_server import RedisServer
from tests.servers import ROOT, free_port, stop_process, wait_for_port

SERVER_CORE, CLIENT_CORE = 0, 1
TICK = os.sysconf("SC_CLK_TCK")
PROMPT = "go"


@dataclass(frozen=True)
class Route:
    """One path: its label, transport, route, the server it runs on, its raw baseline."""

    label: str
    ws: bool
    route: str
    server: str  # "memory" | "redis" | "flush"
    baseline: str


PATHS = [
    Route("raw async StreamingHttpResponse", False, "/raw", "memory", "raw-http"),
    Route("sse_response", False, "/sse", "memory", "raw-http"),
    Route("SSEView + extractor, memory store", False, "/view", "memory", "raw-http"),
    Route("SSEView + extractor, Redis store", False, "/view", "redis", "raw-http"),
    Route("raw Channels consumer", True, "/ws/raw/", "memory", "raw-ws"),
    Route("StreamConsumer + extractor, memory store", True, "/ws/ours/", "memory", "raw-ws"),
    Route("StreamConsumer + extractor, Redis store", True, "/ws/ours/", "redis", "raw-ws"),
]
KEYS = ["raw-http", "sse", "view-mem", "view-redis", "raw-ws", "ws-mem", "ws-redis"]
BY_KEY = dict(zip(KEYS, PATHS, strict=True))
#: The paths of ``--fast`` (the "flush" server has ``FLUSH_INTERVAL_MS`` = 16).
FAST_PATHS = {
    "raw-http": BY_KEY["raw-http"],
    "raw-merged": Route(
        "raw async StreamingHttpResponse, merged every 16 ms",
        False, "/raw-merged", "memory", "raw-http",
    ),
    "view-flush": Route(
        "SSEView + extractor, memory store, FLUSH_INTERVAL_MS=16",
        False, "/view", "flush", "raw-http",
    ),
    "raw-ws": BY_KEY["raw-ws"],
    "ws-flush": Route(
        "StreamConsumer + extractor, memory store, FLUSH_INTERVAL_MS=16",
        True, "/ws/ours/", "flush", "raw-ws",
    ),
}  # fmt: skip
BY_KEY.update(FAST_PATHS)
#: The raw response with keep-alives every ``KEEPALIVE``: what idle SSE replies pay for
#: them in any Django view (idle runs only).
BY_KEY["raw-ping"] = Route(
    "raw async StreamingHttpResponse, with keep-alives", False, "/raw-ping", "memory", "raw-http"
)


# ------------------------------------------------------------------ processes
def pin(pid: int, core: int) -> None:
    """Run ``pid`` (and the threads it starts later) on ``core`` only, when it exists."""
    if core < (os.cpu_count() or 1):
        os.sched_setaffinity(pid, {core})


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads) so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def proc_status(pid: int, field: str) -> int:
    """A number of ``/proc/<pid>/status``: ``VmRSS`` (KiB), ``Threads``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field}")


@dataclass
class Server:
    port: int
    pid: int


@contextmanager
def daphne(
    env: dict[str, str],
    checkout: Path = ROOT,
    application: str = "benchmarks.capacity_asgi:application",
) -> Iterator[Server]:
    """A daphne process serving ``application`` of ``checkout`` (by default the capacity
    app, with ``env`` over the capacity settings), pinned to the server core."""
    port = free_port()
    command = [
        sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
        "--ping-interval", "600", "--ping-timeout", "600", application,
    ]  # fmt: skip
    full_env = {**os.environ, "DJANGO_SETTINGS_MODULE": "benchmarks.settings_capacity", **env}
    process = subprocess.Popen(
        command, cwd=checkout, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        pin(process.pid, SERVER_CORE)
        wait_for_port(port, process)
        yield Server(port, process.pid)
    finally:
        stop_process(process)


@contextmanager
def this_app(checkout: Path) -> Iterator[Path]:
    """A directory of links: the ``streaming`` package and project of ``checkout`` under
    this checkout's benchmark app (so an earlier commit serves the same routes)."""
    mixed = Path(tempfile.mkdtemp(prefix="capacity-"))
    try:
        for name in ("streaming", "project", "templates", "static"):
            (mixed / name).symlink_to(checkout.resolve() / name)
        for name in ("benchmarks", "tests"):
            (mixed / name).symlink_to(ROOT / name)
        yield mixed
    finally:
        shutil.rmtree(mixed)


# --------------------------------------------------------------------- client
def ws_frame(payload: bytes) -> bytes:
    """A masked WebSocket text frame (clients must mask)."""
    mask = os.urandom(4)
    size = len(payload)
    if size < 126:
        header = bytes([0x81, 0x80 | size])
    else:
        header = bytes([0x81, 0x80 | 126]) + size.to_bytes(2, "big")
    body = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return header + mask + body


class Reply(asyncio.Protocol):
    """One client connection: sends its request on ``start()``, records when tokens arrive.

    Tokens are counted as ``x`` bytes (see ``capacity_app``) of the body, or of the text
    frames; an HTTP reply ends when the server closes the connection, a WebSocket one at
    its ``complete`` frame.
    """

    def __init__(self, request: bytes, ws: bool, prompt: bytes | None) -> None:
        self.request = request
        self.ws = ws
        self.prompt = prompt
        self.head = b""
        self.open = False
        self.tail = b""
        self.last = b""
        self.complete = False
        #: Refused by a full process (``MAX_ACTIVE_PER_PROCESS``): 503, or the error frame;
        #: and when (``time()``).
        self.refused = False
        self.refused_at = 0.0
        self.tokens = 0
        self.arrivals: list[float] = []
        #: (``time()``, tokens so far) at each delivery, for the lag of each token.
        self.deliveries: list[tuple[float, int]] = []
        #: A burst: when the model started it and when its first chunk arrived (time()).
        self.started_at: float | None = None
        self.first_at = 0.0
        #: When the reply was asked for (perf_counter): the HTTP request, or the prompt
        #: frame on a WebSocket (its handshake is the connection, as TCP's is for HTTP).
        self.asked_at = 0.0
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        #: Resolved by the first token (an error if the reply ends or is refused first).
        self.first: asyncio.Future[None] = loop.create_future()
        self.ended: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def start(self) -> None:
        assert self.transport is not None
        self.transport.write(self.request)
        self.asked_at = time.perf_counter()

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        self.last = data[-300:]
        if self.started_at is None and (start := data.find(b"t1")) >= 0:
            end = data.find(b"t", start + 1)
            self.started_at = float(data[start + 1 : end])
            self.first_at = time.time()
        if not self.open:
            buffer = self.head + data
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self.head = buffer
                return
            status = buffer[:12]
            if status not in (b"HTTP/1.1 200", b"HTTP/1.1 101"):
                self.refused = status == b"HTTP/1.1 503"
                self.refused_at = time.time()
                self._end(None if self.refused else RuntimeError(f"refused: {buffer[:200]!r}"))
                return
            self.open = True
            data = buffer[end + 4 :]
            if self.prompt is not None and self.transport is not None:
                self.transport.write(ws_frame(self.prompt))
                self.asked_at = time.perf_counter()
            if not self.opened.done():
                self.opened.set_result(None)
        count = self._frames(data) if self.ws else data.count(b"x")
        if count:
            self.tokens += count
            self.arrivals.append(now)
            self.deliveries.append((time.time(), self.tokens))
            if not self.first.done():
                self.first.set_result(None)
        if self.ws and self.complete:
            self._end(None)
            if self.transport is not None:
                self.transport.close()

    def _frames(self, data: bytes) -> int:
        """The tokens in the text frames ``data`` completes; notes the ``complete`` frame."""
        buffer = self.tail + data
        count = position = 0
        while len(buffer) - position >= 2:
            size = buffer[position + 1] & 0x7F
            start = position + 2
            if size == 126:
                size, start = int.from_bytes(buffer[start : start + 2], "big"), start + 2
            elif size == 127:
                size, start = int.from_bytes(buffer[start : start + 8], "big"), start + 8
            if len(buffer) < start + size:
                break
            payload = buffer[start : start + size]
            if b'"complete"' in payload:
                self.complete = True
            elif b'"SERVER_BUSY"' in payload:
                self.refused = self.complete = True
                self.refused_at = time.time()
            else:
                count += payload.count(b"x")
            position = start + size
        self.tail = buffer[position:]
        return count

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(None)

    def _end(self, error: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_result(None)
        if not self.first.done():
            self.first.set_exception(error or RuntimeError(f"closed: {self.last!r}"))
            self.first.exception()  # read here: a paced run never awaits it
        if not self.ended.done():
            if error is None:
                self.ended.set_result(None)
            else:
                self.ended.set_exception(error)


def request_for(path: Route, query: str) -> tuple[bytes, bytes | None]:
    """The bytes that open a reply on ``path`` (and, for a WebSocket, its prompt frame)."""
    if not path.ws:
        target = f"{path.route}?prompt={PROMPT}&{query}"
        head = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        return head.encode(), None
    head = (
        f"GET {path.route} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    )
    params = dict(item.split("=") for item in query.split("&"))
    prompt = '{"prompt": "%s", %s}' % (  # noqa: UP031
        PROMPT,
        ", ".join(f'"{key}": {value}' for key, value in params.items()),
    )
    return head.encode(), prompt.encode()


async def open_replies(port: int, path: Route, query: str, count: int) -> list[Reply]:
    """``count`` connected (not yet started) replies, connected in small batches so the
    listen backlog never overflows."""
    loop = asyncio.get_running_loop()
    request, prompt = request_for(path, query)
    replies: list[Reply] = []
    for start in range(0, count, 50):
        batch = await asyncio.gather(
            *(
                loop.create_connection(lambda: Reply(request, path.ws, prompt), "127.0.0.1", port)
                for _ in range(min(50, count - start))
            )
        )
        replies += [protocol for _, protocol in batch]
    return replies


@dataclass
class Run:
    gaps: list[float] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)
    tokens: int = 0
    cpu: float = 0.0
    redis_cpu: float = 0.0
    overloaded: bool = False
    refused: int = 0


async def paced_run(
    server: Server,
    path: Route,
    streams: int,
    n: int,
    gap_ms: float,
    redis_pid: int | None,
    clock: bool = False,
) -> Run:
    """``streams`` replies of ``n`` tokens ``gap_ms`` apart, started at random moments
    within one gap; the gaps between deliveries and the server CPU per token (``clock``:
    tokens due on the model's schedule, and how late each one arrived)."""
    query = f"n={n}&gap={gap_ms}" + ("&clock=1" if clock else "")
    replies = await open_replies(server.port, path, query, streams)
    loop = asyncio.get_running_loop()
    cpu_before = cpu_seconds(server.pid)
    redis_before = cpu_seconds(redis_pid) if redis_pid else 0.0
    for reply in replies:
        loop.call_later(random.random() * gap_ms / 1000, reply.start)
    # A server that cannot keep up takes longer than the model: past 3x, it is overloaded.
    done, _ = await asyncio.wait([r.ended for r in replies], timeout=10 + 3 * n * gap_ms / 1000)
    run = Run(cpu=cpu_seconds(server.pid) - cpu_before, overloaded=len(done) < len(replies))
    if redis_pid:
        run.redis_cpu = cpu_seconds(redis_pid) - redis_before
    for reply in replies:
        if reply.refused:
            run.refused += 1
            continue
        if run.overloaded:
            if reply.transport is not None:
                reply.transport.close()
        elif reply.tokens != n:
            raise RuntimeError(f"{path.label}: {reply.tokens} tokens of {n} arrived")
        run.tokens += reply.tokens
        run.gaps += [(b - a) * 1000 for a, b in itertools.pairwise(reply.arrivals)]
    if clock:
        # Once every reply streams (or was refused): C requests arriving within one gap
        # are a burst of request handling, not the concurrent streams this counts.
        steady = max(reply.started_at or reply.refused_at for reply in replies)
        for reply in replies:
            if reply.started_at is not None and not reply.refused:
                run.lags += token_lags(reply.started_at, reply.deliveries, gap_ms / 1000, steady)
    return run


def token_lags(
    start: float, deliveries: list[tuple[float, int]], gap: float, steady: float
) -> list[float]:
    """Per token due from ``steady`` on, ms from when the model wrote it (token ``k`` at
    ``start + k * gap``) to its delivery: the merge delay and any time the server fell
    behind."""
    lags: list[float] = []
    seen = 0
    for at, count in deliveries:
        lags += [
            (at - due) * 1000
            for due in (start + k * gap for k in range(seen + 1, count + 1))
            if due >= steady
        ]
        seen = count
    return lags


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


@dataclass
class Cell:
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    lag50: list[float] = field(default_factory=list)
    lag99: list[float] = field(default_factory=list)
    cpu_k: list[float] = field(default_factory=list)
    ratio: list[float] = field(default_factory=list)
    redis_k: list[float] = field(default_factory=list)
    refused: list[int] = field(default_factory=list)


async def paced(
    servers: dict[str, Server],
    keys: list[str],
    levels: list[int],
    rounds: int,
    n: int,
    gap_ms: float,
    redis_pid: int | None,
    clock: bool = False,
) -> dict[tuple[str, int], Cell]:
    cells: dict[tuple[str, int], Cell] = {}
    for key in keys:  # warm every path up (imports, first connections to Redis)
        await paced_run(servers[BY_KEY[key].server], BY_KEY[key], 5, 20, 5, None)
    for streams in levels:
        for _ in range(rounds):
            order = keys[:]
            random.shuffle(order)
            runs: dict[str, Run] = {}
            for key in order:
                path = BY_KEY[key]
                server = servers[path.server]
                runs[key] = await paced_run(server, path, streams, n, gap_ms, redis_pid, clock)
                await asyncio.sleep(2.0 if runs[key].overloaded else 0.2)
            for key, run in runs.items():
                cell = cells.setdefault((key, streams), Cell())
                cell.p50.append(percentile(run.gaps, 0.5))
                cell.p99.append(math.inf if run.overloaded else percentile(run.gaps, 0.99))
                if run.lags:
                    cell.lag50.append(percentile(run.lags, 0.5))
                    cell.lag99.append(math.inf if run.overloaded else percentile(run.lags, 0.99))
                per_k = run.cpu / run.tokens * 1000
                cell.cpu_k.append(per_k)
                cell.refused.append(run.refused)
                base = runs.get(BY_KEY[key].baseline)
                if base is not None and base.cpu > 0:
                    cell.ratio.append(per_k / (base.cpu / base.tokens * 1000))
                if BY_KEY[key].server == "redis":
                    cell.redis_k.append(run.redis_cpu / run.tokens * 1000)
            print(f"  C={streams}: " + ", ".join(
                f"{k} p99 {percentile(r.gaps, 0.99):.1f} ms cpu/1k {r.cpu / r.tokens * 1000:.3f}"
                for k, r in runs.items()
            ), flush=True)  # fmt: skip
    return cells


def add_before(
    servers: dict[str, Server], stack: ExitStack, checkout: Path, redis_url: str, keys: list[str]
) -> list[str]:
    """Servers running an earlier checkout, and its library paths among ``keys`` (each
    measured against this run's raw path of its transport, in the same rounds)."""
    checkout = stack.enter_context(this_app(checkout))
    envs = {
        "memory": {},
        "redis": {"STREAMING_BENCH_REDIS": redis_url},
        "flush": {"STREAMING_BENCH_FLUSH_MS": "16"},
    }
    added = []
    for key in keys:
        path = BY_KEY[key]
        if path.route.startswith(("/view", "/ws/ours")):
            label, server = f"{path.label} (before)", f"{path.server}@before"
            if server not in servers:
                servers[server] = stack.enter_context(daphne(envs[path.server], checkout))
            BY_KEY[f"{key}@before"] = Route(label, path.ws, path.route, server, path.baseline)
            added.append(f"{key}@before")
    return added


def add_capped(
    servers: dict[str, Server],
    stack: ExitStack,
    envs: dict[str, dict[str, str]],
    keys: list[str],
    cap: int,
) -> list[str]:
    """The library paths among ``keys`` again, each on a server like its own (``envs``
    by server) with ``MAX_ACTIVE_PER_PROCESS`` = ``cap``."""
    added = []
    for key in keys:
        path = BY_KEY[key]
        if path.route.startswith(("/view", "/ws/ours")) and "@" not in key:
            server = f"{path.server}@cap"
            if server not in servers:
                env = {**envs[path.server], "STREAMING_BENCH_MAX_ACTIVE": str(cap)}
                servers[server] = stack.enter_context(daphne(env))
            label = f"{path.label}, MAX_ACTIVE_PER_PROCESS={cap}"
            BY_KEY[f"{key}@cap"] = Route(label, path.ws, path.route, server, path.baseline)
            added.append(f"{key}@cap")
    return added


# ---------------------------------------------------------------------- burst
BURST_KEYS = ["raw-http", "sse", "view-mem", "view-redis", "raw-ws", "ws-mem", "ws-redis"]


async def burst_run(server: Server, path: Route, n: int) -> tuple[float, float, float]:
    """One reply of ``n`` tokens ready at once: ms from the model's first chunk to the
    client's (the model writes its ``time()``), from the request to the first token, and
    to the last.

    The first figure starts where the model starts, which is after the response exists
    for ``sse_response`` (its body reads the model) but before it does for the library's
    paths (the reply runs on its own and the response follows it): the second counts
    the same steps on every path, from the request (on a WebSocket, the prompt frame)."""
    (reply,) = await open_replies(server.port, path, f"n={n}&gap=-1000", 1)
    reply.start()
    await asyncio.wait_for(reply.ended, 60)
    if reply.tokens != n or reply.started_at is None:
        raise RuntimeError(f"{path.label}: {reply.tokens} tokens of {n} arrived: {reply.last!r}")
    await asyncio.sleep(0.5)  # the server finishes with this reply before the next starts
    return (
        (reply.first_at - reply.started_at) * 1000,
        (reply.arrivals[0] - reply.asked_at) * 1000,
        (reply.arrivals[-1] - reply.asked_at) * 1000,
    )


async def bursts(
    servers: dict[str, Server], keys: list[str], n: int, rounds: int
) -> list[tuple[str, float, float, float]]:
    """``rounds`` bursts on each path, the paths interleaved in a new order each round."""
    for key in keys:  # warm up
        await burst_run(servers[BY_KEY[key].server], BY_KEY[key], 100)
    runs: dict[str, list[tuple[float, float, float]]] = {key: [] for key in keys}
    for _ in range(rounds):
        order = keys[:]
        random.shuffle(order)
        for key in order:
            runs[key].append(await burst_run(servers[BY_KEY[key].server], BY_KEY[key], n))
    rows = []
    for key in keys:
        model, first, last = (statistics.median(run[i] for run in runs[key]) for i in range(3))
        rows.append((BY_KEY[key].label, model, first, last))
        print(f"  burst {key}: model to client {model:.1f} ms, request to first {first:.1f} "
              f"ms, to last {last:.1f} ms", flush=True)  # fmt: skip
    return rows


# ----------------------------------------------------------------------- idle
class NotOpened(RuntimeError):
    """Some idle replies did not open (refused, closed, or no first token in time)."""


async def open_idle(port: int, path: Route, count: int, in_flight: int) -> list[Reply]:
    """``count`` replies whose model sends a few tokens and then nothing, opened with at
    most ``in_flight`` of them waiting for their first tokens at a time: the server is
    never asked for more handshakes than it answers (daphne refuses a WebSocket not
    accepted within 5 s). ``NotOpened`` when any did not open within 60 s."""
    loop = asyncio.get_running_loop()
    request, prompt = request_for(path, "idle=1")
    slots = asyncio.Semaphore(in_flight)
    failures: list[BaseException] = []

    async def open_one() -> Reply:
        async with slots:
            _, reply = await loop.create_connection(
                lambda: Reply(request, path.ws, prompt), "127.0.0.1", port
            )
            reply.start()
            try:
                await asyncio.wait_for(asyncio.shield(reply.first), 60)
            except Exception as exc:  # refused, closed, or TimeoutError
                failures.append(exc)
                if reply.ended.done():
                    reply.ended.exception()  # reported here
            return reply

    replies = await asyncio.gather(*(open_one() for _ in range(count)))
    if failures:
        for reply in replies:
            if reply.transport is not None:
                reply.transport.close()
        raise NotOpened(f"{len(failures)} of {count} replies did not open: {failures[0]!r:.200}")
    return list(replies)


async def idle_cost(
    server: Server, path: Route, count: int, in_flight: int, redis_pid: int
) -> tuple[float, float, float, float, float]:
    """(KiB of RSS per open reply, % of a core used while they all wait, seconds it took
    to open them, % of a core ``redis-server`` used meanwhile, threads per open reply)."""
    await asyncio.sleep(1.0)
    rss_before = proc_status(server.pid, "VmRSS")
    threads_before = proc_status(server.pid, "Threads")
    started = time.perf_counter()
    replies = await open_idle(server.port, path, count, in_flight)
    opening = time.perf_counter() - started
    # Let the server finish what opening them left (until a second passes with it under
    # 10 % busy, or 30 s).
    for _ in range(30):
        cpu_before = cpu_seconds(server.pid)
        await asyncio.sleep(1.0)
        if cpu_seconds(server.pid) - cpu_before < 0.1:
            break
    rss_after = proc_status(server.pid, "VmRSS")
    threads = (proc_status(server.pid, "Threads") - threads_before) / count
    cpu_before, started = cpu_seconds(server.pid), time.perf_counter()
    redis_before = cpu_seconds(redis_pid)
    await asyncio.sleep(idle_window())
    elapsed = time.perf_counter() - started
    busy = (cpu_seconds(server.pid) - cpu_before) / elapsed * 100
    redis_busy = (cpu_seconds(redis_pid) - redis_before) / elapsed * 100
    ended = [reply for reply in replies if reply.ended.done()]
    for reply in replies:
        if reply.transport is not None:
            reply.transport.close()
    if ended:
        raise NotOpened(f"{len(ended)} of {count} idle replies ended: {ended[0].last!r}")
    return (rss_after - rss_before) / count, busy, opening, redis_busy, threads


#: Seconds over which the CPU of idle replies is measured, at least.
IDLE_WINDOW = 20.0
#: A ``KEEPALIVE`` longer than this is "none in the window": the window stays IDLE_WINDOW.
NO_KEEPALIVE = 300.0


def idle_window() -> float:
    """The idle CPU's window: a whole number of ``KEEPALIVE`` periods, at least
    ``IDLE_WINDOW``. Each reply's keep-alives fall due one period apart from its last
    token, before the window starts, so every reply sends as many in it, whatever its
    phase (a window of 20 s at 15 s caught one in some replies, two in others)."""
    keepalive = float(os.environ.get("STREAMING_BENCH_KEEPALIVE") or 15)
    if keepalive > NO_KEEPALIVE:
        return IDLE_WINDOW
    return keepalive * math.ceil(IDLE_WINDOW / keepalive)


IDLE_KEYS = ["raw-http", "raw-ping", "view-mem", "view-redis", "raw-ws", "ws-mem", "ws-redis"]


@dataclass
class IdleRow:
    label: str
    kib: float
    busy: float
    over_raw: float
    opening: float
    redis_busy: float = math.nan
    threads: float = math.nan
    failure: str = ""


def idle_table(
    redis: RedisServer, count: int, keys: list[str], in_flight: int, before: Path | None
) -> list[IdleRow]:
    """Each idle path in a fresh daphne process (and, with ``before``, the library paths
    of that checkout too); the CPU over the raw path of the same transport, this run."""
    runs = []
    for key in [key for key in IDLE_KEYS if key in keys]:
        runs.append((key, ROOT))
        if before is not None and not key.startswith("raw"):
            runs.append((key, before))
    rows = []
    raw_busy: dict[bool, float] = {}
    for key, checkout in runs:
        path = BY_KEY[key]
        label = path.label if checkout == ROOT else f"{path.label} (before)"
        env = {"STREAMING_BENCH_REDIS": redis.url} if path.server == "redis" else {}
        with ExitStack() as stack:
            if checkout != ROOT:
                checkout = stack.enter_context(this_app(checkout))
            server = stack.enter_context(daphne(env, checkout))
            try:
                assert redis.process is not None
                kib, busy, opening, redis_busy, threads = asyncio.run(
                    idle_cost(server, path, count, in_flight, redis.process.pid)
                )
            except NotOpened as exc:
                rows.append(
                    IdleRow(label, math.nan, math.nan, math.nan, math.nan, failure=str(exc))
                )
                print(f"  idle {key}: FAILED: {exc}", flush=True)
                continue
        if key == path.baseline:
            raw_busy[path.ws] = busy
        over = busy - raw_busy.get(path.ws, math.nan)
        if path.server != "redis":
            redis_busy = math.nan
        rows.append(IdleRow(label, kib, busy, over, opening, redis_busy, threads))
        print(f"  idle {label}: {kib:.1f} KiB/reply, {threads:.2f} threads/reply, "
              f"{busy:.2f} % CPU ({over:+.2f} over raw), opened in {opening:.0f} s",
              flush=True)  # fmt: skip
    return rows


# ----------------------------------------------------------------------- main
#: A paced stream is held while its gap p99 stays within this (ms); a model on the clock
#: while the lag p99 of its tokens does (three display frames: a merge interval of one
#: frame, and a server that keeps up with the model).
HELD_GAP_MS = 25.0
HELD_LAG_MS = 50.0


def levels_held(
    cells: dict[tuple[str, int], Cell], key: str, levels: list[int], clock: bool = False
) -> str:
    """The largest C whose median gap p99 (``clock``: token lag p99) stayed within its
    bound, and every C below it did too (less the replies a full process refused)."""
    held = 0
    for streams in levels:
        cell = cells.get((key, streams))
        if cell is None:
            break
        p99, bound = (cell.lag99, HELD_LAG_MS) if clock else (cell.p99, HELD_GAP_MS)
        if not p99 or statistics.median(p99) > bound:
            break
        held = streams - round(statistics.median(cell.refused or [0]))
    return f"{held}" if held else f"< {levels[0]}"


def print_paced(
    cells: dict[tuple[str, int], Cell],
    keys: list[str],
    levels: list[int],
    title: str,
    clock: bool = False,
) -> None:
    print(title)
    lag_head, lag_rule = (
        ("token lag p50 ms | token lag p99 ms | ", "---:|---:|") if clock else ("", "")
    )
    refusals = any(max(cell.refused) for cell in cells.values())
    refused_head, refused_rule = (" refused (median) |", "---:|") if refusals else ("", "")
    print(
        f"| path | C | gap p50 ms | gap p99 ms | {lag_head}CPU s per 1,000 tokens | x raw | "
        f"redis-server CPU |{refused_head}"
    )
    print(f"|---|---:|---:|---:|{lag_rule}---:|---:|---:|{refused_rule}")
    for key in keys:
        for streams in levels:
            cell = cells[(key, streams)]
            ratio = f"{statistics.median(cell.ratio):.2f}" if cell.ratio else "-"
            redis = f"{statistics.median(cell.redis_k):.3f}" if cell.redis_k else "-"
            lags = (
                f"{statistics.median(cell.lag50):.1f} | {statistics.median(cell.lag99):.1f} | "
                if clock
                else ""
            )
            refused = f" {statistics.median(cell.refused):.0f} |" if refusals else ""
            print(
                f"| {BY_KEY[key].label} | {streams} | {statistics.median(cell.p50):.1f} | "
                f"{statistics.median(cell.p99):.1f} | {lags}{statistics.median(cell.cpu_k):.3f} | "
                f"{ratio} | {redis} |{refused}"
            )
    print()
    bound = f"token lag p99 ≤ {HELD_LAG_MS:.0f}" if clock else f"gap p99 ≤ {HELD_GAP_MS:.0f}"
    print(f"| path | streams held with {bound} ms |")
    print("|---|---:|")
    for key in keys:
        print(f"| {BY_KEY[key].label} | {levels_held(cells, key, levels, clock)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="C = 25, 100; one round; 300 idle")
    parser.add_argument("--streams", help="comma-separated C values (default 25,50,100,150,200)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--paths", help=f"comma-separated among {','.join(KEYS)} (idle runs: and raw-ping)"
    )
    parser.add_argument("--idle", type=int, default=2000, help="open replies for the idle test")
    parser.add_argument(
        "--in-flight", type=int, default=20, help="idle replies opening at a time (20)"
    )
    parser.add_argument("--no-idle", action="store_true")
    parser.add_argument("--no-paced", action="store_true")
    parser.add_argument("--fast", action="store_true", help="the 500 tokens/s flush comparison")
    parser.add_argument("--burst", type=int, default=0, help="N tokens ready at once (100000)")
    parser.add_argument(
        "--before", help="a checkout of an earlier commit: its paths run in the same rounds"
    )
    parser.add_argument(
        "--gc-threshold",
        help="A,B,C: every server runs gc.set_threshold(A, B, C) and gc.freeze() at start",
    )
    parser.add_argument(
        "--keepalive", type=float, help="seconds: every server's KEEPALIVE (default 15)"
    )
    parser.add_argument(
        "--store-batch-ms", type=float, help="every server's STORE_BATCH_MS (default 10)"
    )
    parser.add_argument(
        "--max-active", type=int, help="the library paths again, MAX_ACTIVE_PER_PROCESS = N"
    )
    parser.add_argument(
        "--process-leases", action="store_true", help="the Redis store with one lease per process"
    )
    args = parser.parse_args()
    if args.process_leases:
        os.environ["STREAMING_BENCH_PROCESS_LEASES"] = "1"
    if args.store_batch_ms is not None:
        os.environ["STREAMING_BENCH_STORE_BATCH_MS"] = str(args.store_batch_ms)
    if args.keepalive:
        os.environ["STREAMING_BENCH_KEEPALIVE"] = str(args.keepalive)
    if args.gc_threshold:
        os.environ["STREAMING_BENCH_GC_THRESHOLD"] = args.gc_threshold
    levels = [25, 100] if args.quick else [25, 50, 100, 150, 200]
    if args.streams:
        levels = [int(value) for value in args.streams.split(",")]
    rounds = 1 if args.quick else args.rounds
    idle = 300 if args.quick and args.idle == 2000 else args.idle
    keys = args.paths.split(",") if args.paths else list(KEYS)
    pin(0, CLIENT_CORE)
    redis = RedisServer()
    redis.start()
    assert redis.process is not None
    try:
        if not args.no_paced:
            with ExitStack() as stack:
                envs = {"memory": {}, "redis": {"STREAMING_BENCH_REDIS": redis.url}}
                servers = {name: stack.enter_context(daphne(env)) for name, env in envs.items()}
                if args.before:
                    keys += add_before(servers, stack, Path(args.before), redis.url, keys)
                if args.max_active:
                    keys += add_capped(servers, stack, envs, keys, args.max_active)
                cells = asyncio.run(
                    paced(servers, keys, levels, rounds, 200, 20, redis.process.pid)
                )
            print_paced(
                cells, keys, levels,
                f"200 tokens 20 ms apart per stream; median of {rounds} interleaved rounds; "
                "server on one core, client on the other",
            )  # fmt: skip
        if args.burst:
            with ExitStack() as stack:
                servers = {
                    "memory": stack.enter_context(daphne({})),
                    "redis": stack.enter_context(daphne({"STREAMING_BENCH_REDIS": redis.url})),
                }
                burst_keys = [key for key in BURST_KEYS if key in keys]
                if args.before:
                    burst_keys += add_before(
                        servers, stack, Path(args.before), redis.url, burst_keys
                    )
                rows = asyncio.run(bursts(servers, burst_keys, args.burst, max(3, rounds)))
            print()
            print(f"{args.burst:,} tokens ready at once (median of {max(3, rounds)} replies)")
            print("| path | model's first chunk to client ms | request to first token ms | "
                  "request to last token ms |")  # fmt: skip
            print("|---|---:|---:|---:|")
            for label, model, first, last in rows:
                print(f"| {label} | {model:.1f} | {first:.1f} | {last:.1f} |")
        if args.fast:
            with ExitStack() as stack:
                envs = {"memory": {}, "flush": {"STREAMING_BENCH_FLUSH_MS": "16"}}
                servers = {name: stack.enter_context(daphne(env)) for name, env in envs.items()}
                fast_keys = list(FAST_PATHS)
                if args.before:
                    fast_keys += add_before(servers, stack, Path(args.before), redis.url, fast_keys)
                if args.max_active:
                    fast_keys += add_capped(servers, stack, envs, fast_keys, args.max_active)
                cells = asyncio.run(
                    paced(servers, fast_keys, levels, rounds, 1000, 2, None, clock=True)
                )
            print()
            print_paced(
                cells, fast_keys, levels,
                "1,000 tokens due 2 ms apart on the model's clock (500 tokens/s); token lag: "
                "from the model writing a token to its delivery",
                clock=True,
            )  # fmt: skip
        if not args.no_idle:
            print()
            before = Path(args.before) if args.before else None
            idle_keys = keys if args.paths else [*keys, "raw-ping"]
            rows = idle_table(redis, idle, idle_keys, args.in_flight, before)
            print(
                f"Idle: {idle} open replies whose model sent a few tokens and then nothing "
                f"(fresh process each, at most {args.in_flight} opening at a time); CPU over "
                f"{idle_window():.0f} s (whole KEEPALIVE periods)"
            )
            print(
                "| path | KiB per open reply | threads per open reply | server CPU % while "
                "idle | CPU % over raw | redis-server CPU % |"
            )
            print("|---|---:|---:|---:|---:|---:|")
            for row in rows:
                if row.failure:
                    print(f"| {row.label} | FAILED: {row.failure} | | | | |")
                else:
                    redis_busy = "-" if math.isnan(row.redis_busy) else f"{row.redis_busy:.2f}"
                    print(f"| {row.label} | {row.kib:.1f} | {row.threads:.2f} | {row.busy:.2f} | "
                          f"{row.over_raw:+.2f} | {redis_busy} |")  # fmt: skip
            if any(row.failure for row in rows):
                sys.exit("Some idle replies did not open: see the table")
    finally:
        redis.close()


if __name__ == "__main__":
    main()
