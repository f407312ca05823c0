"""A reasoning model in the ready-made chat, over a real daphne: a local OpenAI-compatible
server sends its reasoning apart from the reply (``reasoning_content``, split into many
deltas, with ``</thought>`` and ``<`` in it), and the real ``openai`` SDK reads it. It
streams live as ``reasoning`` events on the chat's socket and as ``reasoning-*`` parts of
the AI SDK's stream, and is stored as the message's ``reasoning``; a reply of reasoning
only is stored as failed, its reasoning kept."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx

from .conftest import Serve
from .sources.test_openai import chunk
from .sources.test_openai_reasoning import TRICKY, script, thinking
from .sources.upstream import WAIT_LIMIT
from .test_new_project import socket_reply

#: The reply's content in the XML the chat's ``response`` pipeline asks for.
XML = "<response><thought>Short.</thought><actions>REPLY</actions><text>It is 4.</text></response>"


def reasoning_model(*, answer: bool = True) -> Any:
    """The tricky reasoning a character a delta, then (with ``answer``) the XML reply."""
    reasoning = [thinking(c) for c in TRICKY]
    content = [chunk(XML[i : i + 4]) for i in range(0, len(XML), 4)] if answer else []
    return script(*reasoning, *content)


async def stored_reply(client: httpx.AsyncClient, conversation: str) -> dict[str, Any]:
    response = await client.get(f"/chat/conversations/{conversation}")
    assert response.status_code == 200, response.text
    return dict(response.json()["messages"][-1])


async def test_the_chat_socket_streams_and_stores_the_models_reasoning(
    live_url: str, serve: Serve
) -> None:
    upstream = await serve(reasoning_model())
    async with httpx.AsyncClient(base_url=live_url, timeout=WAIT_LIMIT) as client:
        await client.get("/visitor")
        prompt = f"openai:{upstream.url}/v1 What is 2 + 2?"
        frames = await socket_reply(live_url, "/ws/chat/", client.cookies, prompt)
        reply = await stored_reply(client, frames[-1]["conversation"])
    reasoning = [f for f in frames if f["type"] == "event" and f["name"] == "reasoning"]
    first_chunk = next(i for i, f in enumerate(frames) if f["type"] == "chunk")
    assert frames.index(reasoning[0]) < first_chunk  # live, before the answer begins
    said = "".join(f["data"]["text"] for f in reasoning)
    assert said == TRICKY + "Short."
    assert frames[-1]["type"] == "complete" and frames[-1]["fullResponse"] == "It is 4."
    assert (reply["content"], reply["status"], reply["reasoning"]) == (
        "It is 4.",
        "complete",
        said,
    )
    assert upstream.requests[0].json()["messages"][-1]["content"] == "What is 2 + 2?"


async def test_a_reply_of_reasoning_only_is_stored_failed_with_its_reasoning(
    live_url: str, serve: Serve
) -> None:
    upstream = await serve(reasoning_model(answer=False))
    async with httpx.AsyncClient(base_url=live_url, timeout=WAIT_LIMIT) as client:
        await client.get("/visitor")
        prompt = f"openai:{upstream.url}/v1 Hmm?"
        frames = await socket_reply(live_url, "/ws/chat/", client.cookies, prompt)
        reply = await stored_reply(client, frames[-1]["conversation"])
    said = "".join(f["data"]["text"] for f in frames if f["type"] == "event")
    assert said == TRICKY
    assert frames[-1]["type"] == "error" and frames[-1]["code"] == "UPSTREAM_ERROR"
    assert frames[-1]["message"] == "The model reasoned but wrote no answer"
    assert (reply["content"], reply["status"], reply["reasoning"]) == ("", "failed", TRICKY)


async def test_the_ai_sdk_stream_has_the_reasoning_as_reasoning_parts(
    live_url: str, serve: Serve
) -> None:
    upstream = await serve(reasoning_model())
    chat_id = str(uuid.uuid4())
    text = f"openai:{upstream.url}/v1 What is 2 + 2?"
    payload = {
        "id": chat_id,
        "trigger": "submit-message",
        "messageId": None,
        "messages": [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": text}]}],
    }
    async with httpx.AsyncClient(base_url=live_url, timeout=WAIT_LIMIT) as client:
        await client.get("/visitor")
        headers = {"X-CSRFToken": client.cookies["csrftoken"]}
        response = await client.post("/chat/ui", json=payload, headers=headers)
        reply = await stored_reply(client, chat_id)
    assert response.status_code == 200, response.text
    data = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    chunks = [json.loads(item) for item in data[:-1]]
    reasoning = "".join(c["delta"] for c in chunks if c["type"] == "reasoning-delta")
    assert reasoning == TRICKY + "Short." == reply["reasoning"]
    assert "".join(c["delta"] for c in chunks if c["type"] == "text-delta") == "It is 4."
    kinds = [c["type"] for c in chunks if not c["type"].endswith("-delta")]
    assert kinds == [
        "start",
        "reasoning-start",
        "reasoning-end",
        "text-start",
        "text-end",
        "finish",
    ]


async def test_an_emoji_sent_in_two_halves_streams_and_is_stored_whole(
    live_url: str, serve: Serve
) -> None:
    """A server that cuts its text in UTF-16 units splits a surrogate pair over two deltas,
    in the reasoning and in the reply: neither the socket nor the store sees two U+FFFD."""
    high, low = "\ud83d", "\udc4b"  # 👋
    xml = f"<response><actions>REPLY</actions><text>Hi {high}"
    upstream = await serve(
        script(
            thinking(f"Wave {high}"),
            thinking(f"{low}."),
            chunk(xml),
            chunk(f"{low}!</text></response>"),
        )
    )
    async with httpx.AsyncClient(base_url=live_url, timeout=WAIT_LIMIT) as client:
        await client.get("/visitor")
        prompt = f"openai:{upstream.url}/v1 Wave?"
        frames = await socket_reply(live_url, "/ws/chat/", client.cookies, prompt)
        reply = await stored_reply(client, frames[-1]["conversation"])
    said = "".join(f["data"]["text"] for f in frames if f["type"] == "event")
    assert said == "Wave 👋."
    assert frames[-1]["type"] == "complete" and frames[-1]["fullResponse"] == "Hi 👋!"
    assert (reply["content"], reply["reasoning"]) == ("Hi 👋!", "Wave 👋.")
