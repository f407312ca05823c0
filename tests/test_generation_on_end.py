"""``Generations.start(on_end=...)``: awaited with how a reply ended, before its terminal
event is written. A reply's end (its places released, ``on_end``, its terminal event
stored) is finished even when the reply is cancelled again meanwhile, as the watchdog
repeats a cancel until the reply is done."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from streaming.errors import StreamError, StreamErrorCode
from streaming.events import TERMINAL, Cancelled, Complete, Error
from streaming.extractors import Pipeline
from streaming.generations import Generations
from streaming.limits import Limits, reserve
from streaming.store.memory import MemoryStore


async def words(count: int, delay: float = 0.0, fail: bool = False) -> AsyncIterator[str]:
    for n in range(count):
        yield f"w{n} "
        await asyncio.sleep(delay)
    if fail:
        raise RuntimeError("the model broke")


async def last_event(generations: Generations, generation_id: str) -> object:
    events = []
    async with asyncio.timeout(10):
        async for batch in generations.follow(generation_id, "me"):
            events += batch
    assert isinstance(events[-1], TERMINAL)
    return events[-1]


async def test_on_end_is_told_how_the_reply_ended_before_its_last_event() -> None:
    generations = Generations(MemoryStore())
    seen: list[tuple[str, bool]] = []

    async def on_end(end: str) -> None:
        seen.append((end, await generations.store.is_finished(f"fixed-{end}")))

    for source, kind, expected in (
        (words(3), Complete, "complete"),
        (words(3, fail=True), Error, "error"),
    ):
        generation_id = await generations.start(
            source, Pipeline(), owner="me", generation_id=f"fixed-{expected}", on_end=on_end
        )
        assert generation_id == f"fixed-{expected}"
        assert isinstance(await last_event(generations, generation_id), kind)
    assert seen == [("complete", False), ("error", False)]


async def test_on_end_finishes_when_the_reply_is_cancelled_again_meanwhile() -> None:
    generations = Generations(MemoryStore())
    stored: list[str] = []
    storing = asyncio.Event()

    async def slow_on_end(end: str) -> None:
        storing.set()
        await asyncio.sleep(0.3)  # a database write in a thread
        stored.append(end)

    generation_id = await generations.start(
        words(1000, delay=0.01), Pipeline(), owner="me", on_end=slow_on_end
    )
    task = generations.running[generation_id].task
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.wait_for(storing.wait(), 5)
    task.cancel()  # a repeated cancel request, as the watchdog sends
    assert isinstance(await last_event(generations, generation_id), Cancelled)
    assert stored == ["cancelled"]


class SlowEnds(MemoryStore):
    """A store that takes 0.3 s (a Redis round trip on a busy process) to give places
    back and to store the last events; ``slow`` is set when one of those begins."""

    def __init__(self) -> None:
        super().__init__()
        self.slow = asyncio.Event()

    async def _slowly(self) -> None:
        self.slow.set()
        await asyncio.sleep(0.3)

    async def release_quotas(self, holder: str, keys: Sequence[str]) -> None:
        await self._slowly()
        await super().release_quotas(holder, keys)

    async def append_many(self, stream_id: str, items: list[dict[str, Any]]) -> int:
        await self._slowly()
        return await super().append_many(stream_id, items)


async def test_a_reply_cancelled_again_while_it_gives_back_its_places_gives_them_back() -> None:
    """Else its owner could start no reply until the places' lease lapsed (30 s)."""
    store = SlowEnds()
    generations = Generations(store)
    one_at_a_time = Limits(max_active_per_owner=1)
    reservation = await reserve(store, one_at_a_time, owner="me", address="127.0.0.1")
    generation_id = await generations.start(
        words(1000, delay=0.01), Pipeline(), owner="me", reservation=reservation
    )
    task = generations.running[generation_id].task
    task.cancel()
    await asyncio.wait_for(store.slow.wait(), 5)
    task.cancel()  # a repeated cancel request, as the watchdog sends
    assert isinstance(await last_event(generations, generation_id), Cancelled)
    assert reservation.released
    await reserve(store, one_at_a_time, owner="me", address="127.0.0.1")  # its place is free


async def test_a_reply_cancelled_again_while_its_end_is_stored_ends_cancelled() -> None:
    """Not with the ``STORE_UNAVAILABLE`` of a store that never failed."""
    store = SlowEnds()
    generations = Generations(store)
    generation_id = await generations.start(words(1000, delay=0.01), Pipeline(), owner="me")
    task = generations.running[generation_id].task
    task.cancel()
    await asyncio.wait_for(store.slow.wait(), 5)
    task.cancel()
    assert isinstance(await last_event(generations, generation_id), Cancelled)
    assert await store.is_finished(generation_id)


async def test_a_start_cancelled_with_its_request_still_starts_and_ends_the_reply() -> None:
    """``start_reply`` runs to its end when its request is cancelled meanwhile (the client
    went away while the stream hook stored a chat's turn): the reply starts, and ``on_end``
    stores its end, as when the client goes away a moment later."""
    from streaming.limits import UNLIMITED, reserve
    from streaming.requests import start_reply

    generations = Generations(MemoryStore())
    storing, stored = asyncio.Event(), asyncio.Event()
    ends: list[str] = []

    async def stream() -> AsyncIterator[str]:
        await storing.wait()  # the turn being stored, in a database thread
        return words(3)

    async def on_end(end: str) -> None:
        ends.append(end)
        stored.set()

    reservation = await reserve(generations.store, UNLIMITED, owner="me", address="127.0.0.1")
    request = asyncio.create_task(
        start_reply(
            generations,
            stream,
            Pipeline(),
            owner="me",
            reservation=reservation,
            policy="keep",
            forward_events=False,
            options=lambda: {"generation_id": "kept", "on_end": on_end},
        )
    )
    await asyncio.sleep(0.01)
    request.cancel()  # the client goes away while the turn is stored
    await asyncio.sleep(0.01)
    storing.set()
    async with asyncio.timeout(10):
        await stored.wait()
    assert request.cancelled()
    assert ends == ["complete"]
    assert isinstance(await last_event(generations, "kept"), Complete)


async def test_on_start_false_cancels_the_generation_and_stops_its_source(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``on_start`` is awaited beside the source once the generation is in the store: False
    cancels it (the source is closed, not read to its end), True or a failing check lets
    it run (the failure is logged)."""
    generations = Generations(MemoryStore())
    closed: list[str] = []

    async def endless() -> AsyncIterator[str]:
        try:
            while True:
                yield "w "
                await asyncio.sleep(0.01)
        finally:
            closed.append("closed")

    async def unwanted() -> bool:
        assert await generations.store.owner("unwanted") == "me"  # in the store by now
        return False

    await generations.start(
        endless(), Pipeline(), owner="me", generation_id="unwanted", on_start=unwanted
    )
    assert isinstance(await last_event(generations, "unwanted"), Cancelled)
    assert closed == ["closed"]

    async def wanted() -> bool:
        return True

    async def broken() -> bool:
        raise RuntimeError("the database is down")

    for name, check in (("wanted", wanted), ("broken", broken)):
        await generations.start(
            words(3, 0.01), Pipeline(), owner="me", generation_id=name, on_start=check
        )
        assert isinstance(await last_event(generations, name), Complete)
    assert "Generation broken: its start check failed" in caplog.text


@pytest.mark.parametrize(
    ("failure", "code", "message"),
    [
        (
            StreamError(StreamErrorCode.STORE_UNAVAILABLE, "The database is unavailable"),
            "STORE_UNAVAILABLE",
            "The database is unavailable",
        ),
        (RuntimeError("a bug"), "INTERNAL_ERROR", "The reply could not be saved"),
    ],
)
async def test_a_complete_reply_whose_on_end_fails_ends_with_its_error(
    failure: Exception, code: str, message: str
) -> None:
    """A client that sees the end finds the reply stored: when ``on_end`` (the chat's
    message) fails, a complete reply ends with the failure instead; other ends keep theirs."""
    generations = Generations(MemoryStore())

    async def on_end(end: str) -> None:
        raise failure

    ends = []
    for source in (words(3), words(3, fail=True)):
        generation_id = await generations.start(source, Pipeline(), owner="me", on_end=on_end)
        end = await last_event(generations, generation_id)
        assert isinstance(end, Error)
        ends.append((end.code, end.message))
    assert ends == [(code, message), ("INTERNAL_ERROR", "The model stream failed")]
