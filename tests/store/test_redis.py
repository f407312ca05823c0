"""What only Redis can do or suffer: several processes, a restart, a dead or hung server."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from streaming.errors import StreamError, StreamErrorCode
from streaming.events import Chunk, Complete
from streaming.extractors import Pipeline
from streaming.generations import Generations
from streaming.store.base import Quota, StoredEvent, Tail
from tests.generation_helpers import everything, paced
from tests.redis_server import RedisServer

from .conftest import needs_redis

pytestmark = needs_redis

# A failure must surface within this many seconds (the stores use 1 s socket timeouts).
BOUND = 4.0

pytest.importorskip("redis", reason="the redis package is not installed")
from streaming.store.redis import RedisStore  # noqa: E402

Make = Callable[..., RedisStore]


@pytest.fixture
async def make() -> AsyncIterator[Make]:
    """RedisStores with short timeouts, each standing for one server process."""
    made: list[RedisStore] = []
    prefix = f"test:{uuid.uuid4().hex[:8]}:"

    def build(url: str, **options: Any) -> RedisStore:
        options = {"socket_timeout": 1.0, "connect_timeout": 1.0, **options}
        store = RedisStore(url=url, key_prefix=prefix, **options)
        made.append(store)
        return store

    yield build
    for store in made:
        await store.close()


def reason(error: pytest.ExceptionInfo[StreamError]) -> str:
    assert error.value.details is not None
    return str(error.value.details["reason"])


async def test_two_processes_share_a_stream(redis: RedisServer, make: Make) -> None:
    writer, watcher = make(redis.url), make(redis.url)
    await writer.create("s", owner="user:1")
    assert await watcher.owner("s") == "user:1"
    reader = asyncio.create_task(watcher.read("s", 0, timeout=BOUND))
    await asyncio.sleep(0.1)
    await writer.append("s", {"n": 1})
    assert await asyncio.wait_for(reader, BOUND) == [StoredEvent(1, {"n": 1})]
    await watcher.request_cancel("s")
    assert await writer.cancel_requested("s")
    await writer.finish("s")
    assert await watcher.is_finished("s")
    assert await watcher.read("s", 1, timeout=BOUND) == []
    assert await writer.last_watched("s") is not None


async def test_a_read_longer_than_the_socket_timeout_still_works(
    redis: RedisServer, make: Make
) -> None:
    store = make(redis.url, socket_timeout=0.4)
    await store.create("s", owner="o")
    start = time.monotonic()
    assert await store.read("s", 0, timeout=1.0) == []
    assert 0.9 < time.monotonic() - start < 2.0
    reader = asyncio.create_task(store.read("s", 0, timeout=BOUND))
    await asyncio.sleep(0.7)
    await store.append("s", {"n": 1})
    assert [e.seq for e in await asyncio.wait_for(reader, BOUND)] == [1]


async def test_restart_while_a_reader_waits_raises_promptly(
    own_redis: RedisServer, make: Make
) -> None:
    store = make(own_redis.url)
    await store.create("s", owner="o")
    await store.append("s", {"n": 1})
    reader = asyncio.create_task(store.read("s", 1, timeout=30))
    await asyncio.sleep(0.2)
    start = time.monotonic()
    await asyncio.to_thread(own_redis.restart)
    with pytest.raises(StreamError) as error:
        await asyncio.wait_for(reader, BOUND)
    assert time.monotonic() - start < BOUND
    assert error.value.code == StreamErrorCode.STORE_UNAVAILABLE
    assert error.value.message == "The event store is unavailable"
    assert (error.value.details or {})["url"] == own_redis.url
    # Redis is back, empty (no persistence): the stream is gone, the store works again.
    assert await store.owner("s") is None
    with pytest.raises(StreamError) as error:
        await store.append("s", {"n": 2})
    assert reason(error) == "NOT_FOUND"
    await store.create("s", owner="o")
    assert await store.append("s", {"n": 1}) == 1


async def test_after_a_restart_every_pooled_connection_works_at_once(
    own_redis: RedisServer, make: Make
) -> None:
    """Connections the old server closed are replaced as they are taken, not used to fail
    one request each with ``STORE_UNAVAILABLE`` (the pool's and the batch writer's)."""
    store = make(own_redis.url)
    await asyncio.gather(*(store.owner(f"x{n}") for n in range(8)))  # 8 pooled connections
    await store.create("before", owner="o")
    assert await store.append_batches({"before": [{"n": 1}]}) == {"before": 1}
    await asyncio.to_thread(own_redis.restart)
    await asyncio.sleep(0.2)  # the old connections' closing reaches this process
    assert await asyncio.gather(*(store.owner(f"x{n}") for n in range(8))) == [None] * 8
    await store.create("after", owner="o")
    assert await store.append_batches({"after": [{"n": 1}]}) == {"after": 1}


async def test_connections_redis_closed_are_replaced_before_they_fail_a_call(
    own_redis: RedisServer, make: Make
) -> None:
    """The store's own connections (the batch writer's, the shared reader's) held between
    calls: closed by the server's idle ``timeout`` (common on managed Redis) or by a
    restart, the next call connects again instead of failing, and every later one too."""
    store = make(own_redis.url)
    reader = store.streams_reader()
    await store.create("s", owner="o")
    assert await store.append_batches({"s": [{"n": 1}]}) == {"s": 1}
    reader.read_from("s", 0)
    assert list(await reader.wait(timeout=BOUND)) == ["s"]
    with socket.create_connection(("127.0.0.1", own_redis.port), timeout=1) as sock:
        sock.sendall(b"CONFIG SET timeout 1\r\n")
        assert sock.recv(64).startswith(b"+OK")
    await asyncio.sleep(3)  # idle past the server's timeout: it closed them
    for n in (2, 3):
        assert await store.append_batches({"s": [{"n": n}]}) == {"s": n}
    assert list(await reader.wait(timeout=BOUND)) == ["s"]
    await asyncio.to_thread(own_redis.restart)
    await asyncio.sleep(0.2)  # the old connections' closing reaches this process
    await store.create("t", owner="o")
    for n in (1, 2):
        assert await store.append_batches({"t": [{"n": n}]}) == {"t": n}
    reader.read_from("t", 0)
    found = await reader.wait(timeout=BOUND)
    assert isinstance(found.get("t"), Tail), found


async def test_a_stopped_redis_fails_every_call_promptly(
    own_redis: RedisServer, make: Make
) -> None:
    store = make(own_redis.url)
    await store.create("s", owner="o")
    own_redis.stop()
    calls = [
        store.create("t", owner="o"),
        store.owner("s"),
        store.append("s", {"n": 1}),
        store.read("s", 0, timeout=10),
        store.finish("s"),
        store.touch("s"),
        store.last_watched("s"),
    ]
    for call in calls:
        start = time.monotonic()
        with pytest.raises(StreamError) as error:
            await call
        assert time.monotonic() - start < BOUND
        assert reason(error) == "STORE_UNAVAILABLE"


async def test_a_hung_redis_fails_within_the_socket_timeout(
    own_redis: RedisServer, make: Make
) -> None:
    store = make(own_redis.url)
    await store.create("s", owner="o")
    reader = asyncio.create_task(store.read("s", 0, timeout=30))
    await asyncio.sleep(0.1)
    own_redis.pause()
    try:
        start = time.monotonic()
        with pytest.raises(StreamError) as error:
            await asyncio.wait_for(reader, BOUND)
        with pytest.raises(StreamError):
            await store.append("s", {"n": 1})
        assert time.monotonic() - start < BOUND
        assert reason(error) == "STORE_UNAVAILABLE"
    finally:
        own_redis.resume()


async def _forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


@asynccontextmanager
async def busy_at_first_connect(port: int, busy: float) -> AsyncIterator[tuple[str, list[int]]]:
    """A TCP proxy, in this event loop, to the Redis on ``port``: its URL and the number of
    connections it accepted. When the kernel has made its first connection, the loop is
    kept busy for ``busy`` s (CPU-bound work of a loaded process) before the client's
    connect learns it is done; later connections are forwarded at once."""
    loop = asyncio.get_running_loop()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    accepted = [0]
    forwards: set[asyncio.Task[Any]] = set()

    async def forward(client: socket.socket) -> None:
        reader, writer = await asyncio.open_connection(sock=client)
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.gather(_forward(reader, upstream_writer), _forward(upstream_reader, writer))

    def accept() -> None:
        client, _ = listener.accept()
        accepted[0] += 1
        if accepted[0] == 1:
            time.sleep(busy)
        forwards.add(asyncio.ensure_future(forward(client)))

    loop.add_reader(listener, accept)
    try:
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0", accepted
    finally:
        loop.remove_reader(listener)
        listener.close()
        for task in forwards:
            task.cancel()
        await asyncio.gather(*forwards, return_exceptions=True)


async def test_a_connect_that_a_busy_event_loop_timed_out_is_made_again(
    redis: RedisServer, make: Make
) -> None:
    """The kernel made the connection at once, but the loop was busy past the connect
    timeout, which then won over the finished connect: the request failed
    ``STORE_UNAVAILABLE`` ("Timeout connecting to server") though Redis was fine."""
    async with busy_at_first_connect(redis.port, busy=0.6) as (url, accepted):
        store = make(url, connect_timeout=0.2)
        assert await store.owner("s") is None
        assert accepted == [2]


async def test_a_connect_that_never_completes_fails_within_two_connect_timeouts(
    make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    """A Redis whose host does not answer (here a listener whose accept queue is full,
    so the kernel drops the connects) still fails the call ``STORE_UNAVAILABLE``: the
    connect is made twice, then given up."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=0)
    with listener, socket.create_connection(listener.getsockname()):  # the queue is full
        store = make(f"redis://127.0.0.1:{listener.getsockname()[1]}/0")
        start = time.monotonic()
        with pytest.raises(StreamError) as error:
            await store.owner("s")
        assert time.monotonic() - start < BOUND
    assert reason(error) == "STORE_UNAVAILABLE"
    assert caplog.text.count("trying once more") == 1


async def test_new_connections_do_not_read_the_package_metadata_again(
    redis: RedisServer, make: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Left to redis-py, each new pooled connection reads the ``redis`` package's metadata
    for ``CLIENT SETINFO`` (about 1 ms on the event loop): when many replies start at
    once the pool opens dozens. The store has it read once."""
    from redis import utils as redis_utils

    reads: list[str] = []
    version = redis_utils.get_lib_version

    def counted() -> str:
        reads.append("read")
        return version()

    monkeypatch.setattr(redis_utils, "get_lib_version", counted)
    store, watcher = make(redis.url), make(redis.url)
    await watcher.owner("-")
    before = len(await watcher._redis.client_list())
    # Concurrent commands, each on a connection of its own.
    assert await asyncio.gather(*(store.owner(f"s{i}") for i in range(20))) == [None] * 20
    assert len(await watcher._redis.client_list()) - before >= 10
    assert len(reads) <= 1


async def test_batched_writes_do_not_wait_for_a_taken_pool(redis: RedisServer, make: Make) -> None:
    """The replies' batched writes have a connection of their own: requests that take
    every pooled connection (here a blocking read holds the only one) leave them be."""
    # Blocking reads of 2 s (half the socket timeout) hold the pool's one connection.
    store = make(redis.url, max_connections=1, pool_timeout=0.3, socket_timeout=4)
    await store.create("followed", owner="o")
    await store.create("written", owner="o")
    reader = asyncio.create_task(store.read("followed", 0, timeout=BOUND))
    await asyncio.sleep(0.1)
    with pytest.raises(StreamError) as busy:  # the pool is taken ...
        await store.owner("written")
    assert reason(busy) == "STORE_BUSY"
    # ... and the batched writes go on (through the pool they would be STORE_BUSY too).
    assert await store.append_batches({"written": [{"n": 1}], "followed": [{"n": 2}]}) == {
        "written": 1,
        "followed": 1,
    }
    assert await asyncio.wait_for(reader, BOUND) == [StoredEvent(1, {"n": 2})]


async def test_a_reply_ends_complete_while_requests_hold_the_pool(
    redis: RedisServer, make: Make
) -> None:
    """Its last events and its end go with the batched writes, as its tokens did: a burst
    of requests that holds every pooled connection no longer fails it ``STORE_BUSY`` at
    its very end (its client saw every token, then an error)."""
    store = make(redis.url, max_connections=1, pool_timeout=0.3, socket_timeout=4)
    generations = Generations(store)
    generation_id = await generations.start(paced(20, 0.01, []), Pipeline(), owner="me")
    await store.create("followed", owner="o")
    request = asyncio.create_task(store.read("followed", 0, timeout=2.5))  # holds the pool
    async with asyncio.timeout(BOUND):
        events = await everything(generations, generation_id)
    assert isinstance(events[-1], Complete)
    assert "".join(e.text for e in events if isinstance(e, Chunk)) == "".join(
        f"{n} " for n in range(20)
    )
    await request
    assert await store.is_finished(generation_id)


async def test_replies_ending_together_write_their_ends_in_a_call_or_two(
    redis: RedisServer, make: Make
) -> None:
    """2,000 replies end at once while a request holds the pool's one connection: every
    end is stored, gathered into a few script calls on the batched writes' connection."""
    store = make(redis.url, max_connections=1, pool_timeout=0.3, socket_timeout=4)
    ids = [f"reply{n}" for n in range(2000)]
    for stream_id in ids:
        await store.create(stream_id, owner="o")
    await store.create("followed", owner="o")
    request = asyncio.create_task(store.read("followed", 0, timeout=1.5))
    await asyncio.sleep(0.1)
    calls_before = _script_calls(redis)
    async with asyncio.timeout(BOUND):
        results = await asyncio.gather(
            *(store.append_batches({i: [{"end": i}]}, finish={i}) for i in ids)
        )
    assert results == [{i: 1} for i in ids]
    assert _script_calls(redis) - calls_before <= 3
    await request
    assert all([await store.is_finished(i) for i in ids[:: len(ids) // 10]])


async def test_replies_ending_together_give_back_their_places_in_a_call_or_two(
    redis: RedisServer, make: Make
) -> None:
    """2,000 replies end at once (a shutdown, their clients all gone) while a blocking
    read holds the pool's one connection: every place is given back, in a few script calls
    on the batched writes' connection (through the pool, each would wait for it and fail
    ``STORE_BUSY``, its places taken until their lease lapsed)."""
    store = make(redis.url, max_connections=1, pool_timeout=0.3, socket_timeout=4)
    quotas = [Quota("address", 10_000, 30), Quota("owner", 10_000, 30)]
    holders = [f"reply{n}" for n in range(2000)]
    for holder in holders:
        assert await store.acquire_quotas(holder, quotas) is None
    await store.create("followed", owner="o")
    reader = asyncio.create_task(store.read("followed", 0, timeout=1.5))
    await asyncio.sleep(0.1)
    calls_before = _script_calls(redis)
    async with asyncio.timeout(BOUND):
        await asyncio.gather(*(store.release_quotas(h, ["address", "owner"]) for h in holders))
    assert _script_calls(redis) - calls_before <= 3
    await reader
    # Every place is free: one more fits where only one may be held.
    assert (
        await store.acquire_quotas("next", [Quota("address", 1, 30), Quota("owner", 1, 30)]) is None
    )


def _script_calls(redis: RedisServer) -> int:
    """How many scripts Redis ran so far."""
    import redis as redis_py

    client = redis_py.Redis.from_url(redis.url)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return sum(
        int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("eval", "evalsha")
    )


async def test_batched_writes_send_their_script_again_when_redis_lost_it(
    own_redis: RedisServer, make: Make
) -> None:
    """The batch writer calls its script by digest; a flushed (or restarted) Redis no
    longer has it, and the write sends its source instead of failing, on the connection
    it holds (an error reply is no reason to connect again)."""
    from redis.asyncio import Redis

    store = make(own_redis.url)
    await store.create("s", owner="o")
    assert await store.append_batches({"s": [{"n": 1}]}) == {"s": 1}
    client = Redis.from_url(own_redis.url)
    try:
        await client.script_flush()
        connections = (await client.info("stats"))["total_connections_received"]
        assert await store.append_batches({"s": [{"n": 2}]}) == {"s": 2}
        assert await store.append_batches({"s": [{"n": 3}]}) == {"s": 3}
        assert (await client.info("stats"))["total_connections_received"] == connections
    finally:
        await client.aclose()
    assert [event.data for event in await store.read("s", 0, timeout=1)] == [
        {"n": 1},
        {"n": 2},
        {"n": 3},
    ]


async def test_batched_writes_connect_again_after_a_restart(
    own_redis: RedisServer, make: Make
) -> None:
    """The batch writer holds its connection between writes: the write that finds it
    dead fails as the store being unavailable, and the next one connects again."""
    store = make(own_redis.url)
    await store.create("s", owner="o")
    assert await store.append_batches({"s": [{"n": 1}]}) == {"s": 1}
    own_redis.restart()  # no persistence: the stream is gone with the old server
    start = time.monotonic()
    try:
        first = await store.append_batches({"s": [{"n": 2}]})
    except StreamError as error:
        assert error.details is not None and error.details["reason"] == "STORE_UNAVAILABLE"
    else:
        assert isinstance(first["s"], StreamError)
    second = await store.append_batches({"s": [{"n": 3}]})
    assert time.monotonic() - start < BOUND
    error = second["s"]
    assert isinstance(error, StreamError)
    assert error.details is not None and error.details["reason"] == "NOT_FOUND"


async def test_errors_never_show_the_password(
    own_redis: RedisServer, make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    own_redis.stop()
    store = make(f"redis://:s3cret@127.0.0.1:{own_redis.port}/0")
    with pytest.raises(StreamError) as error:
        await store.owner("s")
    assert "s3cret" not in repr(error.value.details) + caplog.text
    assert f"redis://:***@127.0.0.1:{own_redis.port}/0" in caplog.text


async def test_errors_never_show_a_password_given_in_the_query(
    own_redis: RedisServer, make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    """redis-py also reads ``?password=`` (and ``?ssl_password=``) from the URL."""
    own_redis.stop()
    store = make(f"rediss://127.0.0.1:{own_redis.port}/0?password=s3cret&ssl_password=k3y")
    with pytest.raises(StreamError) as error:
        await store.owner("s")
    logged = repr(error.value.details) + caplog.text
    assert "s3cret" not in logged and "k3y" not in logged
    assert f"127.0.0.1:{own_redis.port}/0?password=***&ssl_password=***" in caplog.text


async def test_errors_tell_clients_no_host_port_or_database(
    own_redis: RedisServer, make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    """The message is what clients see; the server's log has the whole story."""
    own_redis.stop()
    store = make(own_redis.url)
    for call in (store.owner("s"), store.create("s", owner="o"), store.read("s", 0, timeout=1)):
        with pytest.raises(StreamError) as error:
            await call
        assert "127.0.0.1" not in error.value.message
        assert str(own_redis.port) not in error.value.message
        assert "/0" not in error.value.message
    assert own_redis.url in caplog.text and "Error 111 connecting" in caplog.text


def test_restart_keeps_the_port(own_redis: RedisServer) -> None:
    port = own_redis.port
    own_redis.restart()
    assert own_redis.port == port and own_redis.ping()
    own_redis.stop()
    assert not own_redis.ping()


async def test_the_streams_reader_reads_many_streams_in_one_blocking_read(
    redis: RedisServer, make: Make
) -> None:
    writer, store = make(redis.url), make(redis.url)
    reader = store.streams_reader()
    for key in ("a", "b", "c"):
        await writer.create(key, owner="me")
        reader.read_from(key, 0)
    await writer.append("a", {"n": 1})
    await writer.append_many("b", [{"n": 1}, {"n": 2}])
    found = await reader.wait(timeout=BOUND)
    assert found == {
        "a": Tail([StoredEvent(1, {"n": 1})], False),
        "b": Tail([StoredEvent(1, {"n": 1}), StoredEvent(2, {"n": 2})], False),
    }
    # The cursors moved past what was read; a forgotten stream is read no more.
    reader.forget("c")
    await writer.append("c", {"n": 1})
    await writer.finish("a")
    assert await reader.wait(timeout=BOUND) == {"a": Tail([], True)}
    waiting = asyncio.create_task(reader.wait(timeout=BOUND))
    await asyncio.sleep(0.2)
    started = time.monotonic()
    await store.streams_reader().wake()  # the same reader: one per store
    assert await waiting == {}
    assert time.monotonic() - started < 1.0


async def test_the_streams_reader_reports_trimmed_gone_and_lapsed_streams(
    redis: RedisServer, make: Make
) -> None:
    writer, store = make(redis.url, max_events=2), make(redis.url)
    reader = store.streams_reader()
    await writer.create("trimmed", owner="me")
    await writer.append_many("trimmed", [{"n": n} for n in range(5)])
    reader.read_from("trimmed", 1)
    found = await reader.wait(timeout=BOUND)
    assert isinstance(found["trimmed"], StreamError)
    assert found["trimmed"].details is not None
    assert found["trimmed"].details["reason"] == "EVENTS_EXPIRED"
    await writer.create("dead", owner="me", lease=0.1)
    await asyncio.sleep(0.2)
    assert await reader.watch(["trimmed", "dead", "unknown"]) == {
        "dead": "LAPSED",
        "unknown": "NOT_FOUND",
    }
    assert await store.last_watched("trimmed") is not None
