"""SIGTERM or SIGINT to daphne with replies open: a clean exit (status 0, within 5 s), and
every client is told. SSE streams end with their reply or a final ``SHUTTING_DOWN`` error
event (with a ``retry:`` hint); WebSockets get their reply's end or a ``SHUTTING_DOWN``
error frame, then a close frame with code 4012 ("1012 service restart"). Replies cut this
way are ended in the store, so a resume on another process gets that error at once."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from asyncio import FIRST_COMPLETED
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from streaming.sse import ParsedEvent, SSEParser
from streaming.testing import parse_sse

from .hostile import daphne_process, migrate, sqlite_database
from .redis_server import RedisServer, needs_redis, redis_server

LIMIT = 60.0
#: Replies opening at a time.
OPENING_AT_ONCE = 20
#: Long enough to be open when the signal comes (about 45 s).
SLOW = {"prompt": "Hi", "delay": "0.3", "size": "1"}
EXIT_WITHIN = 5.0
PLAIN_STREAMS = 50


@pytest.fixture
def database(tmp_path: Path) -> dict[str, str]:
    return migrate(sqlite_database(tmp_path / "db.sqlite3"))


class SSEClient:
    """One open SSE reply: its events so far, read until the server closes it."""

    def __init__(self) -> None:
        self.events: list[ParsedEvent] = []
        self.started = asyncio.Event()

    async def run(self, client: httpx.AsyncClient, path: str) -> None:
        parser = SSEParser()
        async with client.stream("GET", path, params=SLOW) as response:
            async for chunk in response.aiter_raw():
                self.events += parser.feed(chunk)
                if self.events:
                    self.started.set()


class WSClient:
    """One open WebSocket reply: its frames, and the close code it got."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self.started = asyncio.Event()
        self.close_code: int | None = None

    async def run(self, url: str, cookie: str) -> None:
        socket: ClientConnection
        async with connect(
            url.replace("http", "ws") + "/ws/h/slow/",
            origin=url,
            additional_headers={"Cookie": cookie},
        ) as socket:
            await socket.send(json.dumps(SLOW))
            try:
                async for message in socket:
                    self.frames.append(json.loads(message))
                    self.started.set()
            except ConnectionClosed:
                pass
            self.close_code = socket.close_code


def wait_exit(process: subprocess.Popen[bytes]) -> int:
    """The exit status, which must come within ``EXIT_WITHIN`` seconds."""
    return process.wait(timeout=EXIT_WITHIN)


class Replies:
    """``sse`` SSE and ``ws`` WebSocket replies, open on ``url``."""

    def __init__(self, url: str, sse: int, ws: int) -> None:
        self.url = url
        self.sse = [SSEClient() for _ in range(sse)]
        self.ws = [WSClient() for _ in range(ws)]
        self.client = httpx.AsyncClient(
            base_url=url, timeout=LIMIT, limits=httpx.Limits(max_connections=None)
        )
        self.tasks: list[asyncio.Task[None]] = []

    async def open(self) -> None:
        """Log in, open them all and return once every one has its first event.

        At most ``OPENING_AT_ONCE`` are opening at a time, as clients arrive at a server: a
        stampede of them all at once on a loaded machine keeps some WebSocket handshakes
        waiting past daphne's 5 s, and daphne drops those. A reply that fails to open
        fails the test with its own error."""
        await self.client.get("/h/login")  # one session for all: no session writes
        cookie = "; ".join(f"{k}={v}" for k, v in self.client.cookies.items())
        gate = asyncio.Semaphore(OPENING_AT_ONCE)
        openings = [self.start(gate, c, c.run(self.client, "/h/slow")) for c in self.sse]
        openings += [self.start(gate, c, c.run(self.url, cookie)) for c in self.ws]
        await asyncio.gather(*openings)

    async def start(
        self, gate: asyncio.Semaphore, client: SSEClient | WSClient, run: Coroutine[Any, Any, None]
    ) -> None:
        """Run one client, holding a place in ``gate`` until its first event."""
        async with gate:
            task = asyncio.create_task(run)
            self.tasks.append(task)
            started = asyncio.create_task(client.started.wait())
            await asyncio.wait({task, started}, timeout=LIMIT, return_when=FIRST_COMPLETED)
            if not started.done():
                started.cancel()
                if task.done():
                    task.result()
                raise AssertionError(f"a reply had no event within {LIMIT} s")

    async def finish(self) -> None:
        """Wait until the server closed every one (bounded)."""
        done, pending = await asyncio.wait(self.tasks, timeout=LIMIT)
        assert not pending, "a client was never closed"
        for task in done:
            task.result()
        await self.client.aclose()


def check_told(replies: Replies) -> None:
    for sse_client in replies.sse:
        last = sse_client.events[-1]
        data = json.loads(last.data)
        assert data == {"done": True} or data.get("code") == "SHUTTING_DOWN", data
        if data != {"done": True}:
            assert last.retry is not None and last.retry > 0
    for ws_client in replies.ws:
        frame = ws_client.frames[-1]
        assert frame["type"] == "complete" or frame.get("code") == "SHUTTING_DOWN", frame
        assert ws_client.close_code == 4012


@pytest.mark.parametrize(("sig", "count"), [(signal.SIGTERM, 100), (signal.SIGINT, 5)])
async def test_a_signal_with_replies_open_tells_every_client_and_exits_cleanly(
    database: dict[str, str], sig: signal.Signals, count: int
) -> None:
    with daphne_process(env=database) as (url, process):
        replies = Replies(url, count, count)
        await replies.open()
        process.send_signal(sig)
        status = await asyncio.to_thread(wait_exit, process)
        await replies.finish()
    assert status == 0
    check_told(replies)


async def test_plain_streaming_responses_do_not_crash_the_exit(
    database: dict[str, str],
) -> None:
    async def first_tick(client: httpx.AsyncClient, started: asyncio.Event) -> None:
        async with client.stream("GET", "/h/plain") as response:
            async for _ in response.aiter_raw():
                started.set()

    with daphne_process(env=database) as (url, process):
        async with httpx.AsyncClient(
            base_url=url, timeout=LIMIT, limits=httpx.Limits(max_connections=None)
        ) as client:
            events = [asyncio.Event() for _ in range(PLAIN_STREAMS)]
            tasks = [asyncio.create_task(first_tick(client, event)) for event in events]
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), LIMIT)
            process.send_signal(signal.SIGTERM)
            status = await asyncio.to_thread(wait_exit, process)
            await asyncio.wait(tasks, timeout=LIMIT)
    assert status == 0


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


def redis_env(database: dict[str, str], redis: RedisServer, **streaming: Any) -> dict[str, str]:
    store = {"BACKEND": "streaming.store.redis.RedisStore", "OPTIONS": {"url": redis.url}}
    return {**database, "STREAMING_TEST_SETTINGS": json.dumps({"STORE": store, **streaming})}


@needs_redis
@pytest.mark.timeout(300)  # two daphne processes: slow to start on a loaded machine
def test_a_reply_cut_by_shutdown_is_ended_in_the_store(
    database: dict[str, str], redis: RedisServer
) -> None:
    env = redis_env(database, redis)
    with daphne_process(env=env) as (first, process), daphne_process(env=env) as (second, _):
        with httpx.Client(base_url=first, timeout=LIMIT) as client:
            client.get("/h/login")
            cookies = dict(client.cookies)
            with client.stream("GET", "/h/slow", params=SLOW) as response:
                parser = SSEParser()
                events: list[ParsedEvent] = []
                chunks = response.iter_raw()
                while not events:
                    events += parser.feed(next(chunks))
                process.send_signal(signal.SIGTERM)
                for chunk in chunks:
                    events += parser.feed(chunk)
        assert wait_exit(process) == 0
        started = time.monotonic()
        with httpx.Client(base_url=second, timeout=LIMIT, cookies=cookies) as client:
            resumed = parse_sse(
                client.get("/h/slow", headers={"Last-Event-ID": events[0].id or ""}).content
            )
        assert time.monotonic() - started < 2.0  # at once, not after a lease or a timeout
    assert json.loads(events[-1].data)["code"] == "SHUTTING_DOWN"
    assert json.loads(resumed[-1].data)["code"] == "SHUTTING_DOWN"


@needs_redis
@pytest.mark.timeout(300)
async def test_a_hung_redis_still_lets_every_client_hear_of_the_shutdown(
    database: dict[str, str], redis: RedisServer
) -> None:
    """Redis answers nothing (SIGSTOP) when SIGTERM comes: the replies cannot be ended in
    the store, but their clients here still get ``SHUTTING_DOWN`` (SSE with ``retry:``,
    WebSocket then 4012) before the process exits, within its usual bound."""
    with daphne_process(env=redis_env(database, redis)) as (url, process):
        replies = Replies(url, 1, 1)
        await replies.open()
        redis.pause()
        try:
            process.send_signal(signal.SIGTERM)
            status = await asyncio.to_thread(wait_exit, process)
            await replies.finish()
        finally:
            redis.resume()
    assert status == 0
    check_told(replies)
