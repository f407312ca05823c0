"""A PostgreSQL restart (``pg_ctl restart -m fast``: a failover, an upgrade) under a daphne
that keeps running on Django's pool of 2 connections (``tests.settings_postgres_pool``),
over real sockets. PostgreSQL ends every connection the pool held; the pool hands each
out once more unless ``CONN_HEALTH_CHECKS`` has it checked first. Without the check the
first request to meet one gets its 503 and the chat has the pool check the others at
once (not one failed request each); with it no request fails. A reply streaming through
the restart streams on, and its end is stored, or (without the check) its client gets
``STORE_UNAVAILABLE`` and its message is stored failed with all its text.

The tests restart a cluster of their own (module-scoped), not the session's one that
other tests' servers use."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus

from streaming.sse import SSEParser

from .chat_model import SLOW_WORDS
from .conftest import migrated_postgres_database
from .pool_visitor import API, LIMIT, SETTINGS, Visitor
from .postgres_server import PostgresServer, postgres_server, require_postgres
from .servers import daphne_server

DONE = 'data: {"done":true}'
UNAVAILABLE = 'data: {"error":"The database is unavailable","code":"STORE_UNAVAILABLE"}'
#: The slow reply's text (tests/chat_model.py), which reads no database as it streams.
SLOW_TEXT = "".join(f"word{n} " for n in range(SLOW_WORDS))
#: Text events of the slow reply read before the restart.
BEFORE_RESTART = 5


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresServer]:
    """A PostgreSQL cluster these tests may restart."""
    require_postgres()
    with postgres_server() as server:
        yield server


async def fill_the_pool(cluster: PostgresServer, url: str, database: str) -> list[Visitor]:
    """Two visitors' chats at once: the pool then holds its 2 connections. The visitors,
    each with one stored conversation."""
    visitors = [Visitor(url), Visitor(url)]
    await asyncio.gather(*(v.arrive() for v in visitors))
    ends = await asyncio.gather(*(v.sse_chat(f"Before {n}") for n, v in enumerate(visitors)))
    assert ends == [DONE, DONE]
    assert cluster.connections(database) == 2
    return visitors


async def after_the_restart(me: Visitor) -> list[str]:
    """The chat page, the listing, a chat over SSE and one over ``/ws/chat/``, one at a
    time, each as it ended."""
    page, listing = await me.client.get("/"), await me.client.get(API)
    return [
        f"page {page.status_code}",
        f"listing {listing.status_code}",
        await me.sse_chat("After, over SSE"),
        await me.socket_chat("After, on a socket"),
    ]


async def first_request(me: Visitor, kind: str) -> tuple[int, str]:
    """A request of ``kind`` (``page``, ``listing``, ``chat`` or ``socket``, a chat's
    WebSocket handshake): its status and body."""
    if kind == "socket":
        with pytest.raises(InvalidStatus) as refused:
            await me.socket_chat("Hi")
        return refused.value.response.status_code, refused.value.response.body.decode()
    if kind == "page":
        response = await me.client.get("/")
    elif kind == "listing":
        response = await me.client.get(API)
    else:
        headers = {"X-CSRFToken": me.client.cookies["csrftoken"]}
        response = await me.client.post("/chat/stream", json={"prompt": "Hi"}, headers=headers)
    return response.status_code, response.text


@pytest.mark.parametrize(
    ("kind", "refusal"),
    [
        ("page", "<h1>The chat is unavailable</h1>"),
        ("listing", '{"error": "The database is unavailable", "code": "STORE_UNAVAILABLE"}'),
        ("chat", '{"error": "The database is unavailable", "code": "STORE_UNAVAILABLE"}'),
        ("socket", ""),
    ],
    ids=["page", "listing", "chat", "socket"],
)
async def test_without_health_checks_one_request_fails_after_a_restart_not_one_per_connection(
    cluster: PostgresServer, tmp_path: Path, kind: str, refusal: str
) -> None:
    """The first request after the restart is handed one of the pool's 2 broken
    connections: a 503 (the page's, or the JSON ``STORE_UNAVAILABLE``; a WebSocket
    handshake, refused before its session loads, a 403) and one log line, no traceback.
    At that failure the pool checks its other connection and replaces it, so every
    request after it, on the same daphne, is served (the other one failed the next
    request too before) and its replies stored."""
    env = migrated_postgres_database(cluster, SETTINGS)
    log = tmp_path / "daphne.log"
    with daphne_server("tests.asgi:application", env=env, log=log) as url:
        me, other = await fill_the_pool(cluster, url, env["DJANGO_DB"])
        await asyncio.to_thread(cluster.restart)
        status, body = await first_request(me, kind)
        after = await after_the_restart(me)
        stored = await me.stored_messages()
        await asyncio.gather(me.client.aclose(), other.client.aclose())
    assert status == (403 if kind == "socket" else 503)
    assert refusal in body
    assert after == ["page 200", "listing 200", DONE, "complete"]
    assert stored == [("user", "complete"), ("assistant", "complete")] * 3
    logged = log.read_text()
    assert "Traceback" not in logged
    assert logged.count("The database failed") == 1


async def test_with_health_checks_no_request_fails_after_a_restart(
    cluster: PostgresServer, tmp_path: Path
) -> None:
    """``CONN_HEALTH_CHECKS``: the pool checks each connection before handing it out, and
    replaces the broken ones; no request after the restart fails, nothing is logged."""
    env = migrated_postgres_database(cluster, SETTINGS)
    env["STREAMING_TEST_POOL_CHECK"] = "1"
    log = tmp_path / "daphne.log"
    with daphne_server("tests.asgi:application", env=env, log=log) as url:
        me, other = await fill_the_pool(cluster, url, env["DJANGO_DB"])
        await asyncio.to_thread(cluster.restart)
        after = await after_the_restart(me)
        stored = await me.stored_messages()
        await asyncio.gather(me.client.aclose(), other.client.aclose())
    assert after == ["page 200", "listing 200", DONE, "complete"]
    assert stored == [("user", "complete"), ("assistant", "complete")] * 3
    logged = log.read_text()
    assert "Traceback" not in logged
    assert "The database failed" not in logged


async def slow_reply_through_a_restart(
    visitor: Visitor, cluster: PostgresServer
) -> tuple[str, str]:
    """A slow reply over SSE with the restart after its first text events: the text its
    client read, and its last event's data line."""
    headers = {"X-CSRFToken": visitor.client.cookies["csrftoken"]}
    parser, texts, last = SSEParser(), [], ""
    body = {"prompt": "slow: through a restart"}
    async with visitor.client.stream("POST", "/chat/stream", json=body, headers=headers) as reply:
        assert reply.status_code == 200
        async for chunk in reply.aiter_raw():
            for event in parser.feed(chunk):
                last = f"data: {event.data}"
                if event.event == "message" and "chunk" in event.json():
                    texts.append(event.json()["chunk"])
                    if len(texts) == BEFORE_RESTART:
                        await asyncio.to_thread(cluster.restart)
    return "".join(texts), last


@pytest.mark.parametrize("health_checks", ["0", "1"])
async def test_a_reply_streaming_through_a_restart_streams_on_and_its_end_is_defined(
    cluster: PostgresServer, tmp_path: Path, health_checks: str
) -> None:
    """The model needs no database: all the text arrives. Its end needs one: with health
    checks it is stored complete; without, the broken connection it was handed fails the
    store, so its client gets ``STORE_UNAVAILABLE`` instead of the end (never told it was
    stored), and the conversation's next read stores it failed, with all its text; the
    log has the database's line and the reply's, no traceback."""
    env = migrated_postgres_database(cluster, SETTINGS)
    env["STREAMING_TEST_POOL_CHECK"] = health_checks
    log = tmp_path / "daphne.log"
    with daphne_server("tests.asgi:application", env=env, log=log) as url:
        visitors = await fill_the_pool(cluster, url, env["DJANGO_DB"])
        me = visitors[0]
        streamed, last = await asyncio.wait_for(slow_reply_through_a_restart(me, cluster), LIMIT)
        listed = await me.client.get(API)
        newest = listed.json()["conversations"][0]["id"]
        messages = (await me.client.get(f"{API}/{newest}")).json()["messages"]
        await asyncio.gather(*(v.client.aclose() for v in visitors))
    assert streamed == SLOW_TEXT
    status = "complete" if health_checks == "1" else "failed"
    assert last == (DONE if health_checks == "1" else UNAVAILABLE)
    assert [(m["role"], m["status"]) for m in messages] == [
        ("user", "complete"),
        ("assistant", status),
    ]
    assert messages[1]["content"] == SLOW_TEXT
    logged = log.read_text()
    assert "Traceback" not in logged
    assert logged.count("on_end failed") == (0 if health_checks == "1" else 1)
