"""Generations in-process: policies, cancel requests, merging, who may follow, event ids."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import pytest
from django.test import override_settings

from streaming import StreamError, event_writer
from streaming.events import (
    Cancelled,
    Chunk,
    Complete,
    Error,
    Event,
    GenerationEvent,
    merge_chunks,
)
from streaming.extractors import Pipeline
from streaming.generations import Generations, parse_event_id
from streaming.store import MemoryStore
from streaming.store.base import EventStore

from .extractors.async_callbacks import recording_flush_callbacks
from .generation_helpers import everything, paced
from .redis_server import redis_server

LIMIT = 10.0


async def test_a_followed_reply_completes_with_all_its_text() -> None:
    generations = Generations(MemoryStore())
    generation_id = await generations.start(paced(20, 0.001, []), Pipeline(), owner="me")
    events = await asyncio.wait_for(everything(generations, generation_id), LIMIT)
    text = "".join(e.text for e in events if isinstance(e, Chunk))
    assert text == "".join(f"{i} " for i in range(20))
    assert events[-1] == Complete(len(events))  # the text is stored once, in the chunks
    assert [e.seq for e in events] == list(range(1, len(events) + 1))


async def test_async_callbacks_the_pipelines_flush_calls_are_awaited() -> None:
    """Level 2 emits its fields at the flush: their async callbacks run before the end
    (without the drain there, never: a coroutine never awaited)."""
    extractor, seen = recording_flush_callbacks()

    async def reply() -> AsyncIterator[str]:
        yield "<text>Hi</text>"

    generations = Generations(MemoryStore())
    generation_id = await generations.start(reply(), Pipeline(extractor), owner="me")
    events = await asyncio.wait_for(everything(generations, generation_id), LIMIT)
    assert "".join(e.text for e in events if isinstance(e, Chunk)) == "Hi"
    assert seen == ["chunk", "complete"]
    assert not extractor.callbacks.pending


class CountedBurst:
    """``count`` one-character chunks ready at once; ``read`` says how many were read."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.read = 0

    async def __aiter__(self) -> AsyncIterator[str]:
        for _ in range(self.count):
            self.read += 1
            yield "x"


async def test_text_ready_at_once_is_merged_but_streams_as_it_is_read(store: EventStore) -> None:
    """Also with a store written by the flusher: while a write is on its way, the text
    that arrives is merged, never one event per chunk (which made 50,000 ready chunks
    50,000 events, and each write re-encode every pending one)."""
    burst = CountedBurst(50_000)
    generations = Generations(store)
    generation_id = await generations.start(burst, Pipeline(), owner="me")
    events: list[GenerationEvent] = []
    read_at_first = None
    async with asyncio.timeout(LIMIT):
        async for batch in generations.follow(generation_id, "me"):
            read_at_first = burst.read if read_at_first is None else read_at_first
            events += batch
    assert "".join(e.text for e in events if isinstance(e, Chunk)) == "x" * 50_000
    # The first text goes out while the source is still being read, not at its end …
    assert read_at_first is not None and read_at_first < 50_000
    # … and what is ready at once is merged (a few milliseconds of chunks per event).
    assert len(events) <= 500


async def test_the_first_text_of_a_burst_reaches_the_connection_before_the_source_reads_on(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A follower's connection writes at the next loop turn (daphne's does: Twisted
    writes when the socket is next found writable). The generation used to read on for a
    whole slice of the source (4 ms) before that turn, for each step of the first event
    (10 to 20 ms in all); it now leaves the loop to the first events until the follower
    has given them to its connection and that turn has passed."""
    monkeypatch.setattr(event_writer, "FIRST_WAIT", LIMIT)  # however slow the host
    burst = CountedBurst(200_000)
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    written: list[int] = []

    def write() -> None:  # the socket is writable: the connection writes what it has
        loop.remove_writer(ours)
        written.append(burst.read)

    generations = Generations(store)
    generation_id = await generations.start(burst, Pipeline(), owner="me")
    taken = None
    try:
        async with asyncio.timeout(LIMIT):
            async for batch in generations.follow(generation_id, "me"):
                if taken is None:
                    taken = burst.read
                    loop.add_writer(ours, write)
                if isinstance(batch[-1], Complete):
                    break
    finally:
        ours.close()
        theirs.close()
    assert taken is not None and taken < 200_000
    assert written == [taken]  # not a chunk more read before the first text was written


async def test_a_burst_nobody_here_follows_is_not_held_back() -> None:
    """The wait for a burst's first events to go out is bounded: with no follower in
    this process (its client left, or follows from another process) the reply runs on."""
    generations = Generations(MemoryStore())
    source = (text for text in ["x"] * 100_000)
    generation_id = await generations.start(source, Pipeline(), owner="me")
    await asyncio.wait_for(generations.running[generation_id].task, LIMIT)
    events = await everything(generations, generation_id)
    assert "".join(e.text for e in events if isinstance(e, Chunk)) == "x" * 100_000


async def test_a_replys_first_events_are_written_without_the_store_batch_wait() -> None:
    """``STORE_BATCH_MS`` gathers the writes of all replies into one round trip; the
    first events of a reply, which its client waits for, go at once."""
    from streaming.store.redis import RedisStore

    more = asyncio.Event()

    async def source() -> AsyncIterator[str]:
        yield "first"
        await more.wait()
        yield "second"

    with redis_server() as redis, override_settings(STREAMING={"STORE_BATCH_MS": 600_000}):
        generations = Generations(RedisStore(url=redis.url))
        generation_id = await generations.start(source(), Pipeline(), owner="me")
        async with (
            asyncio.timeout(LIMIT),
            aclosing(generations.follow(generation_id, "me")) as batches,
        ):
            first = await anext(batches)
        assert first == [Chunk(1, "first")]
        await generations.cancel(generation_id)


async def test_an_unwatched_kept_reply_is_cancelled_after_the_grace_period() -> None:
    finished: list[str] = []
    generations = Generations(MemoryStore())
    with override_settings(STREAMING={"KEEP_GRACE": 0.3}):
        generation_id = await generations.start(
            paced(1000, 0.01, finished), Pipeline(), owner="me", policy="keep"
        )
        task = generations.running[generation_id].task
        await asyncio.wait_for(task, LIMIT)
    events = await everything(generations, generation_id)
    assert isinstance(events[-1], Cancelled)
    assert finished == ["finally"]


async def test_a_kept_reply_that_is_followed_runs_to_its_end() -> None:
    generations = Generations(MemoryStore())
    with override_settings(STREAMING={"KEEP_GRACE": 0.3}):
        generation_id = await generations.start(
            paced(80, 0.01, []), Pipeline(), owner="me", policy="keep"
        )
        events = await asyncio.wait_for(everything(generations, generation_id), LIMIT)
    assert isinstance(events[-1], Complete)


async def test_a_cancel_from_another_process_stops_the_reply() -> None:
    store = MemoryStore()
    runner, elsewhere = Generations(store), Generations(store)
    finished: list[str] = []
    generation_id = await runner.start(paced(1000, 0.01, finished), Pipeline(), owner="me")
    await elsewhere.cancel(generation_id)  # not running there: a request through the store
    await asyncio.wait_for(runner.running[generation_id].task, LIMIT)
    events = await everything(elsewhere, generation_id)
    assert isinstance(events[-1], Cancelled)
    assert finished == ["finally"]


async def test_a_settled_cancel_from_another_process_returns_once_the_reply_is_over() -> None:
    """A stop (``DELETE``) answered by another process than the one running the reply
    returns only once that process ended it: a prompt sent next does not find it running."""
    store = MemoryStore()
    runner, elsewhere = Generations(store), Generations(store)
    generation_id = await runner.start(paced(1000, 0.01, []), Pipeline(), owner="me")
    await asyncio.wait_for(elsewhere.cancel(generation_id, settle=True), LIMIT)
    assert await store.is_finished(generation_id)
    assert generation_id not in runner.running


async def test_a_stop_of_a_finished_reply_asks_the_store_for_no_cancel() -> None:
    """Stops of a reply that is over (from any process) add nothing to the store's bounded
    feed of cancel requests, which a flood of them would otherwise fill with stale ones."""
    store = MemoryStore()
    runner, elsewhere = Generations(store), Generations(store)
    generation_id = await runner.start(paced(2, 0, []), Pipeline(), owner="me")
    await asyncio.wait_for(everything(runner, generation_id), LIMIT)
    _, cursor = await store.cancel_requests(None)
    for _ in range(3):
        await elsewhere.cancel(generation_id)
        await elsewhere.cancel(generation_id, settle=True)
    assert await store.cancel_requests(cursor) == ([], cursor)


async def test_a_settled_cancel_of_an_unknown_reply_returns_at_once() -> None:
    generations = Generations(MemoryStore())
    await asyncio.wait_for(generations.cancel("f" * 32, settle=True), 0.5)


async def test_a_cancel_right_after_the_start_still_ends_the_log() -> None:
    """A reply stopped at once (an ``abort`` that arrived with its ``send``) must still
    end with ``Cancelled``: its followers would otherwise wait for it forever."""
    generations = Generations(MemoryStore())
    generation_id = await generations.start(paced(1000, 0.01, []), Pipeline(), owner="me")
    await generations.cancel(generation_id)
    events = await asyncio.wait_for(everything(generations, generation_id), LIMIT)
    assert events == [Cancelled(1)]


async def test_a_failing_source_ends_with_an_error_event_without_details() -> None:
    async def broken() -> AsyncIterator[str]:
        yield "partial "
        raise RuntimeError("secret")

    generations = Generations(MemoryStore())
    generation_id = await generations.start(broken(), Pipeline(), owner="me")
    events = await asyncio.wait_for(everything(generations, generation_id), LIMIT)
    assert events[0] == Chunk(1, "partial ")
    assert events[-1] == Error(2, "INTERNAL_ERROR", "The model stream failed")


async def test_only_the_owner_may_follow() -> None:
    generations = Generations(MemoryStore())
    generation_id = await generations.start(paced(3, 0, []), Pipeline(), owner="me")
    with pytest.raises(StreamError) as caught:
        async for _ in generations.follow(generation_id, "someone else"):
            pass
    assert caught.value.code == "NOT_FOUND"
    with pytest.raises(StreamError):
        await generations.check_owner("no-such-id", "me")


@pytest.mark.parametrize(
    ("value", "parsed"),
    [("abc:3", ("abc", 3)), ("abc:", None), (":3", None), ("abc:x", None), ("7", None)],
)
def test_event_ids_name_a_generation_and_a_position(
    value: str, parsed: tuple[str, int] | None
) -> None:
    assert parse_event_id(value) == parsed


def test_runs_of_chunks_are_merged_and_numbered_as_their_last() -> None:
    event = Event(3, "x", {})
    end = Complete(6, "abcde")
    batch = [Chunk(1, "a"), Chunk(2, "b"), event, Chunk(4, "c"), Chunk(5, "de"), end]
    assert merge_chunks(batch) == [Chunk(2, "ab"), event, Chunk(5, "cde"), end]


class FlakyFeedStore(MemoryStore):
    """A memory store whose feed of cancel requests fails while ``failing`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.failing = False

    async def cancel_requests(self, cursor: Any) -> tuple[list[str], Any] | None:
        if self.failing:
            raise StreamError("STORE_UNAVAILABLE", "The event store is unavailable")
        return await super().cancel_requests(cursor)


async def test_a_store_failing_once_for_the_watcher_cancels_nothing() -> None:
    """One failed call (a blip) is asked again; the replies run on to their end."""
    store = FlakyFeedStore()
    generations = Generations(store)
    with override_settings(STREAMING={"LEASE_SECONDS": 5.0}):
        generation_id = await generations.start(paced(15, 0.1, []), Pipeline(), owner="me")
        store.failing = True
        await asyncio.sleep(0.7)  # at least one watcher turn fails
        store.failing = False
        events = await asyncio.wait_for(everything(generations, generation_id), LIMIT)
    assert isinstance(events[-1], Complete)


async def test_a_store_failing_for_the_lease_cancels_the_replies_here() -> None:
    """Failing for LEASE_SECONDS: other processes hold these replies for dead by then."""
    store = FlakyFeedStore()
    generations = Generations(store)
    with override_settings(STREAMING={"LEASE_SECONDS": 1.0}):
        generation_id = await generations.start(paced(1000, 0.05, []), Pipeline(), owner="me")
        store.failing = True
        task = generations.running[generation_id].task
        await asyncio.wait_for(asyncio.shield(task), LIMIT)
        events = await asyncio.wait_for(everything(generations, generation_id), LIMIT)
    assert isinstance(events[-1], Cancelled)


async def test_a_store_write_stopped_midway_ends_its_reply_instead_of_hanging() -> None:
    """The process's store writer is cancelled (its event loop closing) during a write:
    the reply waiting for that write fails with the store's error instead of waiting
    forever."""

    class StuckStore(MemoryStore):
        async def append_many(self, stream_id: str, items: list[dict[str, Any]]) -> int:
            await asyncio.Event().wait()  # a write that never returns
            return 0

    generations = Generations(StuckStore())
    finished: list[str] = []
    generation_id = await generations.start(paced(1_000, 0.01, finished), Pipeline(), owner="me")
    running = generations.running[generation_id]
    async with asyncio.timeout(LIMIT):
        while not running.writer.writing:
            await asyncio.sleep(0.01)
    flusher = generations._flusher
    assert flusher is not None and flusher.task is not None
    flusher.task.cancel()
    await asyncio.wait({running.task}, timeout=LIMIT)
    assert running.task.done() and finished == ["finally"]
    assert running.writer.failure is not None
    assert running.writer.failure.code == "STORE_UNAVAILABLE"
