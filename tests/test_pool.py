"""Django's native PostgreSQL connection pool (``OPTIONS["pool"]``, psycopg_pool) under
the chat on a real daphne: more replies at once than the pool has connections all finish
and are stored, and a pool with no connection free for its whole ``timeout`` answers the
JSON 503 ``STORE_UNAVAILABLE``, as a database that refuses connections does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from .conftest import migrated_postgres_database
from .pool_visitor import API, LIMIT, SETTINGS, Visitor
from .postgres_server import PostgresServer
from .servers import daphne_server

#: Replies at once over each transport: together more than the pool's 2 connections.
SSE_CHATS = 6
SOCKET_CHATS = 3
BUSY = {"error": "The server is too busy; try again shortly", "code": "SERVER_BUSY"}


@pytest.fixture
def pooled(postgres: PostgresServer, tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """A daphne on a new database through a pool of 2 connections that waits 1 s for one:
    its URL, the database's name and daphne's log."""
    env = migrated_postgres_database(postgres, SETTINGS)
    env["STREAMING_TEST_POOL_TIMEOUT"] = "1"
    log = tmp_path / "daphne.log"
    with daphne_server("tests.asgi:application", env=env, log=log) as url:
        yield url, env["DJANGO_DB"], log


async def test_more_replies_than_the_pool_has_connections_all_finish_and_are_stored(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    """Each reply's database work (its session, its turns, its end) waits for one of the
    pool's 2 connections and gives it back: none is kept by a request's thread, a worker
    of the default executor or Channels' thread, or the later replies would wait in vain."""
    env = migrated_postgres_database(postgres, SETTINGS)
    log = tmp_path / "daphne.log"
    with daphne_server("tests.asgi:application", env=env, log=log) as url:
        visitors = [Visitor(url) for _ in range(SSE_CHATS + SOCKET_CHATS)]
        await asyncio.gather(*(v.arrive() for v in visitors))
        ends = await asyncio.gather(
            *(v.sse_chat(f"Hello {n}") for n, v in enumerate(visitors[:SSE_CHATS])),
            *(v.socket_chat(f"Hello {n}") for n, v in enumerate(visitors[SSE_CHATS:])),
        )
        stored = await asyncio.gather(*(v.stored_messages() for v in visitors))
        await asyncio.gather(*(v.client.aclose() for v in visitors))
        held = postgres.connections(env["DJANGO_DB"])
    assert ends == ['data: {"done":true}'] * SSE_CHATS + ["complete"] * SOCKET_CHATS
    assert stored == [[("user", "complete"), ("assistant", "complete")]] * len(visitors)
    assert held <= 2
    assert "Traceback" not in log.read_text()


def wait_for_lock_waits(server: PostgresServer, database: str, expected: int) -> bool:
    """Poll (bounded) until ``expected`` connections to ``database`` wait on a lock."""
    deadline = time.monotonic() + LIMIT
    while time.monotonic() < deadline:
        waiting = server.psql(
            "SELECT count(*) FROM pg_stat_activity "
            f"WHERE datname = '{database}' AND wait_event_type = 'Lock'"
        )
        if int(waiting) == expected:
            return True
        time.sleep(0.05)
    return False


async def test_a_pool_with_no_connection_free_past_its_timeout_answers_busy(
    postgres: PostgresServer, pooled: tuple[str, str, Path]
) -> None:
    """Both of the pool's connections wait on a lock held elsewhere (a long migration, say):
    a third request waits the pool's 1 s for a connection, and gets the JSON 503
    ``SERVER_BUSY`` with ``Retry-After`` (the chat page a 503 page that says busy), not
    Django's 500 page and a traceback; once the lock goes the waiting ones finish and
    the pool serves again. The log says the pool was exhausted and what to raise (the
    API's 503 once asked the database for its tables too, and waited the pool's timeout
    twice)."""
    url, database, log = pooled
    stuck, late = [Visitor(url) for _ in range(2)], Visitor(url)
    await asyncio.gather(*(v.arrive() for v in [*stuck, late]))
    locker = await psycopg.AsyncConnection.connect(
        host=postgres.host, port=postgres.port, user=postgres.user, dbname=database
    )
    try:
        await locker.execute("LOCK TABLE django_session IN ACCESS EXCLUSIVE MODE")
        waiting = [asyncio.create_task(v.client.get(API)) for v in stuck]
        assert await asyncio.to_thread(wait_for_lock_waits, postgres, database, 2)
        refused = [await late.client.get(API), await late.client.get(f"{API}/1")]
        headers = {"X-CSRFToken": late.client.cookies["csrftoken"]}
        refused.append(
            await late.client.post("/chat/stream", json={"prompt": "Hi"}, headers=headers)
        )
        page = await late.client.get("/")
    finally:
        await locker.rollback()
        await locker.close()
    assert [(r.status_code, r.json()) for r in refused] == [(503, BUSY)] * 3
    assert [r.headers["Retry-After"] for r in refused] == ["1"] * 3
    assert (page.status_code, page.headers["Retry-After"]) == (503, "1")
    assert "<h1>The chat is busy</h1>" in page.text
    assert [r.status_code for r in await asyncio.gather(*waiting)] == [200, 200]
    assert (await late.sse_chat("Hi again")) == 'data: {"done":true}'
    await asyncio.gather(*(v.client.aclose() for v in [*stuck, late]))
    logged = log.read_text()
    assert "Traceback" not in logged
    assert logged.count("No database connection was free in the pool") == 4  # API 2, prompt, page
