"""``FLUSH_INTERVAL_MS`` over a real daphne and real sockets: an ``SSEView`` reply read
with httpx, a ``StreamConsumer`` reply over a WebSocket (``websockets``).

With the setting (50 ms, ``tests.settings_flush``) the tokens a fast model writes within
the interval go out as one message: far fewer messages than tokens, and the same text.
Without it (``tests.settings``, the default) the same model's tokens go out as they come,
so that the first test cannot pass by merging that does not come from the setting.
The tests count messages and compare text; they assert no timing."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from streaming.sse import SSEParser
from streaming.testing import END_FRAMES

from .servers import project_server
from .transport_views import XML_REPLY, pieces

#: Seconds a whole reply may take to arrive (each of these takes well under one).
LIMIT = 20.0
#: A fast model: the scripted XML reply one character a token (159 of them), 5 ms apart
#: (200 a second), streamed as it is (``passthrough``).
FAST = {"reply": "xml", "size": 1, "delay": 0.005, "pipeline": "passthrough"}
FAST_TOKENS = pieces(XML_REPLY, 1)

TRANSPORTS = ["sse", "websocket"]


@pytest.fixture(scope="module")
def flush_url() -> Iterator[str]:
    """The test project under daphne with ``FLUSH_INTERVAL_MS`` = 50."""
    with project_server("tests.settings_flush") as url:
        yield url


async def sse_messages(url: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Every message of an ``SSEView`` reply (``/sse/scripted``), read as it streams."""
    parser = SSEParser()
    events = []
    deadline = time.monotonic() + LIMIT
    async with (
        httpx.AsyncClient(base_url=url, timeout=LIMIT) as client,
        client.stream("GET", "/sse/scripted", params={"prompt": "Hi", **params}) as response,
    ):
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        async for chunk in response.aiter_bytes():
            events += parser.feed(chunk)
            # The server keeps the stream alive with comments: a reply that never ends
            # must not keep the test reading.
            assert time.monotonic() < deadline, f"no end after {LIMIT} s: {events[-3:]}"
    events += parser.close()
    return [json.loads(event.data) for event in events]


def sse_reply(messages: list[dict[str, Any]]) -> tuple[list[str], dict[str, Any]]:
    """The texts of an SSE reply's chunk messages, and its last message."""
    assert messages, "no message at all"
    *chunks, last = messages
    assert all(set(message) == {"chunk"} for message in chunks), chunks
    return [message["chunk"] for message in chunks], last


async def ws_frames(url: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """The frames of a ``StreamConsumer`` reply (``/ws/scripted/``) up to its end."""
    ws_url = url.replace("http://", "ws://") + "/ws/scripted/"
    frames: list[dict[str, Any]] = []
    deadline = time.monotonic() + LIMIT
    async with connect(ws_url, origin=url, open_timeout=LIMIT, close_timeout=5) as socket:
        await socket.send(json.dumps({"type": "prompt", "prompt": "Hi", **params}))
        while not frames or frames[-1]["type"] not in END_FRAMES:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no end after {LIMIT} s: {frames[-3:]}"
            frames.append(json.loads(await asyncio.wait_for(socket.recv(), remaining)))
    return frames


def ws_reply(frames: list[dict[str, Any]]) -> tuple[list[str], dict[str, Any]]:
    """The texts of a WebSocket reply's chunk frames, and its last frame."""
    *chunks, last = frames
    assert all(frame["type"] == "chunk" for frame in chunks), chunks
    return [frame["content"] for frame in chunks], last


async def reply(transport: str, url: str, params: dict[str, Any]) -> list[str]:
    """The texts of a reply's messages over ``transport``, once checked that it ended
    normally (``done``; ``complete`` with the whole text)."""
    if transport == "sse":
        texts, last = sse_reply(await sse_messages(url, params))
        assert last == {"done": True}
    else:
        texts, last = ws_reply(await ws_frames(url, params))
        assert last["type"] == "complete", last
        assert last["fullResponse"] == "".join(texts)
    return texts


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_flush_interval_merges_a_fast_models_tokens(flush_url: str, transport: str) -> None:
    texts = await reply(transport, flush_url, FAST)
    assert "".join(texts) == XML_REPLY  # no token lost, doubled or reordered
    # About 0.8 s of tokens in 50 ms messages: 16 or so (159 without the setting).
    assert len(texts) <= len(FAST_TOKENS) // 4, texts


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_without_a_flush_interval_the_same_model_is_not_merged(
    live_url: str, transport: str
) -> None:
    texts = await reply(transport, live_url, FAST)
    assert "".join(texts) == XML_REPLY
    # Only tokens found ready at once go out together: many more messages.
    assert len(texts) > len(FAST_TOKENS) // 4, texts
