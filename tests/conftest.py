"""Shared fixtures: one daphne server for the session, scripted upstreams, HTTP helpers."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import httpx
import pytest

from .postgres_server import AVAILABLE as POSTGRES_AVAILABLE
from .postgres_server import PostgresServer, postgres_server
from .servers import daphne_server, sqlite_database
from .sources.upstream import Script, Upstream

Serve = Callable[[Script], Awaitable[Upstream]]


@pytest.fixture(scope="session")
def live_url() -> Iterator[str]:
    """Base URL of a real daphne serving the test project on 127.0.0.1 (a migrated
    SQLite file: the chat stores its conversations)."""
    with sqlite_database() as env, daphne_server("tests.asgi:application", env=env) as url:
        yield url


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL cluster for the session; tests keep apart by their own databases
    (``postgres.create_database(name)``; ``servers.migrate`` with
    ``tests.settings_postgres``)."""
    if not POSTGRES_AVAILABLE:
        pytest.skip("PostgreSQL is not installed (scripts/test installs it)")
    with postgres_server() as server:
        yield server


@pytest.fixture
def http(live_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_url, timeout=10) as client:
        yield client


def probe(client: httpx.Client, key: str) -> list[str]:
    """What the server process recorded under ``key`` (see tests/routes.py)."""
    return list(client.get(f"/probe/{key}").json())


def wait_for_probe(
    client: httpx.Client, key: str, expected: list[str], timeout: float = 10
) -> None:
    """Poll the server's record of ``key`` until it equals ``expected`` (bounded)."""
    deadline = time.monotonic() + timeout
    seen = probe(client, key)
    while seen != expected and time.monotonic() < deadline:
        time.sleep(0.05)
        seen = probe(client, key)
    assert seen == expected


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start a scripted upstream on 127.0.0.1; every one started is stopped after the test."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(script: Script) -> Upstream:
            return await stack.enter_async_context(Upstream(script))

        yield start
