"""Limits of a generation in-process: the reply-size cap, the model read no further than
its pipeline needs, the overall deadline, the text kept once, the drain on shutdown and
leases of replies whose process died."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from django.test import override_settings

from streaming import shutdown
from streaming.chat import RecordingPipeline
from streaming.events import Chunk, Complete, Error, GenerationEvent
from streaming.extractors import PassthroughExtractor, Pipeline, XmlTagExtractor
from streaming.generations import Generations
from streaming.store import MemoryStore

from .generation_helpers import everything, paced

LIMIT = 10.0


async def endless(piece: str, closed: list[str]) -> AsyncIterator[str]:
    try:
        while True:
            yield piece
            await asyncio.sleep(0)
    finally:
        closed.append("closed")


def text_of(events: list[GenerationEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, Chunk))


async def test_a_reply_past_max_reply_chars_ends_with_its_text_so_far() -> None:
    closed: list[str] = []
    with override_settings(STREAMING={"MAX_REPLY_CHARS": 1000}):
        generations = Generations(MemoryStore())
        generation_id = await generations.start(endless("abc", closed), Pipeline(), owner="me")
        events = await asyncio.wait_for(everything(generations, generation_id), LIMIT)
    assert text_of(events) == ("abc" * 334)[:1000]
    assert isinstance(events[-1], Error) and events[-1].code == "REPLY_TOO_LARGE"
    assert closed == ["closed"]  # the source (an upstream request) was closed


async def test_a_model_writing_past_max_reply_chars_unseen_is_cut_too() -> None:
    """Text the pipeline holds back or drops (a thought, text outside the tag) counts:
    the model is read no further than ``MAX_REPLY_CHARS`` whatever the client sees."""
    closed: list[str] = []
    with override_settings(STREAMING={"MAX_REPLY_CHARS": 1000}):
        generations = Generations(MemoryStore())
        pipeline = Pipeline(XmlTagExtractor("text"))
        generation_id = await generations.start(endless("hidden ", closed), pipeline, owner="me")
        events = await asyncio.wait_for(everything(generations, generation_id), LIMIT)
    assert text_of(events) == ""
    assert isinstance(events[-1], Error) and events[-1].code == "REPLY_TOO_LARGE"
    assert closed == ["closed"]


async def test_a_reply_cut_at_max_reply_chars_is_stored_as_it_was_streamed() -> None:
    """What ``on_end`` stores (the chat's message) is the text the client got, not the
    rest of the chunk that crossed the cap."""
    closed: list[str] = []
    recorded: list[str] = []
    pipeline = RecordingPipeline(PassthroughExtractor())

    async def on_end(end: str) -> None:
        recorded.append(pipeline.text)

    with override_settings(STREAMING={"MAX_REPLY_CHARS": 1000}):
        generations = Generations(MemoryStore())
        generation_id = await generations.start(
            endless("x" * 300, closed), pipeline, owner="me", on_end=on_end
        )
        events = await asyncio.wait_for(everything(generations, generation_id), LIMIT)
    assert recorded == [text_of(events)] and len(recorded[0]) == 1000


async def test_once_its_pipeline_is_done_the_model_is_no_longer_read() -> None:
    """The reply completes at the pipeline's end, its source closed: a model that writes
    on after the tag is not paid for, and one that stalls after it does not turn a
    finished reply into a timeout."""

    async def stalls_after_the_tag(closed: list[str]) -> AsyncIterator[str]:
        try:
            yield "<text>Hel"
            yield "lo</text> and"
            await asyncio.sleep(LIMIT)
            yield "never"
        finally:
            closed.append("closed")

    for source in (stalls_after_the_tag, lambda closed: endless("<text>Hello</text> more", closed)):
        closed: list[str] = []
        generations = Generations(MemoryStore())
        pipeline = Pipeline(XmlTagExtractor("text"))
        generation_id = await generations.start(source(closed), pipeline, owner="me")
        events = await asyncio.wait_for(everything(generations, generation_id), LIMIT / 2)
        assert text_of(events) == "Hello"
        assert isinstance(events[-1], Complete) and closed == ["closed"]


async def test_text_past_the_cap_after_the_pipeline_ended_does_not_fail_the_reply() -> None:
    closed: list[str] = []
    with override_settings(STREAMING={"MAX_REPLY_CHARS": 50}):
        generations = Generations(MemoryStore())
        pipeline = Pipeline(XmlTagExtractor("text"))
        source = endless("<text>Hi</text>" + "and more " * 10, closed)
        generation_id = await generations.start(source, pipeline, owner="me")
        events = await asyncio.wait_for(everything(generations, generation_id), LIMIT)
    assert text_of(events) == "Hi" and isinstance(events[-1], Complete)


async def test_a_reply_past_max_reply_seconds_ends_with_timeout() -> None:
    async def silent() -> AsyncIterator[str]:
        yield "a"
        await asyncio.sleep(LIMIT)
        yield "never"

    with override_settings(STREAMING={"MAX_REPLY_SECONDS": 0.2}):
        generations = Generations(MemoryStore())
        generation_id = await generations.start(silent(), Pipeline(), owner="me")
        events = await asyncio.wait_for(everything(generations, generation_id), LIMIT)
    assert text_of(events) == "a"
    assert isinstance(events[-1], Error) and events[-1].code == "TIMEOUT"


async def test_the_complete_event_does_not_store_the_text_again() -> None:
    async def words() -> AsyncIterator[str]:
        for word in ("one ", "two ", "three"):
            yield word
            await asyncio.sleep(0.01)

    store = MemoryStore()
    generations = Generations(store)
    generation_id = await generations.start(words(), Pipeline(), owner="me")
    events = await asyncio.wait_for(everything(generations, generation_id), LIMIT)
    assert isinstance(events[-1], Complete)
    stored = await store.read(generation_id, 0, timeout=0)
    assert stored[-1].data == {"type": "complete"}
    assert await generations.text_before(generation_id, events[-1].seq) == "one two three"
    assert await generations.text_before(generation_id, 2) == text_of(events[:2])


async def test_a_drain_ends_running_replies_with_shutting_down_in_the_store() -> None:
    store = MemoryStore()
    generations = Generations(store)
    try:
        generation_id = await generations.start(endless("x", []), Pipeline(), owner="me")
        follower = asyncio.create_task(everything(generations, generation_id))
        await asyncio.sleep(0.05)
        await shutdown.drain(LIMIT)
        events = await asyncio.wait_for(follower, LIMIT)
        assert isinstance(events[-1], Error) and events[-1].code == "SHUTTING_DOWN"
        assert await store.is_finished(generation_id)
        refused = await asyncio.gather(
            generations.start(endless("x", []), Pipeline(), owner="me"), return_exceptions=True
        )
        assert getattr(refused[0], "code", None) == "SHUTTING_DOWN"
    finally:
        shutdown.reset()


async def test_a_follower_ends_a_reply_whose_lease_lapsed() -> None:
    store = MemoryStore()
    await store.create("orphan", owner="me", lease=0.2)  # its process never renews it
    await store.append("orphan", {"type": "chunk", "text": "half"})
    events = await asyncio.wait_for(everything(Generations(store), "orphan"), LIMIT)
    assert text_of(events) == "half"
    assert isinstance(events[-1], Error) and events[-1].code == "INTERRUPTED"


async def test_one_task_renews_the_leases_of_every_local_reply() -> None:
    # Renewed every third of a lease: only a loop stalled for two thirds of one (1 s, on a
    # busy machine) would let a lease lapse. Paced models, as real ones are.
    with override_settings(STREAMING={"LEASE_SECONDS": 1.5}):
        generations = Generations(MemoryStore())
        ids = [
            await generations.start(paced(10_000, 0.01, []), Pipeline(), owner="me")
            for _ in range(3)
        ]
        renewer = generations.renewer
        await asyncio.sleep(2.0)  # longer than a lease: renewed, never lapsed
        assert generations.renewer is renewer
        for generation_id in ids:
            assert not await generations.store.interrupt_if_lapsed(generation_id, {})
            await generations.cancel(generation_id)
