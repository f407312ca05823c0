"""What a reply costs: followers in the process that runs it read no store, an open reply
waiting on its model makes no store calls, ``FLUSH_INTERVAL_MS`` merges fast tokens, and
many replies are renewed a slice at a time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from django.test import override_settings

from streaming import generations as generations_module
from streaming import limits as limits_module
from streaming.errors import StreamError, StreamErrorCode
from streaming.events import Cancelled, Chunk, Complete, GenerationEvent
from streaming.extractors import Pipeline
from streaming.generations import WATCH_INTERVAL, Generations
from streaming.limits import Limits, reserve
from streaming.store import MemoryStore
from streaming.store.base import StoredEvent

LIMIT = 10.0


class CountingStore(MemoryStore):
    """A memory store that counts the calls a generation and its followers make."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: dict[str, int] = {}

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    async def owner(self, stream_id: str) -> str | None:
        self._count("owner")
        return await super().owner(stream_id)

    async def read(self, stream_id: str, after: int, *, timeout: float) -> list[StoredEvent]:
        self._count("read")
        return await super().read(stream_id, after, timeout=timeout)

    async def touch(self, stream_id: str) -> None:
        self._count("touch")
        await super().touch(stream_id)

    async def cancel_requested(self, stream_id: str) -> bool:
        self._count("cancel_requested")
        return await super().cancel_requested(stream_id)

    async def last_watched(self, stream_id: str) -> float | None:
        self._count("last_watched")
        return await super().last_watched(stream_id)

    async def cancel_requests(self, cursor: Any) -> tuple[list[str], Any]:
        self._count("cancel_requests")
        return await super().cancel_requests(cursor)


async def paced(count: int, delay: float) -> AsyncIterator[str]:
    for index in range(count):
        await asyncio.sleep(delay)
        yield f"{index} "


async def everything(generations: Generations, generation_id: str) -> list[GenerationEvent]:
    events: list[GenerationEvent] = []
    async with asyncio.timeout(LIMIT):
        async for batch in generations.follow(generation_id, "me"):
            events += batch
    return events


async def test_a_follower_in_the_same_process_never_reads_the_store() -> None:
    store = CountingStore()
    generations = Generations(store)
    generation_id = await generations.start(paced(30, 0.002), Pipeline(), owner="me")
    events = await everything(generations, generation_id)
    assert "".join(e.text for e in events if isinstance(e, Chunk)) == "".join(
        f"{i} " for i in range(30)
    )
    assert isinstance(events[-1], Complete)
    assert store.calls.get("read", 0) == 0
    assert store.calls.get("touch", 0) == 0
    assert store.calls.get("owner", 0) == 0  # its owner is known here
    # … and the store has every event, for a resume here or elsewhere.
    stored = await store.read(generation_id, 0, timeout=0)
    assert [item.seq for item in stored] == [e.seq for e in events]


async def test_a_reply_running_here_is_refused_to_another_owner_without_the_store() -> None:
    store = CountingStore()
    generations = Generations(store)
    generation_id = await generations.start(paced(30, 0.002), Pipeline(), owner="me")
    with pytest.raises(StreamError) as refused:
        await generations.check_owner(generation_id, "someone else")
    assert refused.value.code == StreamErrorCode.NOT_FOUND
    assert store.calls.get("owner", 0) == 0
    await everything(generations, generation_id)
    async with asyncio.timeout(LIMIT):
        while generation_id in generations.running:
            await asyncio.sleep(0.01)
    # Once it has ended here, its owner is the store's to tell.
    await generations.check_owner(generation_id, "me")
    with pytest.raises(StreamError):
        await generations.check_owner(generation_id, "someone else")
    assert store.calls["owner"] == 2


async def test_a_follower_that_resumes_midway_gets_the_rest_once() -> None:
    generations = Generations(MemoryStore())
    generation_id = await generations.start(paced(40, 0.002), Pipeline(), owner="me")
    first: list[GenerationEvent] = []
    async with asyncio.timeout(LIMIT):
        async for batch in generations.follow(generation_id, "me"):
            first += batch
            if len(first) >= 5:
                break
    rest: list[GenerationEvent] = []
    async for batch in generations.follow(generation_id, "me", after=first[-1].seq):
        rest += batch
    seqs = [e.seq for e in first + rest]
    assert seqs == list(range(1, len(seqs) + 1))
    assert isinstance(rest[-1], Complete)


async def test_open_replies_waiting_on_their_model_make_no_store_calls() -> None:
    store = CountingStore()
    generations = Generations(store)
    forever = asyncio.Event()

    async def silent() -> AsyncIterator[str]:
        await forever.wait()
        yield "late"

    ids = [await generations.start(silent(), Pipeline(), owner="me") for _ in range(50)]
    followers = [asyncio.create_task(everything(generations, key)) for key in ids]
    await asyncio.sleep(WATCH_INTERVAL * 4)
    # One call per watch interval for all of them (the cancel requests), none per reply.
    assert set(store.calls) <= {"cancel_requests"}
    assert store.calls.get("cancel_requests", 0) <= 5
    forever.set()
    for events in await asyncio.gather(*followers):
        assert isinstance(events[-1], Complete)


async def test_tokens_within_the_flush_interval_make_one_event() -> None:
    """``paced`` makes each token only when asked (2 ms after): after two holds that found
    nothing ready, its text is sealed by a timer while it is read on, not one token per
    interval."""
    generations = Generations(MemoryStore())
    with override_settings(STREAMING={"FLUSH_INTERVAL_MS": 50}):
        generation_id = await generations.start(paced(60, 0.002), Pipeline(), owner="me")
    events = await everything(generations, generation_id)
    chunks = [e for e in events if isinstance(e, Chunk)]
    assert "".join(c.text for c in chunks) == "".join(f"{i} " for i in range(60))
    assert len(chunks) < 30  # about 120 ms of tokens in 50 ms slices: a few events


async def test_a_producer_behind_a_small_queue_is_not_held_back() -> None:
    """A source fed through a bounded queue makes a token or two per hold (its producer
    waits for room): after two such holds the reply reads on, sealing by a timer."""
    generations = Generations(MemoryStore())
    tokens: asyncio.Queue[str | None] = asyncio.Queue(maxsize=1)

    async def produce() -> None:
        for index in range(60):
            await tokens.put(f"{index} ")
            await asyncio.sleep(0.002)
        await tokens.put(None)

    async def model() -> AsyncIterator[str]:
        while (token := await tokens.get()) is not None:
            yield token

    producer = asyncio.create_task(produce())
    with override_settings(STREAMING={"FLUSH_INTERVAL_MS": 50}):
        generation_id = await generations.start(model(), Pipeline(), owner="me")
    events = await everything(generations, generation_id)
    await producer
    chunks = [e for e in events if isinstance(e, Chunk)]
    assert "".join(c.text for c in chunks) == "".join(f"{i} " for i in range(60))
    assert len(chunks) < 15  # held throughout: one or two tokens a message, 30 or more


class ClockModel:
    """A model writing token ``i`` ``i * gap`` seconds after its first one (after a
    ``pause`` once the first is written), whether or not it is read: the ones past due
    are ready at once, as from a socket's buffer. Counts the times a read had to wait."""

    def __init__(self, count: int, gap: float, pause: float = 0.0) -> None:
        self.count, self.gap, self.pause = count, gap, pause
        self.waits = 0

    async def __aiter__(self) -> AsyncIterator[str]:
        clock = asyncio.get_running_loop().time
        start = clock()
        yield "0 "
        start += self.pause
        for index in range(1, self.count):
            delay = start + index * self.gap - clock()
            if delay > 0:
                self.waits += 1
                await asyncio.sleep(delay)
            yield f"{index} "


async def test_a_flush_interval_reads_a_fast_model_once_per_interval() -> None:
    """With ``FLUSH_INTERVAL_MS`` the reply does not read its model while it holds a
    message: what the model wrote meanwhile is read at once after it, so the reply wakes
    about once per interval, not once per token."""
    generations = Generations(MemoryStore())
    model = ClockModel(60, 0.002)
    with override_settings(STREAMING={"FLUSH_INTERVAL_MS": 50}):
        generation_id = await generations.start(aiter(model), Pipeline(), owner="me")
    events = await everything(generations, generation_id)
    chunks = [e for e in events if isinstance(e, Chunk)]
    assert "".join(c.text for c in chunks) == "".join(f"{i} " for i in range(60))
    assert len(chunks) < 10
    assert model.waits < 10  # read token by token: about 60


async def test_a_fast_model_that_pauses_once_is_still_held() -> None:
    """One hold that finds nothing ready (the model paused) does not stop the holding."""
    generations = Generations(MemoryStore())
    model = ClockModel(60, 0.002, pause=0.08)
    with override_settings(STREAMING={"FLUSH_INTERVAL_MS": 50}):
        generation_id = await generations.start(aiter(model), Pipeline(), owner="me")
    events = await everything(generations, generation_id)
    assert "".join(e.text for e in events if isinstance(e, Chunk)) == "".join(
        f"{i} " for i in range(60)
    )
    assert model.waits < 10


async def test_text_read_after_a_hold_goes_out_once_the_model_has_no_more() -> None:
    """A held message goes out as soon as the model has nothing more ready after the
    hold, with what it wrote during the hold, not when its next token comes."""
    generations = Generations(MemoryStore())
    tokens: asyncio.Queue[str | None] = asyncio.Queue()

    async def model() -> AsyncIterator[str]:
        while (token := await tokens.get()) is not None:
            yield token

    with override_settings(STREAMING={"FLUSH_INTERVAL_MS": 50}):
        generation_id = await generations.start(model(), Pipeline(), owner="me")
    tokens.put_nowait("a ")
    await asyncio.sleep(0.01)  # within the hold of "a "
    tokens.put_nowait("b ")
    tokens.put_nowait("c ")
    events: list[GenerationEvent] = []
    async with asyncio.timeout(LIMIT):
        async for batch in generations.follow(generation_id, "me"):
            events += batch
            if len(events) == 1:
                assert isinstance(batch[0], Chunk) and batch[0].text == "a b c "
                tokens.put_nowait("d ")  # only now: the first message came without it
                tokens.put_nowait(None)
    assert "".join(e.text for e in events if isinstance(e, Chunk)) == "a b c d "
    assert isinstance(events[-1], Complete)


async def test_a_reply_stopped_while_it_holds_a_message_keeps_its_text() -> None:
    generations = Generations(MemoryStore())
    closed = asyncio.Event()

    async def model() -> AsyncIterator[str]:
        try:
            yield "held "
            await asyncio.Event().wait()
        finally:
            closed.set()

    with override_settings(STREAMING={"FLUSH_INTERVAL_MS": 60_000}):
        generation_id = await generations.start(model(), Pipeline(), owner="me")
    following = asyncio.create_task(everything(generations, generation_id))
    await asyncio.sleep(0.05)
    await generations.cancel(generation_id)
    events = await following
    assert closed.is_set()
    assert [type(e) for e in events] == [Chunk, Cancelled]
    assert events[0].text == "held "  # type: ignore[attr-defined]


async def test_without_a_flush_interval_each_paced_token_goes_out_alone() -> None:
    generations = Generations(MemoryStore())
    generation_id = await generations.start(paced(20, 0.005), Pipeline(), owner="me")
    events = await everything(generations, generation_id)
    chunks = [e for e in events if isinstance(e, Chunk)]
    assert len(chunks) >= 15  # one per token (a busy machine may merge a few)


class RenewalLog(MemoryStore):
    """A memory store that notes each renewal call: how many replies, and how many turns
    of the event loop had run by then."""

    def __init__(self, turns: list[int], renews_per_process: bool = False) -> None:
        super().__init__()
        self.turns = turns
        self.renews_per_process = renews_per_process
        self.places: list[tuple[int, int]] = []
        self.leases: list[tuple[int, int]] = []

    async def renew_many_quotas(self, places: Any) -> None:
        places = list(places)
        self.places.append((len(places), self.turns[0]))
        await super().renew_many_quotas(places)

    async def renew_leases(self, stream_ids: Any, seconds: float) -> None:
        self.leases.append((len(stream_ids), self.turns[0]))
        await super().renew_leases(stream_ids, seconds)


@pytest.mark.parametrize(
    ("renews_per_process", "places", "leases"),
    [(False, [2, 2, 1], [2, 2, 1]), (True, [1, 1, 1], [5, 5, 5])],
)
async def test_many_replies_are_renewed_a_slice_at_a_time(
    monkeypatch: Any, renews_per_process: bool, places: list[int], leases: list[int]
) -> None:
    """Leases and places of the replies running here go to the store RENEW_SLICE at a
    time, and the event loop runs between two slices (10,000 at once stalled it); to a
    store that renews per process (the memory store, ``process_leases``), all the leases
    in each call, and the places of one reply (it renews them all with theirs)."""
    monkeypatch.setattr(generations_module, "RENEW_SLICE", 2)
    monkeypatch.setattr(limits_module, "RENEW_EVERY", 0.2)
    turns = [0]

    async def count_turns() -> None:
        while True:
            await asyncio.sleep(0)
            turns[0] += 1

    counter = asyncio.create_task(count_turns())
    store = RenewalLog(turns, renews_per_process)
    generations = Generations(store)
    forever = asyncio.Event()

    async def silent() -> AsyncIterator[str]:
        await forever.wait()
        yield "late"

    limits = Limits(max_active_per_owner=100)
    with override_settings(STREAMING={"LEASE_SECONDS": 0.6}):
        for _ in range(5):
            reservation = await reserve(store, limits, owner="me", address="1.1.1.1")
            await generations.start(silent(), Pipeline(), owner="me", reservation=reservation)
        async with asyncio.timeout(LIMIT):
            while len(store.places) < 3 or len(store.leases) < 3:
                await asyncio.sleep(0.05)
    forever.set()
    counter.cancel()
    for log, calls in ((store.places, places), (store.leases, leases)):
        assert [size for size, _ in log[:3]] == calls
        turns_seen = [turn for _, turn in log[:3]]
        assert turns_seen[0] < turns_seen[1] < turns_seen[2]


async def test_followers_that_leave_a_stalled_reply_leave_no_waiters() -> None:
    """A follower cancelled (its client gone) while the model stalls leaves no waiter
    behind: clients coming and going do not grow the reply."""
    generations = Generations(MemoryStore())
    forever = asyncio.Event()

    async def stalled() -> AsyncIterator[str]:
        yield "first "
        await forever.wait()
        yield "late"

    generation_id = await generations.start(stalled(), Pipeline(), owner="me")
    writer = generations.running[generation_id].writer
    for _ in range(20):
        follower = asyncio.create_task(everything(generations, generation_id))
        await asyncio.sleep(0.01)
        assert writer.waiters  # it waits for the model's next token
        follower.cancel()
        with pytest.raises(asyncio.CancelledError):
            await follower
        assert writer.waiters == []
    forever.set()
    events = await everything(generations, generation_id)
    assert "".join(e.text for e in events if isinstance(e, Chunk)) == "first late"
