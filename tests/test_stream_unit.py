"""``Stream`` driven directly (no server): modes, limits, batching, validation."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import pytest
from django.test import override_settings

from streaming import Stream, StreamError, sse_response
from streaming.sse import SSEParser


async def collect(stream: Stream) -> tuple[list[bytes], list[str]]:
    chunks = [chunk async for chunk in stream]
    parser = SSEParser()
    data = [e.data for chunk in chunks for e in parser.feed(chunk)]
    return chunks, data


def test_unsupported_values_fail_at_construction() -> None:
    with pytest.raises(TypeError, match="Stream\\(\\) takes"):
        Stream(42)


async def test_events_that_are_ready_together_share_one_body_chunk() -> None:
    chunks, data = await collect(Stream([f"e{n}" for n in range(100)]))
    assert data == [f"e{n}" for n in range(100)]
    assert len(chunks) <= 3  # the opening comment, then the events in one or two writes


@override_settings(STREAMING={"MAX_BATCH": 10})
async def test_a_batch_never_exceeds_max_batch_events() -> None:
    chunks, data = await collect(Stream(str(n) for n in range(95)))
    assert data == [str(n) for n in range(95)]
    assert max(chunk.count(b"\n\n") for chunk in chunks[1:]) <= 10


async def test_each_ready_event_goes_out_without_waiting_for_the_next() -> None:
    gate = asyncio.Event()

    async def source() -> AsyncIterator[str]:
        yield "first"
        await gate.wait()
        yield "second"

    body = aiter(Stream(source()))
    first = await asyncio.wait_for(anext(body), 2)
    assert first.startswith(b": stream open\n\n")
    assert b"data: first" in first
    gate.set()
    assert b"data: second" in await asyncio.wait_for(anext(body), 2)


@override_settings(STREAMING={"MAX_QUEUE": 3})
def test_send_raises_queue_full_at_the_limit() -> None:
    stream = Stream()
    for n in range(3):
        stream.send(n)
    with pytest.raises(StreamError) as caught:
        stream.send(3)
    assert caught.value.code == "QUEUE_FULL"
    assert caught.value.details == {"max_queue": 3}


def test_send_after_close_raises_and_close_is_idempotent() -> None:
    stream = Stream()
    stream.close()
    stream.close()
    with pytest.raises(StreamError) as caught:
        stream.send("x")
    assert caught.value.code == "STREAM_CLOSED"


async def test_sends_from_another_thread_wake_the_stream() -> None:
    stream = Stream()

    def feed() -> None:
        for n in range(50):
            stream.send(n)
        stream.close()

    body = aiter(stream)
    await anext(body)
    threading.Thread(target=feed).start()
    parser = SSEParser()
    data = [e.data async for chunk in body for e in parser.feed(chunk)]
    assert data == [str(n) for n in range(50)]


async def test_a_stream_is_consumed_only_once() -> None:
    stream = Stream(["a"])
    await collect(stream)
    with pytest.raises(StreamError):
        aiter(stream)


async def test_closing_the_body_closes_the_source() -> None:
    closed = asyncio.Event()

    async def source() -> AsyncIterator[str]:
        try:
            while True:
                yield "x"
                await asyncio.sleep(0.01)
        finally:
            closed.set()

    body = Stream(source()).value
    await anext(body)
    await anext(body)
    await body.aclose()  # type: ignore[attr-defined]
    assert closed.is_set()


async def test_response_close_aborts_the_stream() -> None:
    stream = Stream()
    response = sse_response(stream)
    body = aiter(response)
    await anext(body)
    response.close()
    await asyncio.sleep(0)
    with pytest.raises(StreamError):
        stream.send("x")


def test_sse_response_headers() -> None:
    response = sse_response(["x"], headers={"Cache-Control": "no-store"})
    assert response["Content-Type"] == "text/event-stream; charset=utf-8"
    assert response["Cache-Control"] == "no-store"
    assert response["X-Accel-Buffering"] == "no"
    assert not response.has_header("Connection")
