"""A prompt to a conversation whose reply still runs (the same chat open in two tabs) is
refused with a code of its own, ``CONVERSATION_BUSY``: a 409 over SSE, an ``error`` frame
over the WebSocket, so a client can tell it from a request it got wrong. Over a real
daphne, with database sessions; the refused prompt is not stored, and the conversation
takes the next prompt once its reply ended."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from streaming.sse import SSEParser

from .hostile import daphne_process, migrate, sqlite_database

LIMIT = 15.0
MESSAGE = "A reply is still running in this conversation; wait for it or stop it"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    env = migrate(sqlite_database(tmp_path / "db.sqlite3"))
    with daphne_process(env=env) as (url, _):
        yield url


async def socket_answer(server: str, client: httpx.AsyncClient, frame: dict[str, Any]) -> Any:
    """The first frame the chat socket answers ``frame`` with."""
    cookie = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
    address = server.replace("http://", "ws://") + "/ws/chat/"
    async with connect(address, origin=server, additional_headers={"Cookie": cookie}) as socket:
        await socket.send(json.dumps({"type": "prompt", **frame}))
        return json.loads(await asyncio.wait_for(socket.recv(), LIMIT))


async def test_a_prompt_while_the_conversations_reply_runs_is_conversation_busy(
    server: str,
) -> None:
    async with httpx.AsyncClient(base_url=server, timeout=LIMIT) as client:
        await client.get("/")
        headers = {"X-CSRFToken": client.cookies["csrftoken"]}
        running = {"prompt": "slow: take your time", "pipeline": "passthrough"}
        async with client.stream("POST", "/chat/stream", json=running, headers=headers) as reply:
            conversation = reply.headers["X-Conversation-Id"]
            parser, events, raw = SSEParser(), [], reply.aiter_raw()
            while not any(event.data for event in events):  # the reply has begun
                events += parser.feed(await anext(raw))
            generation = events[-1].id.split(":")[0] if events[-1].id else ""

            again = {"prompt": "Meanwhile", "conversation": conversation}
            refused = await client.post("/chat/stream", json=again, headers=headers)
            assert refused.status_code == 409
            assert refused.json() == {"error": MESSAGE, "code": "CONVERSATION_BUSY"}
            by_get = await client.get("/chat/stream", params=again)
            assert (by_get.status_code, by_get.json()["code"]) == (409, "CONVERSATION_BUSY")
            asked_again = {"regenerate": True, "conversation": conversation}
            regenerate = await client.post("/chat/stream", json=asked_again, headers=headers)
            assert (regenerate.status_code, regenerate.json()["code"]) == (
                409,
                "CONVERSATION_BUSY",
            )

            frame = await socket_answer(server, client, again)
            assert frame == {"type": "error", "message": MESSAGE, "code": "CONVERSATION_BUSY"}

            stored = (await client.get(f"/chat/conversations/{conversation}")).json()
            assert stored["running"] == generation
            assert [m["content"] for m in stored["messages"] if m["role"] == "user"] == [
                "slow: take your time"
            ]
            stop = await client.delete("/chat/stream", params={"id": generation}, headers=headers)
            assert stop.status_code in (200, 202, 204)
            async for _ in raw:  # to the reply's end
                pass

        # Its reply over, the conversation takes the prompt.
        frame = await socket_answer(server, client, {**again, "pipeline": "passthrough"})
        assert frame["type"] == "chunk", frame
