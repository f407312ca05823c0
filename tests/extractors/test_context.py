"""The streaming context and the retry state."""

from __future__ import annotations

import pytest

from streaming.errors import StreamError
from streaming.extractors import (
    MAX_CHUNK_SIZE,
    PassthroughExtractor,
    Pipeline,
    ResponseStreamExtractor,
    StreamingContext,
    StreamingRetryState,
    ValidationStreamExtractor,
    XmlTagExtractor,
)


async def test_context_forwards_non_empty_text_with_the_message_id() -> None:
    sent: list[tuple[str, str | None]] = []

    async def on_chunk(text: str, message_id: str | None) -> None:
        sent.append((text, message_id))

    context = StreamingContext(ResponseStreamExtractor(), on_chunk, "msg-1")
    for chunk in ("<actions>REPLY</actions>", "<text>Hello wonderful", " world</text>"):
        await context.push(chunk)
    assert sent == [("Hello", "msg-1"), (" wonderful world", "msg-1")]
    assert context.is_complete()
    assert context.get_streamed_text() == "Hello wonderful world"


async def test_context_drops_chunks_once_done_and_accepts_sync_callbacks() -> None:
    sent: list[str] = []
    context = StreamingContext(XmlTagExtractor("text"), lambda text, _id: sent.append(text))
    await context.push("<text>First</text>")
    await context.push("x" * (MAX_CHUNK_SIZE + 1))  # dropped: no error once done
    assert sent == ["First"] and context.message_id is None


async def test_context_propagates_stream_errors() -> None:
    context = StreamingContext(PassthroughExtractor(), lambda text, _id: None)
    with pytest.raises(StreamError):
        await context.push("x" * (MAX_CHUNK_SIZE + 1))


async def test_context_awaits_validation_callbacks() -> None:
    seen: list[str] = []

    async def on_field(chunk: str, field: str, accumulated: str) -> None:
        seen.append(chunk)

    extractor = ValidationStreamExtractor(schema=["text"], stream_fields=["text"])
    extractor.on_chunk = on_field
    context = StreamingContext(Pipeline(extractor), lambda text, _id: None)
    await context.push("<text>Hello</text>")
    assert seen == ["Hello"]


async def test_context_reset_starts_over() -> None:
    sent: list[str] = []
    context = StreamingContext(XmlTagExtractor("text"), lambda t, _id: sent.append(t))
    await context.push("<text>Partial reply")
    context.reset()
    assert context.get_streamed_text() == "" and not context.is_complete()
    await context.push("<text>Hi</text>")
    assert context.get_streamed_text() == "Hi"


def test_retry_state_flushes_the_held_back_tail_once() -> None:
    extractor = XmlTagExtractor("text")
    retry = StreamingRetryState(extractor)
    retry.append_text(extractor.push("<text>Hello"))
    assert not retry.is_complete()
    assert retry.get_streamed_text() == "Hello"
    assert retry.get_streamed_text() == "Hello"  # the tail counts once
    retry.reset()
    assert retry.get_streamed_text() == "" and not retry.is_complete()
