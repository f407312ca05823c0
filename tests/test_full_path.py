"""The whole path over daphne: a local OpenAI-compatible server, the real ``openai`` SDK,
``ResponseStreamExtractor``, and ``SSEView`` or ``StreamConsumer`` to a real client."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from streaming.sse import SSEParser

from .conftest import Serve
from .sources.upstream import WAIT_LIMIT, Reply, Request
from .transport_views import XML_REPLY, XML_TEXT, pieces


def completion_chunk(content: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "local",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}],
    }


async def xml_reply(request: Request, reply: Reply) -> None:
    """The XML reply in 2-character tokens, as a chat-completions SSE stream."""
    await reply.head()
    for token in pieces(XML_REPLY, 2):
        await reply.event(completion_chunk(token))
    await reply.event("[DONE]")
    await reply.end()


async def endless_reply(request: Request, reply: Reply) -> None:
    """Tokens until the client goes away (bounded by the upstream's own limit)."""
    await reply.head()
    await reply.event(completion_chunk("<response><actions>REPLY</actions><text>"))
    while not reply.gone.is_set():
        await reply.event(completion_chunk("more text "))
        await asyncio.sleep(0.01)


async def error_status(request: Request, reply: Reply) -> None:
    await reply.whole(500, json.dumps({"error": {"message": "model overloaded"}}))


async def test_sse_view_streams_only_the_text_from_the_openai_sdk(
    live_url: str, serve: Serve
) -> None:
    upstream = await serve(xml_reply)
    params = {"prompt": "Hi", "base_url": f"{upstream.url}/v1"}
    async with httpx.AsyncClient(base_url=live_url, timeout=WAIT_LIMIT) as client:
        response = await client.get("/sse/openai", params=params)
    parser = SSEParser()
    received = [json.loads(e.data) for e in parser.feed(response.content) + parser.close()]
    assert "".join(m.get("chunk", "") for m in received) == XML_TEXT
    assert received[-1] == {"done": True}
    assert upstream.requests[0].json()["stream"] is True


async def test_sse_client_disconnect_closes_the_upstream_request(
    live_url: str, serve: Serve
) -> None:
    upstream = await serve(endless_reply)
    params = {"prompt": "Hi", "base_url": f"{upstream.url}/v1"}
    async with (
        httpx.AsyncClient(base_url=live_url, timeout=WAIT_LIMIT) as client,
        client.stream("GET", "/sse/openai", params=params) as response,
    ):
        parser = SSEParser()
        async for chunk in response.aiter_raw():
            if any("chunk" in e.data for e in parser.feed(chunk)):
                break
    await asyncio.wait_for(upstream.client_gone.wait(), WAIT_LIMIT)


async def test_sse_upstream_error_status_is_an_error_message(live_url: str, serve: Serve) -> None:
    upstream = await serve(error_status)
    params = {"prompt": "Hi", "base_url": f"{upstream.url}/v1"}
    async with httpx.AsyncClient(base_url=live_url, timeout=WAIT_LIMIT) as client:
        response = await client.get("/sse/openai", params=params)
    parser = SSEParser()
    last = json.loads((parser.feed(response.content) + parser.close())[-1].data)
    assert last["code"] == "UPSTREAM_ERROR" and "500" in last["error"]


@pytest.fixture
def ws_openai(live_url: str) -> str:
    return live_url.replace("http://", "ws://") + "/ws/openai/"


async def test_consumer_streams_only_the_text_from_the_openai_sdk(
    live_url: str, ws_openai: str, serve: Serve
) -> None:
    upstream = await serve(xml_reply)
    async with connect(ws_openai, origin=live_url) as socket:
        await socket.send(json.dumps({"prompt": "Hi", "base_url": f"{upstream.url}/v1"}))
        frames = [json.loads(await asyncio.wait_for(socket.recv(), WAIT_LIMIT))]
        while frames[-1]["type"] == "chunk":
            frames.append(json.loads(await asyncio.wait_for(socket.recv(), WAIT_LIMIT)))
    text = "".join(f["content"] for f in frames if f["type"] == "chunk")
    assert text == frames[-1]["fullResponse"] == XML_TEXT


@pytest.mark.parametrize("how", ["cancel", "disconnect"])
async def test_consumer_cancel_or_disconnect_closes_the_upstream_request(
    live_url: str, ws_openai: str, serve: Serve, how: str
) -> None:
    upstream = await serve(endless_reply)
    async with connect(ws_openai, origin=live_url) as socket:
        await socket.send(json.dumps({"prompt": "Hi", "base_url": f"{upstream.url}/v1"}))
        assert json.loads(await asyncio.wait_for(socket.recv(), WAIT_LIMIT))["type"] == "chunk"
        if how == "cancel":
            await socket.send(json.dumps({"type": "cancel"}))
            await asyncio.wait_for(upstream.client_gone.wait(), WAIT_LIMIT)
    await asyncio.wait_for(upstream.client_gone.wait(), WAIT_LIMIT)
