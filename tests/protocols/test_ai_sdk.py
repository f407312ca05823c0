"""The AI SDK's protocols: typed events to UI message chunks, SSE lines and WebSocket frames.

The real client reads them in tests/js (tests/test_ai_sdk_node.py); these pin the mapping.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from streaming.errors import StreamError, StreamErrorCode
from streaming.events import Cancelled, Chunk, Complete, Error, Event, GenerationEvent
from streaming.protocols.ai_sdk import (
    DONE,
    ChatTransportFrames,
    UIMessageChunks,
    error_frame,
    no_active_frame,
    reasoning_text,
    sse_messages,
)


def chunks_of(events: list[GenerationEvent], message_id: str = "m1") -> list[dict[str, Any]]:
    return UIMessageChunks(message_id).messages("g1", events)


def test_text_reply() -> None:
    assert chunks_of([Chunk(1, "Hel"), Chunk(2, "lo"), Complete(3, "Hello")]) == [
        {"type": "start", "messageId": "m1"},
        {"type": "text-start", "id": "text-1"},
        {"type": "text-delta", "id": "text-1", "delta": "Hel"},
        {"type": "text-delta", "id": "text-1", "delta": "lo"},
        {"type": "text-end", "id": "text-1"},
        {"type": "finish", "finishReason": "stop"},
    ]


def test_reasoning_then_text_are_two_parts() -> None:
    events: list[GenerationEvent] = [
        Event(1, "reasoning", "I think"),
        Event(2, "reasoning", {"delta": " hard"}),
        Chunk(3, "Answer"),
        Complete(4, "Answer"),
    ]
    assert chunks_of(events) == [
        {"type": "start", "messageId": "m1"},
        {"type": "reasoning-start", "id": "reasoning-1"},
        {"type": "reasoning-delta", "id": "reasoning-1", "delta": "I think"},
        {"type": "reasoning-delta", "id": "reasoning-1", "delta": " hard"},
        {"type": "reasoning-end", "id": "reasoning-1"},
        {"type": "text-start", "id": "text-2"},
        {"type": "text-delta", "id": "text-2", "delta": "Answer"},
        {"type": "text-end", "id": "text-2"},
        {"type": "finish", "finishReason": "stop"},
    ]


def test_empty_text_opens_no_part() -> None:
    assert chunks_of([Chunk(1, ""), Event(2, "reasoning", ""), Complete(3, "")]) == [
        {"type": "start", "messageId": "m1"},
        {"type": "finish", "finishReason": "stop"},
    ]


def test_error_closes_the_open_part_then_says_why() -> None:
    events: list[GenerationEvent] = [Chunk(1, "Hi"), Error(2, "TIMEOUT", "The model went quiet")]
    assert chunks_of(events)[-2:] == [
        {"type": "text-end", "id": "text-1"},
        {"type": "error", "errorText": "The model went quiet"},
    ]


def test_cancelled_is_an_abort() -> None:
    assert chunks_of([Event(1, "reasoning", "hm"), Cancelled(2)])[-2:] == [
        {"type": "reasoning-end", "id": "reasoning-1"},
        {"type": "abort", "reason": "The reply was cancelled"},
    ]


def test_other_extractor_events_are_transient_data_chunks() -> None:
    event = Event(1, "field_validated", {"field": "text", "valid": True})
    assert chunks_of([event])[1] == {
        "type": "data-field_validated",
        "data": {"field": "text", "valid": True},
        "transient": True,
    }


def test_failure_outside_the_reply() -> None:
    error = StreamError(StreamErrorCode.STORE_UNAVAILABLE, "The event store failed")
    assert UIMessageChunks("m").failure(error) == {
        "type": "error",
        "errorText": "The event store failed",
    }


def test_reasoning_text_shapes() -> None:
    assert reasoning_text("a") == "a"
    assert reasoning_text({"text": "b"}) == "b"
    assert reasoning_text({"delta": "c"}) == "c"
    assert reasoning_text({"other": 1}) == ""
    assert reasoning_text(None) == ""


def test_sse_lines_end_with_done() -> None:
    wire = b"".join(
        message.encode() for message in sse_messages([{"type": "finish"}], done=True)
    ).decode()
    assert wire == 'data: {"type":"finish"}\n\ndata: [DONE]\n\n'
    assert DONE == "[DONE]"
    assert [m.data for m in sse_messages([{"type": "start"}], done=False)] == [{"type": "start"}]


reply_events = st.lists(
    st.one_of(
        st.text(max_size=3).map(lambda text: ("chunk", text)),
        st.text(max_size=3).map(lambda text: ("reasoning", text)),
        st.just(("other", "")),
    ),
    max_size=12,
)


def numbered(kinds: list[tuple[str, str]]) -> list[GenerationEvent]:
    events: list[GenerationEvent] = []
    for seq, (kind, text) in enumerate(kinds, start=1):
        if kind == "chunk":
            events.append(Chunk(seq, text))
        elif kind == "reasoning":
            events.append(Event(seq, "reasoning", text))
        else:
            events.append(Event(seq, "other", {}))
    events.append(Complete(len(kinds) + 1, ""))
    return events


@given(reply_events, st.data())
def test_batching_changes_nothing(kinds: list[tuple[str, str]], data: st.DataObject) -> None:
    """Live followers get the events in any batches; a replay reads them in others: the
    chunks (and so the WebSocket sequence numbers) must be the same."""
    events = numbered(kinds)
    whole = chunks_of(events)
    cuts = sorted(data.draw(st.sets(st.integers(0, len(events)))))
    batched = UIMessageChunks("m1")
    out: list[dict[str, Any]] = []
    for start, end in zip([0, *cuts], [*cuts, len(events)], strict=True):
        out += batched.messages("g1", events[start:end])
    assert out == whole


@given(reply_events)
def test_parts_are_well_formed(kinds: list[tuple[str, str]]) -> None:
    """Every delta is inside a started part of its kind; every started part ends."""
    open_part: tuple[str, str] | None = None
    for chunk in chunks_of(numbered(kinds))[1:]:
        kind = chunk["type"]
        if kind.endswith("-start"):
            assert open_part is None
            open_part = (kind.removesuffix("-start"), chunk["id"])
        elif kind.endswith("-delta"):
            assert open_part == (kind.removesuffix("-delta"), chunk["id"])
            assert chunk["delta"]
        elif kind.endswith("-end"):
            assert open_part == (kind.removesuffix("-end"), chunk["id"])
            open_part = None
    assert open_part is None


def test_frames_number_chunks_from_zero() -> None:
    frames = ChatTransportFrames("r1", "m1")
    assert frames.start() == {"type": "start", "requestId": "r1"}
    out = frames.frames("g1", [Chunk(1, "a")]) + frames.frames("g1", [Complete(2, "a")])
    assert [frame["sequence"] for frame in out] == [0, 1, 2, 3, 4]
    assert {frame["type"] for frame in out} == {"chunk"}
    assert {frame["requestId"] for frame in out} == {"r1"}
    assert [frame["chunk"]["type"] for frame in out] == [
        "start",
        "text-start",
        "text-delta",
        "text-end",
        "finish",
    ]
    assert frames.end() == {"type": "end", "requestId": "r1"}


def test_frames_after_last_sequence_continue_where_the_client_stopped() -> None:
    events: list[GenerationEvent] = [Chunk(1, "a"), Chunk(2, "b"), Complete(3, "ab")]
    whole = ChatTransportFrames("r1", "m1").frames("g1", events)
    resumed = ChatTransportFrames("r2", "m1", last_sequence=2).frames("g1", events)
    assert [frame["sequence"] for frame in resumed] == [3, 4, 5]
    assert [frame["chunk"] for frame in resumed] == [frame["chunk"] for frame in whole[3:]]


def test_error_and_no_active_frames() -> None:
    error = StreamError(StreamErrorCode.NOT_FOUND, "No such chat")
    assert error_frame("r", error) == {
        "type": "error",
        "requestId": "r",
        "errorText": "No such chat",
    }
    assert ChatTransportFrames("r", "m").error(error) == error_frame("r", error)
    assert no_active_frame("r") == {"type": "no-active", "requestId": "r"}
