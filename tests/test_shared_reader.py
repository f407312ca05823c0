"""Followers of replies that run in another process share one reader of the Redis store:
one blocking ``XREAD`` on one connection for all of them, every event exactly once and
in order, a newcomer served at once, and every failure (expiry, trim, a stopped Redis,
a drained process) reaching each follower (two ``Generations`` on two ``RedisStore``s
stand for two server processes sharing a real redis-server)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from streaming.errors import StreamError
from streaming.events import Chunk, Complete, GenerationEvent
from streaming.extractors import Pipeline
from streaming.generations import Generations
from streaming.shared_reader import WATCH_EVERY
from streaming.sse import ParsedEvent, SSEParser
from tests.redis_server import RedisServer, needs_redis, redis_server
from tests.servers import daphne_server
from tests.transport_views import XML_REPLY

pytestmark = needs_redis
pytest.importorskip("redis", reason="the redis package is not installed")
from redis import Redis  # noqa: E402

from streaming.store.redis import RedisStore  # noqa: E402

LIMIT = 20.0


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


async def processes(redis: RedisServer) -> AsyncIterator[Callable[..., Generations]]:
    """``make(name)``: the generations of one server process, with a store of its own
    whose connections carry ``name`` (``CLIENT LIST`` tells them apart)."""
    stores: list[RedisStore] = []
    prefix = f"test:{uuid.uuid4().hex[:8]}:"

    def make(name: str, **options: Any) -> Generations:
        options = {"socket_timeout": 1.0, "connect_timeout": 1.0, **options}
        store = RedisStore(url=f"{redis.url}?client_name={name}", key_prefix=prefix, **options)
        stores.append(store)
        return Generations(store)

    yield make
    for store in stores:
        await store.close()


@pytest.fixture
async def process(redis: RedisServer) -> AsyncIterator[Callable[..., Generations]]:
    async for make in processes(redis):
        yield make


@pytest.fixture
async def own(own_redis: RedisServer) -> AsyncIterator[Callable[..., Generations]]:
    """``process``, on a redis-server this test may stop."""
    async for make in processes(own_redis):
        yield make


def clients(redis: RedisServer, name: str) -> list[dict[str, Any]]:
    """The connections named ``name`` the server has now."""
    with Redis.from_url(redis.url) as admin:
        return [c for c in admin.client_list() if c.get("name") == name]


async def paced(count: int, delay: float) -> AsyncIterator[str]:
    for index in range(count):
        await asyncio.sleep(delay)
        yield f"{index} "


def text(count: int) -> str:
    return "".join(f"{index} " for index in range(count))


async def follow_all(
    generations: Generations, generation_id: str, after: int = 0
) -> list[GenerationEvent]:
    events: list[GenerationEvent] = []
    async with asyncio.timeout(LIMIT):
        async for batch in generations.follow(generation_id, "me", after):
            events += batch
    return events


def check_exactly_once(events: list[GenerationEvent], count: int, after: int = 0) -> None:
    assert [e.seq for e in events] == list(range(after + 1, after + len(events) + 1))
    assert isinstance(events[-1], Complete)
    if after == 0:
        assert "".join(e.text for e in events if isinstance(e, Chunk)) == text(count)


async def silent(stop: asyncio.Event) -> AsyncIterator[str]:
    """A model that sends nothing until ``stop`` is set."""
    await stop.wait()
    yield "late"


def shared_task(generations: Generations) -> asyncio.Task[None] | None:
    shared = generations._shared
    return None if shared is None else shared.task


async def test_many_remote_followers_share_one_blocking_read_and_a_small_pool(
    redis: RedisServer, process: Callable[..., Generations]
) -> None:
    # 200 followers on a pool of 10: one connection each would exhaust it.
    writer, reader = process("writer"), process("follower", max_connections=10)
    ids = [await writer.start(paced(40, 0.02), Pipeline(), owner="me") for _ in range(200)]
    following = [asyncio.create_task(follow_all(reader, key)) for key in ids]
    samples = []
    while not all(task.done() for task in following):
        await asyncio.sleep(0.1)
        samples.append(clients(redis, "follower"))
    for events in await asyncio.gather(*following):
        check_exactly_once(events, 40)
    assert max(len(held) for held in samples) <= 11  # the pool, and the reader's own
    assert max(sum("b" in c["flags"] for c in held) for held in samples) <= 1
    assert any(c["cmd"] == "xread" for held in samples for c in held)


async def test_a_follower_that_comes_while_the_reader_waits_is_served_at_once(
    process: Callable[..., Generations], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The reader waits up to 10 s at a time here: only its wake-up can serve a newcomer.
    monkeypatch.setattr("streaming.shared_reader.WATCH_EVERY", 30.0)
    writer, reader = process("writer"), process("follower", socket_timeout=20.0)
    first_stop, second_stop = asyncio.Event(), asyncio.Event()
    first = await writer.start(silent(first_stop), Pipeline(), owner="me", policy="keep")
    second = await writer.start(silent(second_stop), Pipeline(), owner="me", policy="keep")
    waiting = asyncio.create_task(follow_all(reader, first))
    await asyncio.sleep(0.5)  # the reader is blocked on the first stream alone
    newcomer = asyncio.create_task(follow_all(reader, second))
    await asyncio.sleep(0.2)  # the newcomer has read what is stored and waits
    started = time.monotonic()
    second_stop.set()
    events = await newcomer
    assert time.monotonic() - started < 2.0
    assert [e.text for e in events if isinstance(e, Chunk)] == ["late"]
    first_stop.set()
    assert isinstance((await waiting)[-1], Complete)


async def test_followers_that_leave_midway_leave_nothing_behind(
    redis: RedisServer, process: Callable[..., Generations]
) -> None:
    writer, reader = process("writer"), process("follower")
    ids = [await writer.start(paced(60, 0.02), Pipeline(), owner="me") for _ in range(10)]
    leaving = [asyncio.create_task(follow_all(reader, key)) for key in ids for _ in range(3)]
    staying = [asyncio.create_task(follow_all(reader, key)) for key in ids]
    await asyncio.sleep(0.4)
    for task in leaving:
        task.cancel()
    for events in await asyncio.gather(*staying):
        check_exactly_once(events, 60)
    assert all(task.cancelled() for task in leaving)
    shared = reader._shared
    assert shared is not None and not shared.followers
    task = shared_task(reader)
    assert task is not None
    await asyncio.wait_for(task, WATCH_EVERY * 4)  # the reader stops when nobody follows
    assert not any("b" in c["flags"] for c in clients(redis, "follower"))


async def test_a_follower_gone_during_a_read_is_not_read_for_again(
    process: Callable[..., Generations],
) -> None:
    writer, reader = process("writer"), process("follower")
    stop = asyncio.Event()
    key = await writer.start(silent(stop), Pipeline(), owner="me")
    task = asyncio.create_task(follow_all(reader, key))
    await asyncio.sleep(0.3)
    task.cancel()
    await asyncio.sleep(WATCH_EVERY * 3)
    shared = reader._shared
    assert shared is not None and not shared.followers
    reading = shared_task(reader)
    assert reading is not None and reading.done()
    stop.set()


async def test_a_reply_that_expires_while_followed_is_not_found(
    process: Callable[..., Generations],
) -> None:
    writer = process("writer", ttl_active=1.0)
    reader = process("follower")
    stop = asyncio.Event()
    key = await writer.start(silent(stop), Pipeline(), owner="me")
    followers = [asyncio.create_task(follow_all(reader, key)) for _ in range(3)]
    done, _ = await asyncio.wait(followers, timeout=LIMIT)
    assert len(done) == 3
    for task in followers:
        error = task.exception()
        assert isinstance(error, StreamError) and error.code == "NOT_FOUND", error
    stop.set()


async def test_a_follower_behind_the_trimmed_events_gets_events_expired(
    process: Callable[..., Generations], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A follower that takes nothing is read for no further than 3 events ahead; meanwhile
    # the store keeps only the last 5 of the reply.
    monkeypatch.setattr("streaming.shared_reader.MAX_WAITING", 3)
    writer, reader = process("writer", max_events=5), process("follower")
    key = await writer.start(paced(200, 0.002), Pipeline(), owner="me")
    events: list[GenerationEvent] = []
    with pytest.raises(StreamError) as caught:
        async with asyncio.timeout(LIMIT):
            async for batch in reader.follow(key, "me"):
                events += batch
                await asyncio.sleep(0.5)  # a slow client
    assert caught.value.code == "EVENTS_EXPIRED"
    assert [e.seq for e in events] == list(range(1, len(events) + 1))  # no gap before it


async def test_a_stopped_redis_fails_every_follower_promptly(
    own: Callable[..., Generations], own_redis: RedisServer
) -> None:
    writer, reader = own("writer"), own("follower")
    stop = asyncio.Event()
    ids = [await writer.start(silent(stop), Pipeline(), owner="me") for _ in range(20)]
    followers = [asyncio.create_task(follow_all(reader, key)) for key in ids]
    await asyncio.sleep(0.5)
    started = time.monotonic()
    own_redis.stop()
    done, _ = await asyncio.wait(followers, timeout=LIMIT)
    assert len(done) == 20
    assert time.monotonic() - started < 5.0
    for task in followers:
        error = task.exception()
        assert isinstance(error, StreamError) and error.code == "STORE_UNAVAILABLE", error
    for task in [r.task for r in writer.running.values()]:
        task.cancel()
    # Redis is back (empty): the next followers are served again (once the connections
    # the pool kept from before have each failed once: redis-py retries nothing).
    own_redis.start()
    key = await own("writer-after").start(paced(20, 0.01), Pipeline(), owner="me")
    for _ in range(30):
        with contextlib.suppress(StreamError):
            check_exactly_once(await follow_all(reader, key), 20)
            break
    else:
        raise AssertionError("the reader never recovered")


async def test_a_reply_whose_process_died_is_interrupted(
    process: Callable[..., Generations],
) -> None:
    writer, reader = process("writer"), process("follower")
    # A process that started a reply, stored one chunk and died: its lease is not renewed.
    store = writer.store
    await store.create("dead", owner="me", lease=0.5)
    await store.append("dead", {"type": "chunk", "text": "Hello"})
    events = await follow_all(reader, "dead")
    assert [type(e).__name__ for e in events] == ["Chunk", "Error"]
    assert getattr(events[-1], "code", None) == "INTERRUPTED"


async def test_a_draining_process_stops_its_remote_followers(
    process: Callable[..., Generations],
) -> None:
    writer, reader = process("writer"), process("follower")
    stop = asyncio.Event()
    key = await writer.start(silent(stop), Pipeline(), owner="me")
    follower = asyncio.create_task(follow_all(reader, key))
    await asyncio.sleep(0.3)
    await asyncio.wait_for(reader.shut_down(), 2.0)
    error = follower.exception()
    assert isinstance(error, StreamError) and error.code == "SHUTTING_DOWN"
    stop.set()


async def test_a_follower_resuming_midway_and_at_the_end(
    process: Callable[..., Generations],
) -> None:
    writer, reader = process("writer"), process("follower")
    key = await writer.start(paced(30, 0.01), Pipeline(), owner="me")
    whole = await follow_all(reader, key)
    check_exactly_once(whole, 30)
    rest = await follow_all(reader, key, after=10)
    assert [e.seq for e in rest] == [e.seq for e in whole[10:]]
    assert await follow_all(reader, key, after=whole[-1].seq) == []
    with pytest.raises(StreamError) as caught:
        await follow_all(reader, key, after=whole[-1].seq + 1)
    assert caught.value.code == "BAD_REQUEST"


# ------------------------------------------------- two daphne processes, over SSE
async def resumed_elsewhere(first: str, second: str) -> tuple[list[ParsedEvent], ...]:
    """A ``keep`` reply started on ``first``, dropped after 2 events, resumed on
    ``second`` to its end."""
    params = {"delay": "0.06", "size": "1", "pipeline": "passthrough"}
    async with httpx.AsyncClient(base_url=first, timeout=LIMIT) as client:
        await client.get("/visitor")
        cookies = dict(client.cookies)
        before: list[ParsedEvent] = []
        async with client.stream("GET", "/sse/keep", params=params) as response:
            parser = SSEParser()
            async for chunk in response.aiter_raw():
                before += parser.feed(chunk)
                if len(before) >= 2:
                    break
    headers = {"Last-Event-ID": before[-1].id or ""}
    async with httpx.AsyncClient(base_url=second, timeout=LIMIT, cookies=cookies) as client:
        response = await client.get("/sse/keep", headers=headers)
    parser = SSEParser()
    return before, parser.feed(response.content) + parser.close()


async def test_remote_sse_followers_of_a_daphne_share_its_one_reader(redis: RedisServer) -> None:
    def env(name: str) -> dict[str, str]:
        url = f"{redis.url}?client_name={name}"
        return {"DJANGO_SETTINGS_MODULE": "tests.settings_redis", "STREAMING_TEST_REDIS": url}

    with (
        daphne_server("tests.asgi:application", env("first")) as first,
        daphne_server("tests.asgi:application", env("second")) as second,
    ):
        replies = [asyncio.create_task(resumed_elsewhere(first, second)) for _ in range(50)]
        samples = []
        while not all(task.done() for task in replies):
            await asyncio.sleep(0.1)
            samples.append(clients(redis, "second"))
        for before, after in await asyncio.gather(*replies):
            texts = [json.loads(e.data).get("chunk", "") for e in before + after]
            assert "".join(texts) == XML_REPLY
            assert json.loads(after[-1].data) == {"done": True}
            seqs = [int((e.id or "").split(":")[1]) for e in before + after]
            assert seqs == sorted(set(seqs))  # ready events may share one message
    assert max(sum("b" in c["flags"] for c in held) for held in samples) <= 1
    assert any(c["cmd"] == "xread" for held in samples for c in held)


async def test_a_remote_follower_gets_its_heartbeats(
    process: Callable[..., Generations],
) -> None:
    writer, reader = process("writer"), process("follower")
    stop = asyncio.Event()
    key = await writer.start(silent(stop), Pipeline(), owner="me", policy="keep")
    batches: list[list[GenerationEvent]] = []
    async with asyncio.timeout(LIMIT):
        async for batch in reader.follow(key, "me", heartbeat=0.2):
            batches.append(batch)
            if len(batches) == 3:
                stop.set()
    assert batches[:3] == [[], [], []]  # nothing for a while: a heartbeat each time
    assert [e.text for b in batches for e in b if isinstance(e, Chunk)] == ["late"]
    assert isinstance(batches[-1][-1], Complete)
