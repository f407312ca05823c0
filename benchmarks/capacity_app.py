"""What the capacity benchmark serves: a paced model reply on every path, raw and ours.

The model sends ``n`` tokens ``gap`` ms apart (``idle=1``: a few tokens, then nothing;
``clock=1``: on a fixed schedule). HTTP routes (query ``n``, ``gap``, ``idle``,
``clock``): ``/raw`` (a plain async ``StreamingHttpResponse``), ``/raw-ping`` (the same
with keep-alive comments, for idle replies), ``/raw-merged`` (the same,
its tokens merged into one message per ``MERGE_MS``), ``/sse`` (``sse_response``),
``/view`` (``SSEView`` with ``ResponseStreamExtractor``; the store is the settings' one).
WebSocket routes (a prompt frame ``{"prompt": ..., "n": ..., "gap": ..., "idle": ...,
"clock": ...}``): ``/ws/raw/`` (a plain Channels consumer), ``/ws/ours/``
(``StreamConsumer`` with ``ResponseStreamExtractor``).
Every token is ``"xyz "``: a client counts the ``x`` bytes (no framing around them
carries one) to count tokens, however the path merges or splits them. With
``reasoning=1`` (``/view``, ``/ws/ours/``), the model sends its tokens as reasoning
(``Reasoning`` pieces: ``reasoning`` events, whose framing says ``"text"``, so a client
counts ``xyz``; no extractor splits them), then a short answer.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.urls import path

from streaming import sse_response
from streaming.conf import setting
from streaming.consumers import StreamConsumer
from streaming.extractors import ResponseStreamExtractor
from streaming.views import SSEView

TOKEN = "xyz "
#: What an agent model writes around its reply (``ResponseStreamExtractor`` streams the
#: text between ``<text>`` and ``</text>`` only).
AGENT_HEAD = "<response><thought>ok</thought><actions>REPLY</actions><text>"
AGENT_TAIL = "</text></response>"
#: Spaces after the start marker: more than ``SAFE_MARGIN`` (10) characters.
MARKER_PADDING = 16


def options(params: Mapping[str, Any]) -> tuple[int, float, bool, bool]:
    """(tokens, seconds between two tokens, idle, on the clock) of a request; ``gap`` -1:
    a burst; ``clock`` 1: tokens due on a fixed schedule."""
    n = int(params.get("n", 200))
    gap = float(params.get("gap", 20)) / 1000
    return n, gap, _flag(params.get("idle")), _flag(params.get("clock"))


def _flag(value: Any) -> bool:
    return str(value) in {"1", "True", "true"}


async def model(
    n: int, gap: float, idle: bool, clock: bool = False, head: str = "", tail: str = ""
) -> AsyncIterator[str]:
    """``n`` tokens, each after ``gap`` seconds, as a model sends them (after ``head`` and
    before ``tail``, when given: an agent reply's tags around them); or (``idle``) a few
    tokens at once, then nothing, ever (so the client knows the reply is open); or
    (``gap`` < 0) all of them ready at once, as from one large network read, after a
    first chunk ``t<time.time()>t`` that tells the client when the burst started; or
    (``clock``) after that first chunk, token ``i`` due ``i * gap`` after it, as a model
    server writes them whether or not its reader keeps up (the ones past due are ready at
    once, as from a socket's buffer), so the client can tell how late each one arrives."""
    if head:
        yield head
    if idle:
        yield TOKEN * 10  # past the extractor's held-back margin: the client sees it
        await asyncio.Event().wait()
    loop = asyncio.get_running_loop()
    start = loop.time()  # the schedule starts with the first chunk, however late it is read
    if gap < 0 or clock:  # when the burst or the schedule starts, for the client, padded
        # past an extractor's held-back margin so that it reaches the client in one piece
        yield f"t{time.time():.6f}t " + " " * MARKER_PADDING
    if clock:
        for index in range(1, n + 1):
            delay = start + index * gap - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            yield TOKEN
    else:
        for _ in range(n):
            if gap >= 0:
                await asyncio.sleep(gap)
            yield TOKEN
    if tail:
        yield tail


def agent_model(n: int, gap: float, idle: bool, clock: bool = False) -> AsyncIterator[str]:
    """The same tokens inside an agent reply, for ``ResponseStreamExtractor``: from the
    same generator (a model's source yields its tags with its tokens), so the library
    paths' model costs what the raw paths' does per token."""
    return model(n, gap, idle, clock, head=AGENT_HEAD, tail=AGENT_TAIL)


#: The answer of a reasoning model's reply after its reasoning (no ``x`` in it).
ANSWER = "done "


async def reasoning_model(
    n: int, gap: float, idle: bool, clock: bool = False
) -> AsyncIterator[str]:
    """The same tokens as a reasoning model's reasoning (``Reasoning`` pieces, as
    ``openai_chat`` yields them), then a short answer, in an agent reply. Imported here:
    a ``--before`` checkout older than reasoning runs the text paths all the same."""
    from streaming.sources import Reasoning

    yield AGENT_HEAD
    async for token in model(n, gap, idle, clock):
        yield Reasoning(token) if token == TOKEN else token
    yield ANSWER + AGENT_TAIL


def replier(params: Mapping[str, Any]) -> AsyncIterator[str]:
    """The library paths' model: reasoning with ``reasoning=1``, else text."""
    kind = reasoning_model if _flag(params.get("reasoning")) else agent_model
    return kind(*options(params))


async def raw(request: HttpRequest) -> HttpResponse:
    """The baseline: a plain async ``StreamingHttpResponse``, one SSE message per token."""

    async def body() -> AsyncIterator[bytes]:
        async for token in model(*options(request.GET)):
            yield f"data: {token}\n\n".encode()

    return StreamingHttpResponse(body(), content_type="text/event-stream")


async def raw_ping(request: HttpRequest) -> HttpResponse:
    """The baseline with keep-alives: the raw response sending a ``: ping`` comment after
    ``KEEPALIVE`` seconds without a message, as a hand-written view would (the next token
    awaited with a timeout; one task per token, so for idle replies only)."""
    keepalive = float(setting("KEEPALIVE"))

    async def body() -> AsyncIterator[bytes]:
        tokens = aiter(model(*options(request.GET)))
        pending = asyncio.ensure_future(anext(tokens))
        try:
            while True:
                done, _ = await asyncio.wait((pending,), timeout=keepalive)
                if not done:
                    yield b": ping\n\n"
                    continue
                try:
                    token = pending.result()
                except StopAsyncIteration:
                    return
                yield f"data: {token}\n\n".encode()
                pending = asyncio.ensure_future(anext(tokens))
        finally:
            pending.cancel()

    return StreamingHttpResponse(body(), content_type="text/event-stream")


#: How long ``/raw-merged`` gathers tokens into one message, as ``FLUSH_INTERVAL_MS`` = 16.
MERGE_MS = 16


async def raw_merged(request: HttpRequest) -> HttpResponse:
    """Merging as a hand-written view would: the raw response, reading each token as it
    comes and writing what arrived once ``MERGE_MS`` has passed since the first token of a
    message (no store, no extractor, no timer)."""

    async def body() -> AsyncIterator[bytes]:
        clock = asyncio.get_running_loop().time
        parts: list[str] = []
        due = 0.0
        async for token in model(*options(request.GET)):
            if not parts:
                due = clock() + MERGE_MS / 1000
            parts.append(token)
            if clock() >= due:
                yield f"data: {''.join(parts)}\n\n".encode()
                parts = []
        if parts:
            yield f"data: {''.join(parts)}\n\n".encode()

    return StreamingHttpResponse(body(), content_type="text/event-stream")


async def sse(request: HttpRequest) -> HttpResponse:
    """The same tokens through ``sse_response``."""
    return sse_response(model(*options(request.GET)))


class View(SSEView):
    """The same tokens as a generation (the event store of the settings) through
    ``ResponseStreamExtractor``."""

    extractors = (ResponseStreamExtractor,)
    # The reasoning's events (``reasoning=1``); the text path's extractor emits none.
    send_extractor_events = True

    def stream(self, prompt: str, **params: Any) -> AsyncIterator[str]:
        return replier(params)


class RawConsumer(AsyncWebsocketConsumer):
    """The baseline consumer: one ``chunk`` frame per token, then ``complete``."""

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        request = json.loads(text_data or "{}")
        message_id = uuid.uuid4().hex
        parts: list[str] = []
        async for token in model(*options(request)):
            parts.append(token)
            frame = {"type": "chunk", "content": token, "message_id": message_id}
            await self.send(text_data=json.dumps(frame))
        complete = {"type": "complete", "fullResponse": "".join(parts), "message_id": message_id}
        await self.send(text_data=json.dumps(complete))


class Consumer(StreamConsumer):
    """The same tokens through ``StreamConsumer`` and ``ResponseStreamExtractor``."""

    extractors = (ResponseStreamExtractor,)
    # The reasoning's events (``reasoning=1``); the text path's extractor emits none.
    send_extractor_events = True

    def stream(self, prompt: str, **params: Any) -> AsyncIterator[str]:
        return replier(params)


urlpatterns = [
    path("raw", raw),
    path("raw-ping", raw_ping),
    path("raw-merged", raw_merged),
    path("sse", sse),
    path("view", View.as_view()),
]

websocket_urlpatterns = [
    path("ws/raw/", RawConsumer.as_asgi()),
    path("ws/ours/", Consumer.as_asgi()),
]
