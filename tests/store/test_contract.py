"""The ``EventStore`` contract, run against every backend (memory, and a real Redis)."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import pytest

from streaming.errors import StreamError, StreamErrorCode
from streaming.store.base import EventStore, StoredEvent

from .conftest import StoreFactory

# Upper bound of any wait that should end early: a bug fails the test, never hangs it.
WAIT = 5.0


def reason(error: pytest.ExceptionInfo[StreamError]) -> str:
    assert error.value.details is not None
    return str(error.value.details["reason"])


async def test_create_and_owner(store: EventStore) -> None:
    await store.create("s1", owner="user:3")
    assert await store.owner("s1") == "user:3"
    assert await store.owner("nope") is None
    assert not await store.is_finished("s1")
    with pytest.raises(StreamError) as error:
        await store.create("s1", owner="user:4")
    assert reason(error) == "STREAM_EXISTS"
    assert await store.owner("s1") == "user:3"


async def test_seqs_are_gapless_and_reads_keep_order(store: EventStore) -> None:
    await store.create("s", owner="session:a")
    assert await store.append("s", {"n": 1}) == 1
    assert await store.append("s", {"n": 2}) == 2
    assert await store.append_many("s", [{"n": 3}, {"n": 4}, {"n": 5}]) == 5
    assert await store.append_many("s", [{"n": 6}]) == 6
    events = await store.read("s", 0, timeout=0)
    assert events == [StoredEvent(n, {"n": n}) for n in range(1, 7)]


async def test_read_from_any_cursor(store: EventStore) -> None:
    await store.create("s", owner="o")
    await store.append_many("s", [{"n": n, "text": f"é{n}"} for n in range(1, 21)])
    for after in range(21):
        events = await store.read("s", after, timeout=0)
        assert [e.seq for e in events] == list(range(after + 1, 21))
        assert all(e.data == {"n": e.seq, "text": f"é{e.seq}"} for e in events)


async def test_read_returns_at_most_a_batch(make_store: StoreFactory) -> None:
    store = make_store(max_batch=4)
    await store.create("s", owner="o")
    await store.append_many("s", [{"n": n} for n in range(1, 11)])
    assert [e.seq for e in await store.read("s", 0, timeout=0)] == [1, 2, 3, 4]
    assert [e.seq for e in await store.read("s", 8, timeout=0)] == [9, 10]


async def test_cursor_outside_the_stream_is_refused(store: EventStore) -> None:
    await store.create("s", owner="o")
    await store.append("s", {"n": 1})
    for after in (-1, 2):
        with pytest.raises(StreamError) as error:
            await store.read("s", after, timeout=0)
        assert reason(error) == "BAD_CURSOR"


async def test_blocked_read_wakes_on_append(store: EventStore) -> None:
    await store.create("s", owner="o")
    await store.append("s", {"n": 1})
    reader = asyncio.create_task(store.read("s", 1, timeout=WAIT))
    await asyncio.sleep(0.1)
    assert not reader.done()
    start = time.monotonic()
    await store.append("s", {"n": 2})
    events = await asyncio.wait_for(reader, WAIT)
    assert events == [StoredEvent(2, {"n": 2})]
    assert time.monotonic() - start < 1.0


async def test_read_returns_nothing_after_its_timeout(store: EventStore) -> None:
    await store.create("s", owner="o")
    start = time.monotonic()
    assert await store.read("s", 0, timeout=0.3) == []
    assert 0.25 <= time.monotonic() - start < 2.0
    assert await store.read("s", 0, timeout=0) == []


async def test_finish_wakes_readers_and_ends_the_stream(store: EventStore) -> None:
    await store.create("s", owner="o")
    await store.append("s", {"n": 1})
    readers = [asyncio.create_task(store.read("s", 1, timeout=WAIT)) for _ in range(3)]
    await asyncio.sleep(0.1)
    start = time.monotonic()
    await store.finish("s")
    assert await asyncio.wait_for(asyncio.gather(*readers), WAIT) == [[], [], []]
    assert time.monotonic() - start < 1.0
    assert await store.is_finished("s")
    # Replayable, and a read at the end returns at once.
    assert [e.seq for e in await store.read("s", 0, timeout=WAIT)] == [1]
    start = time.monotonic()
    assert await store.read("s", 1, timeout=WAIT) == []
    assert time.monotonic() - start < 1.0
    with pytest.raises(StreamError) as error:
        await store.append("s", {"n": 2})
    assert reason(error) == "STREAM_FINISHED"
    await store.finish("s")  # finishing twice is harmless


async def test_finish_an_empty_stream(store: EventStore) -> None:
    await store.create("s", owner="o")
    reader = asyncio.create_task(store.read("s", 0, timeout=WAIT))
    await asyncio.sleep(0.05)
    await store.finish("s")
    assert await asyncio.wait_for(reader, WAIT) == []
    assert await store.read("s", 0, timeout=WAIT) == []


async def test_finished_streams_expire(make_store: StoreFactory) -> None:
    store = make_store(ttl_finished=0.3)
    await store.create("s", owner="o")
    await store.append("s", {"n": 1})
    await store.finish("s")
    assert await store.owner("s") == "o"
    await asyncio.sleep(0.6)
    assert await store.owner("s") is None
    with pytest.raises(StreamError) as error:
        await store.read("s", 0, timeout=0)
    assert reason(error) == "NOT_FOUND"
    await store.create("s", owner="other")  # the id is free again
    assert await store.read("s", 0, timeout=0) == []


async def test_abandoned_streams_expire_and_appends_keep_them_alive(
    make_store: StoreFactory,
) -> None:
    store = make_store(ttl_active=0.3)
    await store.create("s", owner="o")
    for n in range(3):
        await asyncio.sleep(0.15)
        await store.append("s", {"n": n})
    assert await store.owner("s") == "o"
    await asyncio.sleep(0.5)
    assert await store.owner("s") is None
    with pytest.raises(StreamError):
        await store.append("s", {"n": 9})


async def test_trimmed_events_are_never_skipped(make_store: StoreFactory) -> None:
    store = make_store(max_events=5)
    await store.create("s", owner="o")
    for n in range(1, 8):
        await store.append("s", {"n": n})
    await store.append_many("s", [{"n": n} for n in range(8, 13)])
    assert [e.seq for e in await store.read("s", 7, timeout=0)] == [8, 9, 10, 11, 12]
    for after in (0, 3, 6):
        with pytest.raises(StreamError) as error:
            await store.read("s", after, timeout=0)
        assert error.value.code == StreamErrorCode.EVENTS_EXPIRED
        assert error.value.details is not None
        assert error.value.details["first"] == 8


async def test_a_reader_overtaken_while_waiting_gets_an_error(make_store: StoreFactory) -> None:
    store = make_store(max_events=3)
    await store.create("s", owner="o")
    await store.append("s", {"n": 1})
    reader = asyncio.create_task(store.read("s", 1, timeout=WAIT))
    await asyncio.sleep(0.05)
    # One round trip writes 2..6, so 2 and 3 are trimmed before the reader looks.
    await store.append_many("s", [{"n": n} for n in range(2, 7)])
    with pytest.raises(StreamError) as error:
        await asyncio.wait_for(reader, WAIT)
    assert reason(error) == "EVENTS_EXPIRED"


async def test_unknown_ids_raise_not_found(store: EventStore) -> None:
    calls = [
        store.append("x", {}),
        store.append_many("x", [{}]),
        store.read("x", 0, timeout=0),
        store.read("x", 0, timeout=1),
        store.finish("x"),
        store.is_finished("x"),
        store.touch("x"),
        store.request_cancel("x"),
        store.cancel_requested("x"),
    ]
    for call in calls:
        with pytest.raises(StreamError) as error:
            await call
        assert error.value.code == StreamErrorCode.NOT_FOUND
        assert reason(error) == "NOT_FOUND"
        assert error.value.message == "unknown or expired stream"
    assert await store.owner("x") is None
    assert await store.last_watched("x") is None


async def test_cancel_request(store: EventStore) -> None:
    await store.create("s", owner="o")
    assert not await store.cancel_requested("s")
    await store.request_cancel("s")
    assert await store.cancel_requested("s")


async def test_one_call_tells_the_cancel_requests_since_a_cursor(store: EventStore) -> None:
    for name in ("a", "b", "c"):
        await store.create(name, owner="o")
    await store.request_cancel("a")
    feed = await store.cancel_requests(None)
    assert feed is not None
    ids, cursor = feed
    assert "a" in ids
    assert await store.cancel_requests(cursor) == ([], cursor)
    await store.request_cancel("b")
    await store.request_cancel("c")
    ids, cursor = await store.cancel_requests(cursor) or ([], None)
    assert ids == ["b", "c"]


async def test_appends_to_several_streams_at_once(store: EventStore) -> None:
    await store.create("a", owner="o")
    await store.create("b", owner="o")
    await store.append("a", {"n": 1})
    await store.finish("b")
    results = await store.append_batches({"a": [{"n": 2}, {"n": 3}], "b": [{"n": 1}], "c": []})
    assert results["a"] == 3
    assert isinstance(results["b"], StreamError)  # finished: refused, the others written
    assert isinstance(results["c"], StreamError)  # unknown
    assert [e.data["n"] for e in await store.read("a", 0, timeout=0)] == [1, 2, 3]


async def test_a_batch_finishes_the_streams_it_is_told_to_after_their_events(
    store: EventStore,
) -> None:
    """How a reply's last events and its end are written: in one batch with the others'."""
    await store.create("ending", owner="o")
    await store.create("going", owner="o")
    results = await store.append_batches(
        {"ending": [{"n": 1}, {"n": 2}], "going": [{"n": 1}], "gone": [{"n": 1}]},
        finish={"ending", "gone"},
    )
    assert results["ending"] == 2 and results["going"] == 1
    assert isinstance(results["gone"], StreamError)
    assert await store.is_finished("ending") and not await store.is_finished("going")
    assert [e.data["n"] for e in await store.read("ending", 0, timeout=0)] == [1, 2]
    # Past its last event a read returns at once: nothing more will come.
    assert await asyncio.wait_for(store.read("ending", 2, timeout=WAIT), WAIT / 2) == []
    again = await store.append_batches({"ending": [{"n": 3}]}, finish={"ending"})
    assert isinstance(again["ending"], StreamError)  # finished: refused


async def test_a_refused_stream_in_a_batch_leaves_the_others_their_own_events(
    store: EventStore,
) -> None:
    """Streams refused before and between others keep no events and shift none; text of
    any kind (line breaks, quotes, non-ASCII) is stored as it came."""
    await store.create("a", owner="o")
    await store.create("b", owner="o")
    await store.finish("b")
    texts = ["line\nbreak", 'quote " and \\ slash', "\u2028 é 😀", "", "\r\n\t"]
    results = await store.append_batches(
        {
            "b": [{"t": "finished"}, {"t": "finished\n"}],
            "gone": [{"t": "unknown"}],
            "a": [{"t": text} for text in texts],
            "c": [],
        }
    )
    assert results["a"] == len(texts)
    assert [type(results[s]) for s in ("b", "gone", "c")] == [StreamError] * 3
    assert [e.data for e in await store.read("a", 0, timeout=0)] == [{"t": t} for t in texts]
    assert await store.append_batches({}) == {}


async def test_chunk_records_of_any_text_are_stored_as_they_came(store: EventStore) -> None:
    """A chunk's record (one per token, which a store may write by a shorter path) keeps
    its text exactly, and records that only look like one keep what they hold."""
    await store.create("a", owner="o")
    texts = ["plain", "line\nbreak", 'quote " and \\ slash', "\u2028 é 😀", "", "\0\x1f"]
    records: list[dict[str, Any]] = [{"type": "chunk", "text": text} for text in texts]
    records += [
        {"text": "first", "type": "chunk"},
        {"type": "chunk", "text": 7},
        {"type": "chunk", "text": "x", "extra": True},
        {"type": "chunk", "name": "not text"},
    ]
    assert await store.append_batches({"a": records}) == {"a": len(records)}
    await store.append_many("a", records)
    stored = [e.data for e in await store.read("a", 0, timeout=0)]
    assert stored == records * 2


async def test_touch_and_reads_record_the_watch(store: EventStore) -> None:
    await store.create("s", owner="o")
    assert await store.last_watched("s") is None
    before = time.time()
    await store.touch("s")
    watched = await store.last_watched("s")
    assert watched is not None and before <= watched <= time.time()
    await asyncio.sleep(0.02)
    await store.read("s", 0, timeout=0)
    later = await store.last_watched("s")
    assert later is not None and later > watched


@pytest.mark.parametrize("seed", range(3))
async def test_concurrent_writer_and_readers_see_every_event_once(
    make_store: StoreFactory, seed: int
) -> None:
    """A writer appends in random bursts while readers follow from random cursors with a
    random batch limit; each sees exactly the events after its cursor, in order."""
    rng = random.Random(seed)
    store = make_store(max_batch=rng.randint(1, 20))
    await store.create("s", owner="o")
    total = 300
    written = rng.randint(0, 20)
    if written:
        await store.append_many("s", [{"n": n} for n in range(1, written + 1)])

    async def write(n: int) -> None:
        while n < total:
            size = min(rng.randint(1, 8), total - n)
            batch = [{"n": i} for i in range(n + 1, n + size + 1)]
            n = await (store.append("s", batch[0]) if size == 1 else store.append_many("s", batch))
            if rng.random() < 0.3:
                await asyncio.sleep(rng.random() / 200)
        await store.finish("s")

    async def follow(after: int) -> list[int]:
        seen: list[int] = []
        while events := await store.read("s", after, timeout=WAIT):
            seen.extend(e.seq for e in events)
            assert all(e.data == {"n": e.seq} for e in events)
            after = events[-1].seq
        assert await store.is_finished("s")
        return seen

    starts = [0, written, *(rng.randint(0, written) for _ in range(4))]
    readers = asyncio.gather(*(follow(after) for after in starts))
    writer = asyncio.create_task(write(written))
    seen = await asyncio.wait_for(readers, 20)
    await writer
    for after, got in zip(starts, seen, strict=True):
        assert got == list(range(after + 1, total + 1))


async def test_a_lapsed_lease_lets_one_follower_end_the_stream(store: EventStore) -> None:
    interrupted = {"type": "error", "code": "INTERRUPTED", "message": "gone"}
    await store.create("s", owner="o", lease=0.3)
    await store.append("s", {"n": 1})
    assert not await store.interrupt_if_lapsed("s", interrupted)
    await asyncio.sleep(0.2)
    await store.renew_leases(["s", "unknown"], 0.3)  # a live process renews it
    await asyncio.sleep(0.2)
    assert not await store.interrupt_if_lapsed("s", interrupted)
    await asyncio.sleep(0.3)  # the process died: nobody renews
    results = await asyncio.gather(*(store.interrupt_if_lapsed("s", interrupted) for _ in range(5)))
    assert results.count(True) == 1
    assert await store.is_finished("s")
    assert await store.read("s", 0, timeout=0) == [
        StoredEvent(1, {"n": 1}),
        StoredEvent(2, interrupted),
    ]
    assert await store.read("s", 2, timeout=WAIT) == []
    await store.create("unknown", owner="o")  # renewing a stream never makes it


async def test_streams_without_a_lease_or_finished_never_lapse(store: EventStore) -> None:
    await store.create("plain", owner="o")
    await store.create("done", owner="o", lease=0.05)
    await store.finish("done")
    await store.renew_leases(["done"], 0.05)  # a renewal racing the end
    await asyncio.sleep(0.1)
    assert not await store.interrupt_if_lapsed("plain", {"type": "error"})
    assert not await store.interrupt_if_lapsed("done", {"type": "error"})
    await store.renew_leases([], 1.0)
    with pytest.raises(StreamError) as error:
        await store.interrupt_if_lapsed("unknown", {"type": "error"})
    assert reason(error) == "NOT_FOUND"
