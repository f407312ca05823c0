"""An open stream holds no database connection while it waits on the model: with a
database session and a logged-in user, 50 open SSE streams hold none (SQLite: the server
counts its open connections; PostgreSQL: ``pg_stat_activity``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from streaming.sse import SSEParser

from .hostile import daphne_process, migrate, sqlite_database
from .postgres_server import PostgresServer

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
