"""``proxy`` against a local upstream: SSE with a text field, plain text, and every failure."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from django.test import override_settings

from streaming.errors import StreamErrorCode
from streaming.sources import proxy
from streaming.sources.http import transport_error

from ..conftest import Serve
from .consume import cancel_after_first_piece, collect, failure
from .upstream import WAIT_LIMIT, Reply, Request


async def cloudflare(request: Request, reply: Reply) -> None:
    """Workers AI: ``{"response": ...}`` events, a usage event, ``[DONE]``; then it lingers."""
    await reply.head()
    for piece in ["Hello", " from", " the edge"]:
        await reply.event({"response": piece, "p": "abc"})
    await reply.event({"response": "", "usage": {"total_tokens": 3}})
    await reply.event("[DONE]")
    await reply.wait_gone()


async def test_sse_text_field_and_done(serve: Serve) -> None:
    upstream = await serve(cloudflare)
    source = proxy(
        f"{upstream.url}/ai/run/model",
        headers={"Authorization": "Bearer token"},
        json={"messages": [{"role": "user", "content": "Hi"}], "stream": True},
        text_field="response",
    )
    assert await collect(source) == ["Hello", " from", " the edge"]
    [request] = upstream.requests
    assert (request.method, request.path) == ("POST", "/ai/run/model")
    assert request.headers["authorization"] == "Bearer token"
    assert request.json() == {"messages": [{"role": "user", "content": "Hi"}], "stream": True}
    # [DONE] ended the source, which closed the connection the upstream kept open.
    await asyncio.wait_for(upstream.client_gone.wait(), WAIT_LIMIT)


async def test_sse_dotted_path_into_openai_chunks(serve: Serve) -> None:
    async def openai_style(request: Request, reply: Reply) -> None:
        await reply.head()
        await reply.event({"choices": [{"delta": {"role": "assistant"}}]})
        for piece in ["Hi", " there"]:
            await reply.event({"choices": [{"delta": {"content": piece}}]})
        await reply.event({"choices": [], "usage": {"total_tokens": 2}})
        await reply.event("[DONE]")
        await reply.end()

    upstream = await serve(openai_style)
    source = proxy(upstream.url, text_field="choices.0.delta.content")
    assert await collect(source) == ["Hi", " there"]


async def test_sse_without_text_field_streams_event_data(serve: Serve) -> None:
    async def events(request: Request, reply: Reply) -> None:
        await reply.head(content_type="text/event-stream; charset=utf-8")
        await reply.chunk(": a comment\n\ndata: one\n\nevent: note\ndata: two\ndata: lines\n\n")
        await reply.chunk("data: three")
        await reply.chunk("\n\n")
        await reply.end()

    upstream = await serve(events)
    assert await collect(proxy(upstream.url, "GET")) == ["one", "two\nlines", "three"]
    assert upstream.requests[0].method == "GET"


async def test_plain_text_streams_as_it_is(serve: Serve) -> None:
    async def plain(request: Request, reply: Reply) -> None:
        await reply.head(content_type="text/plain; charset=utf-8")
        for piece in ["Plain ", "text, ", "data: not an event\n\n"]:
            await reply.chunk(piece)
        await reply.end()

    upstream = await serve(plain)
    pieces = await collect(proxy(upstream.url, content="prompt"))
    assert "".join(pieces) == "Plain text, data: not an event\n\n"
    assert upstream.requests[0].body == b"prompt"


@pytest.mark.parametrize("content_type", ["text/plain", "text/event-stream"])
async def test_a_character_split_across_chunks_arrives_whole(
    serve: Serve, content_type: str
) -> None:
    raw = (
        "data: café 😀\n\n".encode() if content_type == "text/event-stream" else "café 😀".encode()
    )
    cut_e = raw.index("é".encode()) + 1
    cut_emoji = raw.index("😀".encode()) + 1

    async def split(request: Request, reply: Reply) -> None:
        await reply.head(content_type=content_type)
        for piece in (raw[:cut_e], raw[cut_e:cut_emoji], raw[cut_emoji:]):
            await reply.chunk(piece)
        await reply.end()

    upstream = await serve(split)
    assert "".join(await collect(proxy(upstream.url))) == "café 😀"


@pytest.mark.parametrize("content_type", ["text/plain", "text/event-stream"])
@pytest.mark.parametrize("bad", [b"data: ab\xff\n\n", b"data: ab\xc3"])
async def test_invalid_utf8_is_an_upstream_error(
    serve: Serve, content_type: str, bad: bytes
) -> None:
    async def invalid(request: Request, reply: Reply) -> None:
        await reply.head(content_type=content_type)
        await reply.chunk(b"data: ok\n\n")
        await reply.chunk(bad)
        await reply.end()

    upstream = await serve(invalid)
    _, error = await failure(proxy(upstream.url))
    assert error.code == StreamErrorCode.UPSTREAM_ERROR
    assert error.message == "The upstream server sent invalid UTF-8"


async def test_a_line_over_the_limit_is_a_parse_error(serve: Serve) -> None:
    async def long_line(request: Request, reply: Reply) -> None:
        await reply.head()
        await reply.event("short")
        await reply.chunk("data: ")
        for _ in range(10):
            await reply.chunk("x" * 50)
        await reply.wait_gone()

    upstream = await serve(long_line)
    pieces, error = await failure(proxy(upstream.url, max_line=200))
    assert pieces == ["short"]
    assert error.code == StreamErrorCode.PARSE_ERROR
    assert "200" in error.message
    await asyncio.wait_for(upstream.client_gone.wait(), WAIT_LIMIT)


async def test_the_line_limit_defaults_to_the_setting(serve: Serve) -> None:
    async def long_line(request: Request, reply: Reply) -> None:
        await reply.head()
        await reply.chunk("data: " + "x" * 150)
        await reply.wait_gone()

    upstream = await serve(long_line)
    with override_settings(STREAMING={"UPSTREAM_MAX_LINE": 100}):
        _, error = await failure(proxy(upstream.url))
    assert error.code == StreamErrorCode.PARSE_ERROR
    assert "100" in error.message


async def test_a_non_2xx_status_is_an_upstream_error(serve: Serve) -> None:
    async def unavailable(request: Request, reply: Reply) -> None:
        await reply.whole(503, '{"error": "model is loading"}')

    upstream = await serve(unavailable)
    _, error = await failure(proxy(upstream.url, text_field="response"))
    assert error.code == StreamErrorCode.UPSTREAM_ERROR
    assert "HTTP 503" in error.message
    assert error.details == {"status": 503, "body": '{"error": "model is loading"}'}


async def test_a_dropped_connection_is_an_upstream_error(serve: Serve) -> None:
    async def drop_midway(request: Request, reply: Reply) -> None:
        await reply.head()
        await reply.event({"response": "partial"})
        reply.drop()

    upstream = await serve(drop_midway)
    pieces, error = await failure(proxy(upstream.url, text_field="response"))
    assert pieces == ["partial"]
    assert error.code == StreamErrorCode.UPSTREAM_ERROR


async def test_a_slow_chunk_is_a_timeout(serve: Serve) -> None:
    async def slow(request: Request, reply: Reply) -> None:
        await reply.head()
        await reply.event({"response": "first"})
        await reply.wait_gone()

    upstream = await serve(slow)
    pieces, error = await failure(proxy(upstream.url, text_field="response", read_timeout=0.2))
    assert pieces == ["first"]
    assert error.code == StreamErrorCode.TIMEOUT
    assert "0.2 s" in error.message
    await asyncio.wait_for(upstream.client_gone.wait(), WAIT_LIMIT)


def test_a_connect_timeout_is_a_timeout() -> None:
    error = transport_error(httpx.ConnectTimeout("no answer"), connect=3.0, read=60.0)
    assert error.code == StreamErrorCode.TIMEOUT
    assert "3 s" in error.message


async def test_upstream_error_payloads_are_upstream_errors(serve: Serve) -> None:
    async def error_event(request: Request, reply: Reply) -> None:
        await reply.head()
        await reply.event({"response": "partial"})
        await reply.event({"error": {"message": "overloaded"}})
        await reply.end()

    upstream = await serve(error_event)
    pieces, error = await failure(proxy(upstream.url, text_field="response"))
    assert pieces == ["partial"]
    assert error.code == StreamErrorCode.UPSTREAM_ERROR
    assert error.details == {"error": {"message": "overloaded"}}


async def test_an_sse_error_event_is_an_upstream_error(serve: Serve) -> None:
    async def named_error(request: Request, reply: Reply) -> None:
        await reply.head()
        await reply.chunk('event: error\ndata: {"message": "quota exceeded"}\n\n')
        await reply.end()

    upstream = await serve(named_error)
    _, error = await failure(proxy(upstream.url))
    assert error.code == StreamErrorCode.UPSTREAM_ERROR
    assert "quota exceeded" in str(error.details)


@pytest.mark.parametrize(
    ("data", "why"), [("not json", "not JSON"), ('{"response": 42}', "holds int")]
)
async def test_data_without_the_text_field_is_an_upstream_error(
    serve: Serve, data: str, why: str
) -> None:
    async def odd(request: Request, reply: Reply) -> None:
        await reply.head()
        await reply.event(data)
        await reply.end()

    upstream = await serve(odd)
    _, error = await failure(proxy(upstream.url, text_field="response"))
    assert error.code == StreamErrorCode.UPSTREAM_ERROR
    assert why in error.message


async def test_cancelling_the_consumer_closes_the_upstream_connection(serve: Serve) -> None:
    async def endless(request: Request, reply: Reply) -> None:
        await reply.head(content_type="text/plain")
        await reply.chunk("first")
        await reply.wait_gone()

    upstream = await serve(endless)
    async with httpx.AsyncClient() as http:
        await cancel_after_first_piece(proxy(upstream.url, client=http), upstream)
        assert not http.is_closed


async def test_aclose_closes_the_upstream_connection(serve: Serve) -> None:
    async def endless(request: Request, reply: Reply) -> None:
        await reply.head()
        await reply.event({"response": "first"})
        await reply.wait_gone()

    upstream = await serve(endless)
    async with httpx.AsyncClient() as http:
        source = proxy(upstream.url, text_field="response", client=http)
        assert await anext(source) == "first"
        await source.aclose()
        await asyncio.wait_for(upstream.client_gone.wait(), WAIT_LIMIT)
