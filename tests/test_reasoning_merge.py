"""A reply's reasoning is merged as its text is: the ``reasoning`` pieces that come together
(a source's ``Reasoning`` pieces, a ``<thought>`` read by ``ReasoningExtractor``) are one
``reasoning`` event whose text is theirs joined, never merged across text or another
event; on the wire (SSE, WebSocket, the AI SDK's parts) and on a resume the reasoning is
the same text, once. In process, with each store (memory, and Redis through the flusher).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import pytest
from django.test import override_settings

from streaming import event_writer
from streaming.events import Chunk, Complete, Event, GenerationEvent
from streaming.extractors import Pipeline, ReasoningExtractor, XmlTagExtractor
from streaming.extractors.base import ExtractorEvent
from streaming.generations import Generations
from streaming.protocols.ai_sdk import UIMessageChunks
from streaming.protocols.sse import SSEMessages
from streaming.protocols.websocket import WebSocketFrames
from streaming.sources import Reasoning
from streaming.store import MemoryStore
from streaming.store.base import EventStore

from .generation_helpers import everything

LIMIT = 10.0
#: A reasoning model's reasoning, a few characters a piece, as deltas come.
THOUGHT = "The user says hi; a < b </thought> is no end & 👋. " * 4
PIECES = [THOUGHT[i : i + 3] for i in range(0, len(THOUGHT), 3)]


@pytest.fixture
def one_slice(monkeypatch: pytest.MonkeyPatch) -> None:
    """A source ready at once is never asked to give way midway, however slow the host:
    what it sends is sealed in one turn (one event per run, exactly)."""
    monkeypatch.setattr(event_writer, "FIRST_SLICE", LIMIT)
    monkeypatch.setattr(event_writer, "BURST_SLICE", LIMIT)


class Marker:
    """An extractor that passes text through and turns a ``"!"`` chunk into an event
    ``mark`` (not a piece of a text: never merged)."""

    def __init__(self) -> None:
        self.events: list[ExtractorEvent] = []
        self.marks = 0

    done = False

    def push(self, chunk: str) -> str:
        if chunk == "!":
            self.marks += 1
            self.events.append(ExtractorEvent("mark", {"n": self.marks}))
            return ""
        return chunk

    def flush(self) -> str:
        return ""

    def reset(self) -> None:
        self.events = []

    def drain_events(self) -> list[ExtractorEvent]:
        events, self.events = self.events, []
        return events


async def ready(*pieces: str) -> AsyncIterator[str]:
    """``pieces`` ready at once, as from one read of a model's socket."""
    for piece in pieces:
        yield piece


async def finished(generations: Generations, source: Any, pipeline: Pipeline) -> list[Any]:
    """Run a reply nobody follows meanwhile to its end, then read all its events."""
    generation_id = await generations.start(source, pipeline, owner="me", forward_events=True)
    await asyncio.wait_for(generations.running[generation_id].task, LIMIT)
    return await asyncio.wait_for(everything(generations, generation_id), LIMIT)


def reasoning(events: list[GenerationEvent]) -> list[str]:
    return [e.data["text"] for e in events if isinstance(e, Event) and e.name == "reasoning"]


async def test_reasoning_ready_at_once_is_one_event(store: EventStore, one_slice: None) -> None:
    source = ready(*map(Reasoning, PIECES), "Hi", " there")
    events = await finished(Generations(store), source, Pipeline())
    assert events == [
        Event(1, "reasoning", {"text": THOUGHT}),
        Chunk(2, "Hi there"),
        Complete(3),
    ]


async def test_runs_are_never_merged_across_text_or_another_event(
    store: EventStore, one_slice: None
) -> None:
    """Each run of one kind is its own event, in the order it came."""
    r = Reasoning
    source = ready(r("a"), r("b"), "!", r("c"), "x", "y", r("d"), r("e"), "!", "z", r("f"))
    events = await finished(Generations(store), source, Pipeline(Marker()))
    assert events == [
        Event(1, "reasoning", {"text": "ab"}),
        Event(2, "mark", {"n": 1}),
        Event(3, "reasoning", {"text": "c"}),
        Chunk(4, "xy"),
        Event(5, "reasoning", {"text": "de"}),
        Event(6, "mark", {"n": 2}),
        Chunk(7, "z"),
        Event(8, "reasoning", {"text": "f"}),
        Complete(9),
    ]


async def test_a_thought_ready_at_once_is_one_reasoning_event(
    store: EventStore, one_slice: None
) -> None:
    """The chat's XML pipeline: the ``<thought>`` read a few characters a chunk."""
    thought = THOUGHT.replace("</thought>", "")
    xml = f"<response><thought>{thought}</thought><text>Hi</text></response>"
    chunks = [xml[i : i + 3] for i in range(0, len(xml), 3)]
    pipeline = Pipeline(ReasoningExtractor(), XmlTagExtractor("text"))
    events = await finished(Generations(store), ready(*chunks), pipeline)
    assert events == [
        Event(1, "reasoning", {"text": thought}),
        Chunk(2, "Hi"),
        Complete(3),
    ]
    assert pipeline.reasoning == thought


async def test_paced_reasoning_is_merged_per_flush_interval() -> None:
    """``FLUSH_INTERVAL_MS``: reasoning a model paces faster than the interval goes out
    merged, as its text does, and a follower reads it all."""

    async def paced() -> AsyncIterator[str]:
        for piece in PIECES:
            await asyncio.sleep(0.002)
            yield Reasoning(piece)
        yield "Hi"

    with override_settings(STREAMING={"FLUSH_INTERVAL_MS": 50}):
        generations = Generations(MemoryStore())
        generation_id = await generations.start(
            paced(), Pipeline(), owner="me", forward_events=True
        )
        events = await asyncio.wait_for(everything(generations, generation_id), LIMIT)
    said = reasoning(events)
    assert "".join(said) == THOUGHT
    assert len(said) < len(PIECES) / 3, said  # 2 ms a piece, 50 ms a flush


async def bursts(count: int, between: float) -> AsyncIterator[str]:
    """The reasoning in ``count`` bursts of pieces ready at once, ``between`` apart, then
    the answer."""
    size = -(-len(PIECES) // count)
    for start in range(0, len(PIECES), size):
        if start:
            await asyncio.sleep(between)
        for piece in PIECES[start : start + size]:
            yield Reasoning(piece)
    await asyncio.sleep(between)
    yield "Hi"


async def test_a_resume_mid_reasoning_gets_the_exact_rest(
    store: EventStore, one_slice: None
) -> None:
    """A follower that leaves after the first reasoning event, and resumes after the last
    one it read, gets the rest of the reasoning exactly (nothing lost, nothing twice),
    merged as the first follower saw it."""
    generations = Generations(store)
    generation_id = await generations.start(
        bursts(6, 0.03), Pipeline(), owner="me", policy="keep", forward_events=True
    )
    before: list[GenerationEvent] = []
    async with asyncio.timeout(LIMIT):
        async with aclosing(generations.follow(generation_id, "me")) as batches:
            async for batch in batches:
                before += batch
                if reasoning(before):
                    break
        after: list[GenerationEvent] = []
        async for batch in generations.follow(generation_id, "me", after=before[-1].seq):
            after += batch
    events = before + after
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert "".join(reasoning(before)) + "".join(reasoning(after)) == THOUGHT
    assert reasoning(after)  # the resume was mid-reasoning
    assert "".join(e.text for e in events if isinstance(e, Chunk)) == "Hi"
    # A burst is at most two events: its first piece, handed at once to the follower
    # waiting for it, and the rest of it.
    assert len(reasoning(events)) <= 2 * 6 < len(PIECES)


async def test_the_wire_carries_one_message_per_merged_run(
    store: EventStore, one_slice: None
) -> None:
    """SSE ``event: reasoning``, the WebSocket's ``event`` frames and the AI SDK's
    ``reasoning-delta`` parts: one each for the reasoning ready at once."""
    source = ready(*map(Reasoning, PIECES), "Hi")
    events = await finished(Generations(store), source, Pipeline())
    sse = SSEMessages().messages("g", events)
    assert [(m.event, m.data) for m in sse if m.event == "reasoning"] == [
        ("reasoning", {"text": THOUGHT})
    ]
    frames = WebSocketFrames().messages("g", events)
    assert [f for f in frames if f["type"] == "event"] == [
        {
            "type": "event",
            "name": "reasoning",
            "data": {"text": THOUGHT},
            "message_id": "g",
            "seq": 1,
        }
    ]
    assert UIMessageChunks("m").messages("g", events) == [
        {"type": "start", "messageId": "m"},
        {"type": "reasoning-start", "id": "reasoning-1"},
        {"type": "reasoning-delta", "id": "reasoning-1", "delta": THOUGHT},
        {"type": "reasoning-end", "id": "reasoning-1"},
        {"type": "text-start", "id": "text-2"},
        {"type": "text-delta", "id": "text-2", "delta": "Hi"},
        {"type": "text-end", "id": "text-2"},
        {"type": "finish", "finishReason": "stop"},
    ]
