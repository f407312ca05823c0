"""Shared fixtures: one daphne server for the session, scripted upstreams, HTTP helpers."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest

from streaming.store import MemoryStore
from streaming.store.base import EventStore

from .postgres_server import PostgresServer, postgres_server, require_postgres
from .redis_server import redis_server
from .servers import daphne_server, migrate, sqlite_database
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
    (``migrated_postgres_database``)."""
    require_postgres()
    with postgres_server() as server:
        yield server


def migrated_postgres_database(server: PostgresServer, settings: str) -> dict[str, str]:
    """A new database in the session's cluster, migrated with ``settings``: the env of a
    process that uses it (``DJANGO_DB`` names it)."""
    name = f"test_{uuid.uuid4().hex[:8]}"
    server.create_database(name)
    env = {
        "DJANGO_SETTINGS_MODULE": settings,
        "STREAMING_TEST_POSTGRES": f"{server.host}:{server.port}",
        "DJANGO_DB": name,
    }
    migrate(env)
    return env


@dataclass
class ChatServer:
    """A daphne serving the test project on one database, for the conversation tests."""

    url: str
    database: str  # "sqlite" or "postgres"
    postgres: PostgresServer | None = None
    name: str = ""  # the PostgreSQL database

    def connections(self) -> int:
        """Client connections the server holds to its PostgreSQL database now."""
        assert self.postgres is not None, "only PostgreSQL counts connections"
        return self.postgres.connections(self.name)


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def chat_server(request: pytest.FixtureRequest) -> Iterator[ChatServer]:
    """The test project under daphne on SQLite (``live_url``) and on PostgreSQL (a
    database of its own in the session's cluster, migrated first)."""
    if request.param == "sqlite":
        yield ChatServer(request.getfixturevalue("live_url"), "sqlite")
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    env = migrated_postgres_database(server, "tests.settings_postgres")
    with daphne_server("tests.asgi:application", env=env) as url:
        yield ChatServer(url, "postgres", server, env["DJANGO_DB"])


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


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[EventStore]:
    """Each kind of store: written inline (memory), or by the process's flusher (a real
    redis-server). ``tests/store`` has its own, for the store contract."""
    if request.param == "memory":
        yield MemoryStore()
        return
    from streaming.store.redis import RedisStore

    with redis_server() as redis:
        yield RedisStore(url=redis.url)
