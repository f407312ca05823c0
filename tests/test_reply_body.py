"""``ReplyBody`` and the follower's heartbeat: a reply's SSE body, read in the response's
own task, with keep-alives that need no timer per wait."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncGenerator

import pytest

from streaming import StreamError, StreamErrorCode
from streaming.events import Chunk, Complete, Event, GenerationEvent
from streaming.extractors import Pipeline
from streaming.generations import Generations
from streaming.protocols import SSEMessages
from streaming.reply_body import ReplyBody, SSEFrames
from streaming.response import SSEResponse
from streaming.sse import KEEPALIVE_COMMENT, OPENING_COMMENT, SSEParser
from streaming.store import MemoryStore
from streaming.testing import parse_sse

from .generation_helpers import paced

LIMIT = 10.0


async def batches_of(
    *items: list[GenerationEvent] | BaseException, closed: list[str] | None = None
) -> AsyncGenerator[list[GenerationEvent]]:
    try:
        for item in items:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        if closed is not None:
            closed.append("closed")


def ours(**defaults: object) -> SSEFrames:
    return SSEFrames(SSEMessages(), "g", **defaults)  # type: ignore[arg-type]


async def body_bytes(body: ReplyBody) -> list[bytes]:
    return [part async for part in body]


async def test_messages_are_framed_with_the_body_defaults() -> None:
    frames = SSEFrames(
        SSEMessages(chunk_message=str.upper, done_message=lambda: None),
        "g",
        event="token",
        retry=500,
    )
    body = ReplyBody(
        batches_of(
            [Chunk(1, "a")],
            [Chunk(2, "b"), Event(3, "named", "c")],
            [Complete(4)],  # a done message without data: nothing goes out
        ),
        frames,
    )
    parts = await body_bytes(body)
    assert parts[0] == OPENING_COMMENT
    assert parts[1] == b"id: g:1\nevent: token\nretry: 500\ndata: A\n\n"
    events = SSEParser().feed(b"".join(parts))
    assert [(e.id, e.event, e.data) for e in events] == [
        ("g:1", "token", "A"),
        ("g:2", "token", "B"),
        ("g:3", "named", "c"),
    ]
    assert parts[-1] == b""


@pytest.mark.parametrize(
    "text", ["plain", 'say "hi"\n\tthen\r\nbye', "é 漢字 🙂", "\u2028\u2029\x00\x1f", ""]
)
def test_a_token_is_framed_as_its_protocol_frames_it(text: str) -> None:
    """A paced token (one chunk) skips the message object: the bytes are the same."""
    frames = ours()
    expected = b"".join(frames.encode(m) for m in SSEMessages().messages("g", [Chunk(7, text)]))
    assert frames.batch([Chunk(7, text)]) == expected
    assert SSEParser().feed(expected)[0].json() == {"chunk": text}


def test_a_token_with_defaults_or_another_chunk_message_goes_through_the_protocol() -> None:
    assert ours(event="token").batch([Chunk(1, "a")]) == (
        b'id: g:1\nevent: token\ndata: {"chunk":"a"}\n\n'
    )
    own = SSEFrames(SSEMessages(chunk_message=lambda text: {"text": text}), "g")
    assert own.batch([Chunk(1, "a")]) == b'id: g:1\ndata: {"text":"a"}\n\n'


async def test_the_opening_carries_the_reply_id_as_an_event_without_data() -> None:
    """The id is known from the first bytes on; no client dispatches anything for it."""
    body = ReplyBody(batches_of([Chunk(1, "x")]), ours(), opening_id="g:0")
    parts = await body_bytes(body)
    assert parts[0] == OPENING_COMMENT + b"id: g:0\n\n"
    parser = SSEParser()
    assert parser.feed(parts[0]) == []
    assert parser.last_event_id == "g:0"
    assert [(e.id, e.json()) for e in parser.feed(parts[1])] == [("g:1", {"chunk": "x"})]
    assert parse_sse(parts[0]) == []


def test_an_opening_id_that_could_inject_a_field_is_refused() -> None:
    with pytest.raises(StreamError) as caught:
        ReplyBody(batches_of(), ours(), opening_id="g:0\ndata: injected")
    assert caught.value.code == StreamErrorCode.INVALID_FIELD


async def test_an_empty_batch_is_a_keepalive_comment() -> None:
    parts = await body_bytes(ReplyBody(batches_of([], [Chunk(1, "x")]), ours()))
    assert parts[:2] == [OPENING_COMMENT, KEEPALIVE_COMMENT]


class Cuts:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self) -> None:
        self.calls += 1


async def test_a_stream_error_ends_the_body_with_its_code_after_the_last_event() -> None:
    """The client may resume after it (a lost store, another process): no cut."""
    cut = Cuts()
    failure = StreamError(StreamErrorCode.STORE_UNAVAILABLE, "The event store failed")
    body = ReplyBody(batches_of([Chunk(4, "x")], failure), ours(), after=3, on_cut=cut)
    last = SSEParser().feed((await body_bytes(body))[-1])[0]
    assert last.id == "g:4"
    assert last.json() == {"error": "The event store failed", "code": "STORE_UNAVAILABLE"}
    assert cut.calls == 0


async def test_a_stream_error_before_any_event_names_the_cursor() -> None:
    failure = StreamError(StreamErrorCode.EVENTS_EXPIRED, "No longer stored")
    body = ReplyBody(batches_of(failure), ours(), after=9)
    last = SSEParser().feed((await body_bytes(body))[-1])[0]
    assert (last.id, last.json()["code"]) == ("g:9", "EVENTS_EXPIRED")


async def test_an_unexpected_failure_is_an_internal_error_without_its_details() -> None:
    cut = Cuts()
    body = ReplyBody(batches_of(RuntimeError("secret detail")), ours(), on_cut=cut)
    parts = await body_bytes(body)
    last = SSEParser().feed(parts[-1])[0]
    assert last.json()["code"] == "INTERNAL_ERROR"
    assert b"secret" not in b"".join(parts)
    assert cut.calls == 1  # nobody will follow it any more


async def test_closing_the_body_early_closes_its_batches_and_cuts_the_reply() -> None:
    closed: list[str] = []
    cut = Cuts()
    body = aiter(ReplyBody(batches_of([Chunk(1, "x")], [], closed=closed), ours(), on_cut=cut))
    assert await anext(body) == OPENING_COMMENT
    await anext(body)
    await body.aclose()  # type: ignore[attr-defined]
    assert closed == ["closed"]
    assert cut.calls == 1


async def test_a_body_closed_after_the_end_does_not_cut_the_reply() -> None:
    cut = Cuts()
    body = aiter(ReplyBody(batches_of([Chunk(1, "x"), Complete(2)], []), ours(), on_cut=cut))
    assert await anext(body) == OPENING_COMMENT
    assert b'"done":true' in await anext(body)
    await body.aclose()  # type: ignore[attr-defined]
    assert cut.calls == 0


async def test_on_close_is_called_once_when_the_response_closes() -> None:
    calls: list[str] = []
    body = ReplyBody(batches_of(), ours(), on_close=lambda: calls.append("closed"))
    response = SSEResponse(body)
    await body_bytes(body)
    assert calls == []
    response.close()
    response.close()
    assert calls == ["closed"]


def test_on_close_is_called_when_a_body_is_dropped_unread() -> None:
    """A response lost before it was returned (its request cancelled in a middleware)
    is never closed: its body still stops counting its follower."""
    calls: list[str] = []
    body = ReplyBody(batches_of(), ours(), on_close=lambda: calls.append("closed"))
    del body
    gc.collect()
    assert calls == ["closed"]


def test_on_close_is_called_when_a_body_refuses_its_arguments() -> None:
    """A body that cannot be made (an id with a newline) is not returned to anyone who
    could close it: its follower stops counting all the same."""
    calls: list[str] = []
    with pytest.raises(StreamError):
        ReplyBody(batches_of(), ours(), opening_id="a\nb", on_close=lambda: calls.append("closed"))
    gc.collect()
    assert calls == ["closed"]


async def test_a_body_is_read_once() -> None:
    body = ReplyBody(batches_of(), ours())
    await body_bytes(body)
    with pytest.raises(StreamError):
        aiter(body)


def test_under_wsgi_the_body_says_it_needs_an_asgi_server() -> None:
    parts = list(ReplyBody(batches_of(), ours()))
    error = SSEParser().feed(b"".join(parts))[0]
    assert error.event == "error"
    assert "needs an ASGI server" in error.json()["message"]


@pytest.mark.parametrize("where", ["here", "elsewhere"])
async def test_a_quiet_follower_gets_a_heartbeat_then_the_rest(where: str) -> None:
    """After ``heartbeat`` seconds without an event an empty batch comes (the transport
    sends a keep-alive); events are not held back by it, and none is lost."""
    store = MemoryStore()
    runner = Generations(store)
    follower = runner if where == "here" else Generations(store)
    generation_id = await runner.start(paced(3, 0.7, []), Pipeline(), owner="me")
    batches: list[list[object]] = []
    async with asyncio.timeout(LIMIT):
        async for batch in follower.follow(generation_id, "me", heartbeat=0.25):
            batches.append(list(batch))
    text = "".join(e.text for batch in batches for e in batch if isinstance(e, Chunk))
    assert text == "0 1 2 "
    assert isinstance(batches[-1][-1], Complete)
    assert [] in batches  # 0.7 s between tokens: at least one heartbeat between two


async def token_then_silence(silence: float) -> AsyncGenerator[str]:
    yield "first "
    await asyncio.sleep(silence)
    yield "last "


@pytest.mark.parametrize("where", ["here", "elsewhere"])
async def test_a_follower_silent_after_a_batch_gets_a_heartbeat_every_period(
    where: str,
) -> None:
    """The heartbeat counts the silence from the last batch: 2.2 s without one, with
    ``heartbeat`` = 0.4, bring one each 0.4 s (5), not one each 0.8 s (2; one more than
    that allowed late on a loaded machine)."""
    store = MemoryStore()
    runner = Generations(store)
    follower = runner if where == "here" else Generations(store)
    generation_id = await runner.start(token_then_silence(2.2), Pipeline(), owner="me")
    batches: list[list[object]] = []
    async with asyncio.timeout(LIMIT):
        async for batch in follower.follow(generation_id, "me", heartbeat=0.4):
            batches.append(list(batch))
    texts = [e.text for batch in batches for e in batch if isinstance(e, Chunk)]
    assert texts == ["first ", "last "]
    first = next(i for i, batch in enumerate(batches) if batch)
    between = batches[first + 1 : next(i for i in range(first + 1, len(batches)) if batches[i])]
    assert len(between) >= 3
    assert all(batch == [] for batch in between)


async def test_a_busy_follower_gets_no_heartbeat() -> None:
    generations = Generations(MemoryStore())
    generation_id = await generations.start(paced(30, 0.02, []), Pipeline(), owner="me")
    batches: list[list[object]] = []
    async with asyncio.timeout(LIMIT):
        async for batch in generations.follow(generation_id, "me", heartbeat=0.3):
            batches.append(list(batch))
    assert [] not in batches
