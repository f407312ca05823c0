"""The moment a chat reply starts, between its turn being stored and the reply being in
the event store (widened to a second here by ``SlowCreateStore``): deleting the
conversation then stops the reply, over SSE and over the AI SDK's WebSocket, and so does
the AI SDK's stop (no cancel request can reach a reply not yet in the store, so the reply
checks its turn once it is there); a client that leaves then still gets its turn
answered and stored.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, asynccontextmanager
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from .postgres_server import PostgresServer
from .servers import daphne_server, migrate, sqlite_database

API = "/chat/conversations"
LIMIT = 20.0


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def slow_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The test project with ``SlowCreateStore`` under daphne, on SQLite and PostgreSQL."""
    with ExitStack() as stack:
        if request.param == "sqlite":
            env = stack.enter_context(sqlite_database())
        else:
            server: PostgresServer = request.getfixturevalue("postgres")
            name = f"race_{uuid.uuid4().hex[:8]}"
            server.create_database(name)
            env = {"STREAMING_TEST_POSTGRES": f"{server.host}:{server.port}", "DJANGO_DB": name}
            migrate({**env, "DJANGO_SETTINGS_MODULE": "tests.settings_postgres"})
        env["DJANGO_SETTINGS_MODULE"] = "tests.settings_slow_create"
        yield stack.enter_context(daphne_server("tests.asgi:application", env=env))


@pytest.fixture
def visitor(slow_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=slow_url, timeout=LIMIT) as client:
        assert client.get("/visitor").status_code == 204
        client.headers["X-CSRFToken"] = client.cookies["csrftoken"]
        yield client


def wait_for_turn(client: httpx.Client, conversation_id: str | None = None) -> str:
    """The id of the visitor's conversation once its user message is stored."""
    deadline = time.monotonic() + LIMIT
    while time.monotonic() < deadline:
        if conversation_id is None:
            listed = client.get(API).json()["conversations"]
            candidate = listed[0]["id"] if listed else None
        else:
            candidate = conversation_id
        if candidate is not None:
            stored = client.get(f"{API}/{candidate}")
            # Stored, not in the event store yet: starting, to be asked again. (The API
            # reads the conversation, then its messages: a turn stored between the two
            # reads shows its message without its generation, until the next look.)
            body = stored.json() if stored.status_code == 200 else {}
            if body.get("messages") and body["starting"]:
                assert body["running"] is None
                return candidate
        time.sleep(0.02)
    raise AssertionError("the turn was never seen stored and starting")


@asynccontextmanager
async def ai_sdk_turn(
    url: str, visitor: httpx.Client, chat_id: str, body: dict[str, Any]
) -> AsyncIterator[ClientConnection]:
    """The visitor's AI SDK socket, once its ``send`` of "Hello" has its turn stored."""
    cookie = "; ".join(f"{name}={value}" for name, value in visitor.cookies.items())
    send = {
        "type": "send",
        "requestId": "r1",
        "id": chat_id,
        "trigger": "submit-message",
        "messageId": None,
        "messages": [{"id": "u", "role": "user", "parts": [{"type": "text", "text": "Hello"}]}],
        "headers": {},
        "body": body,
    }
    socket_url = url.replace("http://", "ws://") + "/ws/chat-ui/"
    async with connect(socket_url, origin=url, additional_headers={"Cookie": cookie}) as ws:
        await ws.send(json.dumps(send))
        await asyncio.to_thread(wait_for_turn, visitor, chat_id)
        yield ws


def test_sse_reply_of_a_conversation_deleted_while_it_starts_is_stopped(
    visitor: httpx.Client,
) -> None:
    with ThreadPoolExecutor(1) as pool:
        reply = pool.submit(visitor.post, "/chat/stream", json={"prompt": "Hello there"})
        conversation_id = wait_for_turn(visitor)
        assert visitor.delete(f"{API}/{conversation_id}").status_code == 204
        response = reply.result(LIMIT)
    data = [json.loads(line[6:]) for line in response.text.splitlines() if line[:6] == "data: "]
    assert data[-1]["code"] == "ABORTED", data[-3:]
    assert visitor.get(f"{API}/{conversation_id}").status_code == 404
    assert visitor.get(API).json()["conversations"] == []


async def test_ai_sdk_reply_of_a_chat_deleted_while_it_starts_is_stopped(
    slow_url: str, visitor: httpx.Client
) -> None:
    chat_id = str(uuid.uuid4())
    # The scripted model, a word every 50 ms.
    async with ai_sdk_turn(slow_url, visitor, chat_id, {"delay": 0.05}) as ws:
        deleted = await asyncio.to_thread(visitor.delete, f"{API}/{chat_id}")
        assert deleted.status_code == 204
        frames: list[dict[str, Any]] = []
        while not frames or frames[-1]["type"] not in {"end", "error"}:
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), LIMIT)))
    chunks = [f["chunk"]["type"] for f in frames if f["type"] == "chunk"]
    assert chunks[-1] == "abort" and "finish" not in chunks, chunks
    assert visitor.get(f"{API}/{chat_id}").status_code == 404


async def test_ai_sdk_socket_closed_while_its_reply_starts_still_gets_it_stored(
    slow_url: str, visitor: httpx.Client
) -> None:
    chat_id = str(uuid.uuid4())
    async with ai_sdk_turn(slow_url, visitor, chat_id, {}):
        pass
    # The socket is gone while the reply is still being created; it starts and ends anyway.
    deadline = time.monotonic() + LIMIT
    messages: list[dict[str, Any]] = []
    while time.monotonic() < deadline and len(messages) < 2:
        await asyncio.sleep(0.05)
        messages = visitor.get(f"{API}/{chat_id}").json()["messages"]
    assert [(m["role"], m["status"]) for m in messages] == [
        ("user", "complete"),
        ("assistant", "complete"),
    ]
    assert messages[1]["content"]


def test_ai_sdk_stop_while_the_reply_starts_stops_it(visitor: httpx.Client) -> None:
    chat_id = str(uuid.uuid4())
    body = {
        "id": chat_id,
        "trigger": "submit-message",
        "messageId": None,
        "messages": [{"id": "u", "role": "user", "parts": [{"type": "text", "text": "Hello"}]}],
    }
    with ThreadPoolExecutor(1) as pool:
        reply = pool.submit(visitor.post, "/chat/ui", json=body)
        wait_for_turn(visitor, chat_id)
        assert visitor.delete(f"/chat/ui/{chat_id}/stream").status_code == 204
        response = reply.result(LIMIT)
    data = [line[6:] for line in response.text.splitlines() if line[:6] == "data: "]
    assert data[-1] == "[DONE]"
    chunks = [json.loads(item)["type"] for item in data[:-1]]
    assert chunks[-1] == "abort" and "finish" not in chunks, chunks[-5:]
    messages = visitor.get(f"{API}/{chat_id}").json()["messages"]
    assert [(m["role"], m["status"]) for m in messages] == [
        ("user", "complete"),
        ("assistant", "stopped"),
    ]
