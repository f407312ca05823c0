"""An open stream holds no database connection while it waits on the model: with a
database session and a logged-in user, 50 open SSE streams hold none (SQLite: the server
counts its open connections; PostgreSQL: ``pg_stat_activity``). Nor does a chat reply
while it starts: its request's connection (its session) is closed before the reply's
start waits on anything."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from streaming.sse import SSEParser

from .conftest import migrated_postgres_database
from .hostile import daphne_process, migrate, sqlite_database
from .postgres_server import PostgresServer, wait_for_connections
from .servers import daphne_server

STREAMS = 50
LIMIT = 30.0
#: A reply that keeps its stream open for about 40 s (one character every 0.25 s).
SLOW = {"prompt": "Hi", "delay": "0.25", "size": "1"}


def open_streams(url: str, count: int, stack: ExitStack, path: str = "/h/slow") -> None:
    """Log in, then open ``count`` streams of ``path`` and read each one's first event."""
    limits = httpx.Limits(max_connections=count + 5)
    client = stack.enter_context(httpx.Client(base_url=url, timeout=LIMIT, limits=limits))
    assert client.get("/h/login", params={"name": "alice"}).status_code == 200
    # The stack keeps every stream's body: a body iterator dropped closes its stream.
    bodies: list[Iterator[bytes]] = []
    stack.callback(bodies.clear)
    for _ in range(count):
        response = stack.enter_context(client.stream("GET", path, params=SLOW))
        assert response.status_code == 200
        parser = SSEParser()
        bodies.append(response.iter_raw())
        while not parser.feed(next(bodies[-1])):
            pass


def settle(count: Callable[[], int], timeout: float = 5.0) -> int:
    """The count once it reaches 0, or after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    value = count()
    while value and time.monotonic() < deadline:
        time.sleep(0.1)
        value = count()
    return value


@pytest.fixture
def sqlite_server(tmp_path: Path) -> Iterator[str]:
    env = migrate(sqlite_database(tmp_path / "db.sqlite3"))
    with daphne_process(env=env) as (url, _):
        yield url


@pytest.mark.parametrize("path", ["/h/slow", "/h/login-slow"])
def test_open_streams_hold_no_sqlite_connection(sqlite_server: str, path: str) -> None:
    def server_count() -> int:
        return int(httpx.get(f"{sqlite_server}/h/connections", timeout=LIMIT).json()["open"])

    with ExitStack() as stack:
        open_streams(sqlite_server, STREAMS, stack, path)
        assert settle(server_count) == 0


def test_open_streams_hold_no_postgresql_connection(postgres: PostgresServer) -> None:
    name = f"streams_{int(time.time() * 1000)}"
    postgres.create_database(name)
    env = migrate(postgres.settings(name))
    with daphne_process(env=env) as (url, _), ExitStack() as stack:
        open_streams(url, STREAMS, stack, "/h/login-slow")
        assert settle(lambda: postgres.connections(name)) == 0


#: Chat replies started at once, and held at their start by ``HeldCreateStore``.
STARTING = 20


async def start_chat(url: str) -> str:
    """A new visitor (a session in the database) and its chat's reply, read to its end;
    the reply's last data line."""
    async with httpx.AsyncClient(base_url=url, timeout=LIMIT) as client:
        assert (await client.get("/visitor")).status_code == 204
        headers = {"X-CSRFToken": client.cookies["csrftoken"]}
        response = await client.post("/chat/stream", json={"prompt": "Hi"}, headers=headers)
        assert response.status_code == 200, response.text
        return [line for line in response.text.splitlines() if line.startswith("data: ")][-1]


def stored_prompts(postgres: PostgresServer, name: str, expected: int) -> int:
    """Poll until ``expected`` prompts are stored (bounded); how many are."""
    deadline = time.monotonic() + LIMIT
    count = 0
    while count < expected and time.monotonic() < deadline:
        count = int(postgres.psql("SELECT count(*) FROM streaming_message", name))
        time.sleep(0.05)
    return count


async def test_chat_replies_starting_at_once_hold_no_connection(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    """Replies whose turns are stored, waiting for the rest of their start (in a burst: for
    the database workers), hold no connection: each request's own, opened to load its
    session, was held until its response began, one per reply past PostgreSQL's 100."""
    release = tmp_path / "release"
    env = migrated_postgres_database(postgres, "tests.settings_held_start")
    env["STREAMING_TEST_RELEASE"] = str(release)
    name = env["DJANGO_DB"]
    with daphne_server("tests.asgi:application", env=env) as url:
        chats = [asyncio.create_task(start_chat(url)) for _ in range(STARTING)]
        try:
            assert await asyncio.to_thread(stored_prompts, postgres, name, STARTING) == STARTING
            held = await asyncio.to_thread(wait_for_connections, postgres, name, 0)
        finally:
            release.touch()
            ends = await asyncio.gather(*chats)
    assert held == 0
    assert ends == ['data: {"done":true}'] * STARTING
