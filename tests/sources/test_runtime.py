"""``use_model`` and ``stream_to_action``: full text, context feeding, abort, cancel, cleanup."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any

import pytest

from streaming.errors import StreamError, StreamErrorCode
from streaming.extractors import StreamingContext, XmlTagExtractor
from streaming.runtime import stream_to_action, use_model
from streaming.sources import DemoModel, proxy

from ..conftest import Serve
from ..extractors.async_callbacks import recording_flush_callbacks
from .upstream import WAIT_LIMIT, Reply, Request


class Source:
    """An async generator of chunks that records how far it got and whether it was closed."""

    def __init__(self, chunks: Iterable[str], *, then_wait: bool = False) -> None:
        self.chunks = list(chunks)
        self.then_wait = then_wait
        self.started = False
        self.closed = False
        self.sent: list[str] = []

    async def __call__(self) -> AsyncIterator[str]:
        self.started = True
        try:
            for chunk in self.chunks:
                self.sent.append(chunk)
                yield chunk
            if self.then_wait:
                await asyncio.Event().wait()
        finally:
            self.closed = True


class Recorder:
    """A minimal streaming context: records what it was pushed (sync or async)."""

    def __init__(self, *, asynchronous: bool = False) -> None:
        self.pushed: list[str] = []
        self.asynchronous = asynchronous

    def push(self, chunk: str) -> Any:
        self.pushed.append(chunk)
        if self.asynchronous:
            return asyncio.sleep(0)
        return None


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_use_model_feeds_every_chunk_and_returns_the_full_text(asynchronous: bool) -> None:
    source = Source(["<text>Hel", "lo", "</text>"])
    context = Recorder(asynchronous=asynchronous)
    assert await use_model(source(), streaming_context=context) == "<text>Hello</text>"
    assert context.pushed == ["<text>Hel", "lo", "</text>"]
    assert source.closed


async def test_use_model_without_a_context_returns_the_full_text() -> None:
    assert await use_model(Source(["a", "b"])()) == "ab"


async def test_use_model_drives_a_real_streaming_context() -> None:
    streamed: list[tuple[str, str | None]] = []
    extractor = XmlTagExtractor("text")
    context = StreamingContext(
        extractor, lambda text, message_id=None: streamed.append((text, message_id)), "m-1"
    )
    model = DemoModel(token_delay=0)
    full = await use_model(model.stream("Hi"), streaming_context=context)
    assert full == model.reply("Hi")
    text = "".join(piece for piece, _ in streamed)
    assert text and "<" not in text
    assert full.split("<text>")[1].startswith(text)
    assert {message_id for _, message_id in streamed} == {"m-1"}


async def test_an_abort_event_stops_between_chunks() -> None:
    source = Source(["a", "b", "c", "d"])
    abort = asyncio.Event()
    context = Recorder()
    original_push = context.push

    def push(chunk: str) -> Any:
        if chunk == "b":
            abort.set()
        return original_push(chunk)

    context.push = push  # type: ignore[method-assign]
    assert await use_model(source(), streaming_context=context, abort=abort) == "ab"
    assert context.pushed == ["a", "b"]
    assert source.sent == ["a", "b"]
    assert source.closed


async def test_an_abort_callable_drops_the_chunk_that_arrives_after_it() -> None:
    source = Source(["a", "b", "c"])
    context = Recorder()
    assert (
        await use_model(source(), streaming_context=context, abort=lambda: "b" in source.sent)
        == "a"
    )
    assert context.pushed == ["a"]
    assert source.closed


async def test_an_abort_set_before_the_run_never_starts_the_source() -> None:
    source = Source(["a"])
    abort = asyncio.Event()
    abort.set()
    assert await use_model(source(), abort=abort) == ""
    assert not source.started


async def test_cancel_closes_the_source_and_propagates() -> None:
    source = Source(["first"], then_wait=True)
    context = Recorder()
    task = asyncio.create_task(use_model(source(), streaming_context=context))
    while not context.pushed:
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert source.closed


async def test_cancel_closes_the_upstream_connection(serve: Serve) -> None:
    async def endless(request: Request, reply: Reply) -> None:
        await reply.head()
        await reply.event({"response": "first"})
        await reply.wait_gone()

    upstream = await serve(endless)
    context = Recorder()
    task = asyncio.create_task(
        use_model(proxy(upstream.url, text_field="response"), streaming_context=context)
    )
    while not context.pushed:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(upstream.client_gone.wait(), WAIT_LIMIT)


async def test_errors_propagate_after_the_source_is_closed() -> None:
    source = Source(["a", "b"])

    class Failing:
        def push(self, chunk: str) -> None:
            raise StreamError(StreamErrorCode.CHUNK_TOO_LARGE, "too large")

    with pytest.raises(StreamError):
        await use_model(source(), streaming_context=Failing())
    assert source.sent == ["a"]
    assert source.closed


async def test_stream_to_action_streams_the_text_then_sends_the_whole_reply() -> None:
    calls: list[dict[str, Any]] = []
    model = DemoModel(token_delay=0)

    async def callback(content: dict[str, Any]) -> None:
        calls.append(content)

    full = await stream_to_action(model.stream("Hi"), callback, actions=["STREAM_RESPONSE"])
    assert full == model.reply("Hi")
    *pieces, final = calls
    assert pieces and all(call["streaming"] is True for call in pieces)
    text = "".join(call["text"] for call in pieces)
    assert text == full.split("<text>")[1].split("</text>")[0]
    assert final == {"text": full, "streaming": False, "actions": ["STREAM_RESPONSE"]}


async def test_stream_to_action_streams_plain_text_and_holds_back_json() -> None:
    plain: list[dict[str, Any]] = []
    await stream_to_action(Source(["Plain ", "text"])(), plain.append)
    assert plain == [
        {"text": "Plain ", "streaming": True},
        {"text": "text", "streaming": True},
        {"text": "Plain text", "streaming": False},
    ]
    json_calls: list[dict[str, Any]] = []
    await stream_to_action(Source(['{"result":', " true}"])(), json_calls.append)
    assert json_calls == [{"text": '{"result": true}', "streaming": False}]


async def test_stream_to_action_awaits_the_async_callbacks_of_the_extractors_flush() -> None:
    extractor, seen = recording_flush_callbacks()
    calls: list[dict[str, Any]] = []
    await stream_to_action(Source(["<text>Hi", "</text>"])(), calls.append, extractor=extractor)
    assert seen == ["chunk", "complete"]
    assert calls == [
        {"text": "Hi", "streaming": True},
        {"text": "<text>Hi</text>", "streaming": False},
    ]
