"""``RedisStore(process_leases=True)``: one lease per process for all the streams it runs
and one for all its places in the quotas, renewed in one command whatever it runs,
against a real redis-server shared by several store instances (processes). A process
that stops renewing loses all of them at once; the places of a window of starts keep
their own deadline; a store without the option shares the keys with one that has it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

from streaming.store.base import LAPSED, Quota, StreamError
from streaming.store.redis import RedisStore
from tests.redis_server import RedisServer

from .conftest import needs_redis

pytestmark = needs_redis

Make = Callable[..., RedisStore]
INTERRUPTED = {"type": "error", "code": "INTERRUPTED", "message": "gone"}
#: The score of a place held on its process's lease (``HELD`` in the store's scripts).
HELD = 2**52
#: The leases of these tests, and the wait past one: long enough beside the renewals
#: every ``RENEW`` that a loaded machine does not let a renewed lease lapse.
LEASE, PAST = 1.0, 1.2
RENEW = 0.3


@pytest.fixture
def make(make_redis_store: Make) -> Make:
    """Stores with one lease per process, each one process of a fleet."""
    return lambda **options: make_redis_store(**{"process_leases": True, **options})


@pytest.fixture
async def raw(redis: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis.url, decode_responses=True)
    yield client
    await client.aclose()


def active(key: str, limit: int = 1, seconds: float = LEASE) -> Quota:
    return Quota(key, limit, seconds, renewed=True)


async def test_one_renewal_keeps_every_place_of_the_process_without_touching_them(
    make: Make, raw: Redis
) -> None:
    running, other = make(), make()
    prefix = running.key_prefix
    holders = [f"r{n}" for n in range(2000)]
    for holder in holders:
        assert await running.acquire_quotas(holder, [active("owner", 2000)]) is None
    assert running.renews_per_process
    for _ in range(5):  # past the lease of each place
        await asyncio.sleep(RENEW)
        # Naming one of its replies renews them all (``Generations`` makes one call).
        await running.renew_many_quotas([(holders[0], [active("owner", 2000)])])
    assert await other.acquire_quotas("late", [active("owner", 2000)]) is not None
    # The places were not written by the renewals: only the process's deadline was.
    key = f"{prefix}{{quotas}}:owner"
    assert await raw.zscore(key, "r1999") == HELD
    assert await raw.ttl(key) == -1  # no expiry while its places are held
    assert await raw.hlen(f"{prefix}{{quotas}}:process:{running.process}") == 2000


async def test_places_of_a_process_that_stops_renewing_are_given_back_at_once(
    make: Make, raw: Redis
) -> None:
    dead, alive = make(), make()
    prefix = dead.key_prefix
    for holder in ("a", "b"):
        assert await dead.acquire_quotas(holder, [active("owner", 3), active("address", 2)]) is None
    assert await alive.acquire_quotas("c", [active("address", 2)]) is not None
    await asyncio.sleep(PAST)  # the dead process's lease lapsed: the next acquire sweeps it
    assert await alive.acquire_quotas("c", [active("address", 2)]) is None
    assert await alive.acquire_quotas("d", [active("address", 2)]) is None
    assert await raw.zrange(f"{prefix}{{quotas}}:owner", 0, -1) == []
    assert not await raw.exists(f"{prefix}{{quotas}}:process:{dead.process}")
    assert await raw.zscore(f"{prefix}{{quotas}}:processes", dead.process) is None


async def test_a_dead_process_s_places_are_given_back_a_thousand_holders_a_call(
    make: Make, raw: Redis
) -> None:
    """Not all at once: 10,000 held Redis, and every process sharing it, for 50-80 ms."""
    dead, alive = make(), make()
    key = f"{dead.key_prefix}{{quotas}}:owner"
    for n in range(2500):
        assert await dead.acquire_quotas(f"r{n}", [active("owner", 5000)]) is None
    await asyncio.sleep(PAST)
    registry = f"{dead.key_prefix}{{quotas}}:processes"
    held = 2500
    for _ in range(2):
        await alive.renew_quotas("none", [active("owner", 5000)])
        left = await raw.zcard(key)
        assert 1000 <= held - left <= 1100  # (HSCAN's COUNT is a hint: whole buckets)
        assert await raw.hlen(f"{dead.key_prefix}{{quotas}}:process:{dead.process}") == left
        assert await raw.zscore(registry, dead.process) is not None
        held = left
    assert await alive.acquire_quotas("late", [active("owner", 5000)]) is None
    assert await raw.zrange(key, 0, -1) == ["late"]
    assert await raw.zscore(registry, dead.process) is None


async def test_a_full_quota_gives_back_its_places_of_a_dead_process_before_refusing(
    make: Make, raw: Redis
) -> None:
    """A place the sweep did not reach yet refuses nobody."""
    dead, alive = make(), make()
    for n in range(2500):
        assert await dead.acquire_quotas(f"r{n}", [active(f"owner:{n}")]) is None
    await asyncio.sleep(PAST)
    index = f"{dead.key_prefix}{{quotas}}:process:{dead.process}"
    # What the next call's sweep gives back (the same HSCAN on the same hash).
    _, first = await raw.hscan(index, 0, count=1000)
    n = next(n for n in range(2500) if f"r{n}" not in first)
    assert await alive.acquire_quotas("late", [active(f"owner:{n}")]) is None
    assert await raw.zrange(f"{dead.key_prefix}{{quotas}}:owner:{n}", 0, -1) == ["late"]
    assert not await raw.hexists(index, f"r{n}")


async def test_a_full_quota_looks_up_at_most_a_thousand_of_its_places(
    make: Make, raw: Redis
) -> None:
    """A quota full of live places, while processes lapsed: one refused acquire makes at
    most about 1,000 lookups, not one per held place and lapsed process."""
    alive, late = make(), make()
    dead = [make(), make()]
    for n in range(2000):
        assert await alive.acquire_quotas(f"here{n}", [active("address", 2000, 30)]) is None
    for number, store in enumerate(dead):
        for n in range(1200):  # more than a sweep gives back: both stay lapsed
            assert await store.acquire_quotas(f"g{number}-{n}", [active(f"o{number}-{n}")]) is None
    for store in dead:
        await raw.zadd(f"{store.key_prefix}{{quotas}}:processes", {store.process: 0})
    before = (await raw.info("commandstats")).get("cmdstat_hget", {}).get("calls", 0)
    assert await late.acquire_quotas("late", [active("address", 2000, 30)]) is not None
    after = (await raw.info("commandstats"))["cmdstat_hget"]["calls"]
    assert 0 < after - before <= 1000


async def test_a_renewal_sweeps_the_processes_that_lapsed(make: Make, raw: Redis) -> None:
    """Nothing needs to be acquired again for a dead process's keys to go."""
    dead, alive = make(), make()
    prefix = dead.key_prefix
    assert await dead.acquire_quotas("gone", [active("owner:gone")]) is None
    assert await alive.acquire_quotas("here", [active("owner:here", 1, 30)]) is None
    await asyncio.sleep(PAST)
    await alive.renew_quotas("here", [active("owner:here", 1, 30)])
    assert not await raw.exists(f"{prefix}{{quotas}}:owner:gone")
    assert await raw.zscore(f"{prefix}{{quotas}}:owner:here", "here") == HELD


async def test_a_window_of_starts_keeps_its_own_deadline(make: Make) -> None:
    store, other = make(), make()
    starts = Quota("starts:address:1.2.3.4", 1, LEASE)
    assert await store.acquire_quotas("s1", [active("owner", 5, 5.0), starts]) is None
    assert await other.acquire_quotas("s2", [starts]) is not None
    await asyncio.sleep(PAST / 2)
    await store.renew_quotas("s1", [active("owner", 5, 5.0)])
    await asyncio.sleep(PAST / 2)  # the start lapsed, although its process is alive
    assert await other.acquire_quotas("s2", [starts]) is None
    refusal = await other.acquire_quotas("s3", [active("owner", 1, 5.0)])
    assert refusal is not None and refusal.retry_after == 5.0  # held: its quota's time


async def test_a_release_frees_the_place_and_its_entry(make: Make, raw: Redis) -> None:
    store = make()
    assert await store.acquire_quotas("r1", [active("owner"), active("address")]) is None
    await store.release_quotas("r1", ["owner", "address"])
    assert not await raw.exists(f"{store.key_prefix}{{quotas}}:process:{store.process}")
    assert await store.acquire_quotas("r2", [active("owner"), active("address")]) is None


async def test_a_release_that_failed_is_sent_again_with_the_next_renewal(
    own_redis: RedisServer,
) -> None:
    """A place held on the process's lease lasts while the process lives: a release lost
    to a failing Redis (here: one that refuses scripts) would hold it for good."""
    store = RedisStore(url=own_redis.url, process_leases=True)
    other = RedisStore(url=own_redis.url)
    admin = Redis.from_url(own_redis.url, decode_responses=True)
    try:
        assert await store.acquire_quotas("r1", [active("owner", 1, 30)]) is None
        await admin.execute_command("ACL", "SETUSER", "default", "-eval", "-evalsha")
        try:
            with pytest.raises(StreamError):
                await store.release_quotas("r1", ["owner"])
        finally:
            await admin.execute_command("ACL", "SETUSER", "default", "+@all")
        assert await other.acquire_quotas("r2", [active("owner", 1, 30)]) is not None
        await store.renew_many_quotas([("r3", [active("owner", 1, 30)])])
        assert await other.acquire_quotas("r2", [active("owner", 1, 30)]) is None
    finally:
        await store.close()
        await other.close()
        await admin.aclose()


async def test_every_stream_of_a_process_lapses_with_its_lease(make: Make) -> None:
    running, follower = make(), make()
    for stream_id in ("s1", "s2"):
        await running.create(stream_id, owner="o", lease=LEASE)
        await running.append(stream_id, {"n": 1})
    for _ in range(5):  # past the lease, renewed: alive
        await asyncio.sleep(RENEW)
        await running.renew_leases(["s1"], LEASE)  # any of them renews the process's lease
        assert not await follower.interrupt_if_lapsed("s2", INTERRUPTED)
    reader = follower.streams_reader()
    assert await reader.watch(["s1", "s2"]) == {}
    await asyncio.sleep(PAST)  # the process died
    assert await reader.watch(["s1", "s2", "unknown"]) == {
        "s1": LAPSED,
        "s2": LAPSED,
        "unknown": "NOT_FOUND",
    }
    assert await follower.interrupt_if_lapsed("s1", INTERRUPTED)
    assert await follower.interrupt_if_lapsed("s2", INTERRUPTED)
    assert [event.data for event in await follower.read("s2", 0, timeout=0)] == [
        {"n": 1},
        INTERRUPTED,
    ]


async def test_stores_with_and_without_the_option_read_each_others_leases(
    make: Make, raw: Redis
) -> None:
    """A fleet switching the option on runs both forms at once (all on this version)."""
    per_process, per_stream = make(), make(process_leases=False)
    prefix = per_process.key_prefix
    await per_process.create("new", owner="o", lease=LEASE)
    await per_stream.create("old", owner="o", lease=LEASE)
    assert await raw.hget(f"{prefix}{{new}}:meta", "process") == per_process.process
    assert await raw.hget(f"{prefix}{{old}}:meta", "lease") is not None
    await asyncio.sleep(PAST)
    assert await per_stream.interrupt_if_lapsed("new", INTERRUPTED)
    assert await per_process.interrupt_if_lapsed("old", INTERRUPTED)
    # Places: a key with places of both forms expires with neither's.
    timed = Quota("owner", 2, LEASE)
    assert await per_stream.acquire_quotas("timed", [timed]) is None
    assert await per_process.acquire_quotas("held", [active("owner", 2)]) is None
    assert await per_stream.acquire_quotas("more", [timed]) is not None
    for _ in range(5):  # past the lease: the timed place lapses, the held one is renewed
        await asyncio.sleep(RENEW)
        await per_process.renew_quotas("held", [active("owner", 2)])
        await per_stream.renew_quotas("absent", [timed])  # sets no expiry on the key
        assert await raw.pttl(f"{prefix}{{quotas}}:owner") == -1
    assert await per_stream.acquire_quotas("more", [timed]) is None
    assert await per_stream.acquire_quotas("third", [timed]) is not None


async def test_a_key_of_timed_places_always_expires_with_its_last_place(
    make: Make, raw: Redis
) -> None:
    """A quota key never outlives its places: one of timed places has an expiry from its
    first place on, moved later by renewals; one that held a place on a process's lease
    (no expiry) takes one again once that place is given back."""
    per_process, per_stream = make(), make(process_leases=False)
    key = f"{per_stream.key_prefix}{{quotas}}:owner"
    timed = Quota("owner", 3, LEASE)
    assert await per_stream.acquire_quotas("timed", [timed]) is None
    assert 0 < await raw.pttl(key) <= LEASE * 1000
    await asyncio.sleep(RENEW)
    await per_stream.renew_quotas("timed", [timed])
    assert await raw.pttl(key) > (LEASE - RENEW) * 1000  # moved later
    assert await per_process.acquire_quotas("held", [active("owner", 3)]) is None
    assert await raw.pttl(key) == -1
    await per_process.release_quotas("held", ["owner"])
    await per_stream.renew_quotas("timed", [timed])
    assert 0 < await raw.pttl(key) <= LEASE * 1000
    await asyncio.sleep(PAST)
    assert not await raw.exists(key)


def test_the_option_must_be_a_boolean() -> None:
    with pytest.raises(ValueError, match="process_leases"):
        RedisStore(process_leases="yes")  # type: ignore[arg-type]
    assert not RedisStore().renews_per_process  # a lease per reply: renewed in slices
