"""A store that needs a round trip (Redis) is written in batches, and the followers in the
process running a reply are handed its events before they are stored: a resume in another
process may then be ahead of the store, and waits for it (or learns the reply was
interrupted, when the process holding those events died)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import pytest
from django.test import override_settings

from streaming import StreamError, event_writer
from streaming.events import Chunk, Complete, Error, GenerationEvent, to_record
from streaming.extractors import Pipeline
from streaming.generations import Generations
from streaming.store import MemoryStore
from streaming.store.base import EventStore

from .redis_server import redis_server

LIMIT = 10.0
#: Long enough for something that should not happen to show.
QUIET = 0.3


class GatedStore(MemoryStore):
    """A memory store that must be awaited (as Redis), whose appends wait for ``gate``."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def append_many(self, stream_id: str, items: list[dict[str, Any]]) -> int:
        await self.gate.wait()
        return await super().append_many(stream_id, items)


async def tokens(texts: list[str], end: asyncio.Event | None = None) -> AsyncIterator[str]:
    """``texts`` one event-loop pause apart, then (with ``end``) wait for it."""
    for text in texts:
        await asyncio.sleep(0.01)
        yield text
    if end is not None:
        await end.wait()


async def take(batches: AsyncIterator[list[GenerationEvent]], count: int) -> list[GenerationEvent]:
    """The next events of ``batches`` until there are at least ``count``."""
    events: list[GenerationEvent] = []
    while len(events) < count:
        events += await anext(batches)
    return events


async def stored_seqs(store: EventStore, generation_id: str) -> list[int]:
    return [event.seq for event in await store.read(generation_id, 0, timeout=0)]


async def test_a_follower_here_gets_tokens_before_they_are_stored_and_the_end_after() -> None:
    store = GatedStore()
    generations = Generations(store)
    end = asyncio.Event()
    generation_id = await generations.start(tokens(["a", "b", "c"], end), Pipeline(), owner="me")
    async with (
        asyncio.timeout(LIMIT),
        aclosing(generations.follow(generation_id, "me")) as batches,
    ):
        events = await take(batches, 3)
        assert events == [Chunk(1, "a"), Chunk(2, "b"), Chunk(3, "c")]
        assert await stored_seqs(store, generation_id) == []  # every write waits
        end.set()
        ending = asyncio.create_task(anext(batches))
        await asyncio.sleep(QUIET)
        assert not ending.done()  # the terminal event goes out only once it is stored
        store.gate.set()
        events += await ending
    assert events[-1] == Complete(4)
    assert await stored_seqs(store, generation_id) == [1, 2, 3, 4]


async def test_at_most_max_unstored_events_are_handed_over_before_they_are_stored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(event_writer, "MAX_UNSTORED", 3)
    store = GatedStore()
    generations = Generations(store)
    texts = [f"{n} " for n in range(10)]
    generation_id = await generations.start(tokens(texts), Pipeline(), owner="me")
    async with (
        asyncio.timeout(LIMIT),
        aclosing(generations.follow(generation_id, "me")) as batches,
    ):
        events = await take(batches, 3)
        more = asyncio.create_task(anext(batches))
        await asyncio.sleep(QUIET)  # the source ends meanwhile; what it gave waits
        assert not more.done()
        store.gate.set()
        events += await more
        async for batch in batches:
            events += batch
    assert [event.seq for event in events] == list(range(1, len(events) + 1))
    assert "".join(e.text for e in events if isinstance(e, Chunk)) == "".join(texts)
    assert isinstance(events[-1], Complete)


async def test_a_resume_elsewhere_ahead_of_the_store_waits_for_it_then_gets_the_rest() -> None:
    """Two ``Generations`` on one store: two processes. The client saw 3 events here
    that are not stored yet, and resumes on the other one."""
    store = GatedStore()
    here, elsewhere = Generations(store), Generations(store)
    end = asyncio.Event()
    generation_id = await here.start(tokens(["a", "b", "c"], end), Pipeline(), owner="me")
    async with asyncio.timeout(LIMIT):
        async with aclosing(here.follow(generation_id, "me")) as batches:
            seen = await take(batches, 3)
        resumed = asyncio.create_task(elsewhere.has_more(generation_id, "me", 3))
        await asyncio.sleep(QUIET)
        assert not resumed.done()  # not BAD_CURSOR: it waits for the store
        store.gate.set()
        assert await resumed
        end.set()
        rest: list[GenerationEvent] = []
        async for batch in elsewhere.follow(generation_id, "me", 3):
            rest += batch
    assert seen + rest == [Chunk(1, "a"), Chunk(2, "b"), Chunk(3, "c"), Complete(4)]


@pytest.mark.parametrize("seen", [3, 4])
async def test_a_resume_ahead_of_a_reply_whose_process_died_gets_interrupted(
    store: EventStore, seen: int
) -> None:
    """The process died holding events its client saw (up to ``seen``; the store has 2):
    once its lease lapsed, a resume from that client's cursor gets the reply's
    ``INTERRUPTED`` end (seq 3, maybe the seq of a chunk the client saw), not
    ``BAD_CURSOR`` nor an empty end; so does the resume after it."""
    await store.create("g", owner="me", lease=0.3)
    await store.append_many("g", [to_record(Chunk(1, "a")), to_record(Chunk(2, "b"))])
    elsewhere = Generations(store)
    for _ in range(2):
        assert await asyncio.wait_for(elsewhere.has_more("g", "me", seen), LIMIT)
        events: list[GenerationEvent] = []
        async with asyncio.timeout(LIMIT):
            async for batch in elsewhere.follow("g", "me", seen):
                events += batch
        assert len(events) == 1 and isinstance(events[0], Error)
        assert (events[0].seq, events[0].code) == (3, "INTERRUPTED")


async def test_a_cursor_further_ahead_than_a_process_hands_over_is_refused_at_once(
    store: EventStore,
) -> None:
    await store.create("g", owner="me", lease=60)
    await store.append("g", to_record(Chunk(1, "a")))
    elsewhere = Generations(store)
    ahead = 1 + event_writer.MAX_UNSTORED + 1
    with pytest.raises(StreamError) as error:
        await asyncio.wait_for(elsewhere.has_more("g", "me", ahead), 1.0)
    assert (error.value.details or {}).get("reason") == "BAD_CURSOR"


async def test_a_resume_ahead_of_a_store_that_never_catches_up_is_refused_in_the_end(
    store: EventStore,
) -> None:
    """Its process lives (its lease is renewed) but never stores what the client saw: the
    resume waits twice ``LEASE_SECONDS``, then gets ``BAD_CURSOR``, not a wait forever."""
    await store.create("g", owner="me", lease=60)
    await store.append("g", to_record(Chunk(1, "a")))
    elsewhere = Generations(store)
    with override_settings(STREAMING={"LEASE_SECONDS": 0.25}):
        waiting = asyncio.create_task(elsewhere.has_more("g", "me", 2))
        await asyncio.sleep(QUIET)
        assert not waiting.done()
        with pytest.raises(StreamError) as error:
            await asyncio.wait_for(waiting, LIMIT)
    assert (error.value.details or {}).get("reason") == "BAD_CURSOR"


async def test_with_redis_a_resume_elsewhere_gets_what_a_follower_here_saw_unstored() -> None:
    """The same over a real redis-server, two stores (two connections), with a batch
    window so long that only the reply's first events and its end are written."""
    from streaming.store.redis import RedisStore

    end = asyncio.Event()
    with redis_server() as redis, override_settings(STREAMING={"STORE_BATCH_MS": 600_000}):
        here, elsewhere = (
            Generations(RedisStore(url=redis.url)),
            Generations(RedisStore(url=redis.url)),
        )
        source = tokens(["first", "second", "third"], end)
        generation_id = await here.start(source, Pipeline(), owner="me")
        async with asyncio.timeout(LIMIT):
            async with aclosing(here.follow(generation_id, "me")) as batches:
                seen = await take(batches, 3)
            assert await stored_seqs(elsewhere.store, generation_id) == [1]
            resumed = asyncio.create_task(elsewhere.has_more(generation_id, "me", 3))
            await asyncio.sleep(QUIET)
            assert not resumed.done()
            end.set()  # the reply ends: everything is written, its end last
            assert await resumed
            rest: list[GenerationEvent] = []
            async for batch in elsewhere.follow(generation_id, "me", 3):
                rest += batch
        await here.store.close()
        await elsewhere.store.close()
    assert seen == [Chunk(1, "first"), Chunk(2, "second"), Chunk(3, "third")]
    assert rest == [Complete(4)]
