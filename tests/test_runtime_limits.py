"""Limits of a reply over real daphne and real sockets. Clients that stop reading cannot
make it cost unbounded memory: a reply past ``MAX_REPLY_CHARS`` ends with
``REPLY_TOO_LARGE`` and its upstream request is closed, so daphne's resident memory stays
bounded. An upstream that keeps its connection alive and sends no text ends with
``TIMEOUT`` after ``MAX_REPLY_SECONDS``."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from websockets.asyncio.client import connect

from streaming.testing import parse_sse

from .hostile import (
    comments_every,
    daphne_process,
    flood,
    migrate,
    rss,
    silent_sse,
    silent_ws,
    sqlite_database,
    upstream_in_thread,
)

MB = 1024 * 1024
#: What the upstream offers each reply: far past the default MAX_REPLY_CHARS (1,000,000).
FLOOD = 60 * MB
LIMIT = 60.0
#: MAX_REPLY_SECONDS of the deadline test.
DEADLINE = 2.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    env = migrate(sqlite_database(Path(tmp_path_factory.mktemp("db")) / "db.sqlite3"))
    with daphne_process(env=env) as (url, process):
        yield url, process.pid


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def test_clients_that_never_read_keep_memory_bounded(server: tuple[str, int]) -> None:
    url, pid = server
    port = port_of(url)
    with upstream_in_thread(flood(FLOOD)) as upstream:
        httpx.get(
            f"{url}/h/openai", params={"base_url": upstream.url, "prompt": "Hi"}, timeout=LIMIT
        )  # warm up
        before = rss(pid)
        query = urlencode({"base_url": upstream.url, "prompt": "Hi"})
        sockets: list[socket.socket] = []
        for _ in range(3):
            sockets.append(silent_sse(port, f"/h/openai?{query}"))
            sockets.append(
                silent_ws(port, "/ws/h/openai/", {"prompt": "Hi", "base_url": upstream.url})
            )
        peak = before
        deadline = time.monotonic() + LIMIT
        # Every reply has started and stopped reading its upstream (or the time is up).
        while time.monotonic() < deadline and (
            len(upstream.requests) < 7 or not upstream.all_gone()
        ):
            peak = max(peak, rss(pid))
            time.sleep(0.1)
        for _ in range(20):
            peak = max(peak, rss(pid))
            time.sleep(0.1)
        for sock in sockets:
            sock.close()
    grown = (peak - before) / MB
    assert upstream.all_gone(), "an upstream request was still open"
    assert grown < 100, f"RSS grew by {grown:.0f} MB"


def test_a_reader_of_a_flood_gets_reply_too_large_on_both_transports(
    server: tuple[str, int],
) -> None:
    url, _ = server
    with upstream_in_thread(flood(FLOOD)) as upstream:
        response = httpx.get(
            f"{url}/h/openai", params={"base_url": upstream.url, "prompt": "Hi"}, timeout=LIMIT
        )
        events = parse_sse(response.content)
        text = "".join(json.loads(e.data).get("chunk", "") for e in events)
        assert json.loads(events[-1].data)["code"] == "REPLY_TOO_LARGE"
        assert 0 < len(text) <= 1_000_000

        async def over_websocket() -> list[dict[str, object]]:
            ws_url = url.replace("http", "ws") + "/ws/h/openai/"
            async with connect(ws_url, origin=url, max_size=None) as ws:
                await ws.send(json.dumps({"prompt": "Hi", "base_url": upstream.url}))
                frames = [json.loads(await asyncio.wait_for(ws.recv(), LIMIT))]
                while frames[-1]["type"] == "chunk":
                    frames.append(json.loads(await asyncio.wait_for(ws.recv(), LIMIT)))
                return frames

        frames = asyncio.run(over_websocket())
        assert frames[-1]["type"] == "error" and frames[-1]["code"] == "REPLY_TOO_LARGE"
        assert 0 < sum(len(str(f.get("content", ""))) for f in frames) <= 1_000_000
        deadline = time.monotonic() + 10
        while not upstream.all_gone() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert upstream.all_gone(), "the upstream request was not closed"


def test_an_upstream_that_only_keeps_alive_ends_with_timeout(tmp_path: Path) -> None:
    env = migrate(sqlite_database(tmp_path / "db.sqlite3"))
    env["STREAMING_TEST_SETTINGS"] = json.dumps({"MAX_REPLY_SECONDS": DEADLINE})
    with daphne_process(env=env) as (url, _), upstream_in_thread(comments_every(0.5)) as upstream:
        started = time.monotonic()
        response = httpx.get(
            f"{url}/h/openai", params={"base_url": upstream.url, "prompt": "Hi"}, timeout=LIMIT
        )
        elapsed = time.monotonic() - started

        async def over_websocket() -> dict[str, object]:
            ws_url = url.replace("http", "ws") + "/ws/h/openai/"
            async with connect(ws_url, origin=url) as ws:
                await ws.send(json.dumps({"prompt": "Hi", "base_url": upstream.url}))
                return dict(json.loads(await asyncio.wait_for(ws.recv(), LIMIT)))

        frame = asyncio.run(over_websocket())
    last = json.loads(parse_sse(response.content)[-1].data)
    assert last["code"] == "TIMEOUT", last
    assert elapsed < LIMIT  # it ended on its own, long before the read timeout (60 s)
    assert frame["type"] == "error" and frame["code"] == "TIMEOUT", frame
