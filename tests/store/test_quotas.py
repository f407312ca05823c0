"""The quota part of the ``EventStore`` contract (the places running replies hold), run
against every backend: memory, and a real Redis shared by several store instances."""

from __future__ import annotations

import asyncio

from streaming.store.base import EventStore, Quota

from .conftest import StoreFactory


async def test_places_are_taken_up_to_the_limit_then_refused(store: EventStore) -> None:
    quota = Quota("active:owner:a", 2, 30)
    assert await store.acquire_quotas("r1", [quota]) is None
    assert await store.acquire_quotas("r2", [quota]) is None
    refusal = await store.acquire_quotas("r3", [quota])
    assert refusal is not None and refusal.key == "active:owner:a"
    assert 29 < refusal.retry_after <= 30


async def test_a_holder_already_present_keeps_its_place(store: EventStore) -> None:
    quota = Quota("k", 1, 30)
    assert await store.acquire_quotas("r1", [quota]) is None
    assert await store.acquire_quotas("r1", [quota]) is None


async def test_all_or_nothing_across_quotas(store: EventStore) -> None:
    owner, address = Quota("owner", 5, 30), Quota("address", 1, 30)
    assert await store.acquire_quotas("r1", [owner, address]) is None
    refusal = await store.acquire_quotas("r2", [owner, address])
    assert refusal is not None and refusal.key == "address"
    # r2 took no place in ``owner`` either: four more fit there.
    for holder in ("a", "b", "c", "d"):
        assert await store.acquire_quotas(holder, [owner]) is None
    assert await store.acquire_quotas("e", [owner]) is not None


async def test_release_frees_the_place_and_is_idempotent(store: EventStore) -> None:
    quota = Quota("k", 1, 30)
    assert await store.acquire_quotas("r1", [quota]) is None
    await store.release_quotas("r1", ["k"])
    await store.release_quotas("r1", ["k", "never-held"])
    assert await store.acquire_quotas("r2", [quota]) is None


async def test_a_place_that_is_not_renewed_lapses(store: EventStore) -> None:
    """A process that dies without releasing frees its places after their lease."""
    quota = Quota("k", 1, 0.3)
    assert await store.acquire_quotas("dead", [quota]) is None
    assert await store.acquire_quotas("r2", [quota]) is not None
    await asyncio.sleep(0.4)
    assert await store.acquire_quotas("r2", [quota]) is None


async def test_renewing_keeps_the_place(store: EventStore) -> None:
    quota = Quota("k", 1, 1.0)
    assert await store.acquire_quotas("alive", [quota]) is None
    for _ in range(8):  # 1.6 s: longer than the lease
        await asyncio.sleep(0.2)
        await store.renew_quotas("alive", [quota])
    assert await store.acquire_quotas("r2", [quota]) is not None
    # Renewing a place that lapsed or was released does not take it back.
    await store.release_quotas("alive", ["k"])
    await store.renew_quotas("alive", [quota])
    assert await store.acquire_quotas("r2", [quota]) is None


async def test_a_window_of_starts_refuses_until_the_oldest_leaves(store: EventStore) -> None:
    starts = Quota("starts:address:1.2.3.4", 3, 0.5)
    for holder in ("s1", "s2", "s3"):
        assert await store.acquire_quotas(holder, [starts]) is None
    refusal = await store.acquire_quotas("s4", [starts])
    assert refusal is not None and 0 < refusal.retry_after <= 0.5
    await asyncio.sleep(refusal.retry_after + 0.1)
    assert await store.acquire_quotas("s4", [starts]) is None


async def test_quotas_are_shared_by_every_instance_of_the_store(
    make_store: StoreFactory,
) -> None:
    """Two Redis store instances (two processes) count together; two memory stores are
    two processes that share nothing."""
    first, second = make_store(), make_store()
    quota = Quota("k", 1, 30)
    assert await first.acquire_quotas("r1", [quota]) is None
    shared = await second.acquire_quotas("r2", [quota]) is not None
    assert shared == (type(first).__name__ == "RedisStore")


async def test_concurrent_acquires_never_exceed_the_limit(store: EventStore) -> None:
    quota = Quota("k", 5, 30)
    results = await asyncio.gather(*(store.acquire_quotas(f"r{n}", [quota]) for n in range(20)))
    assert sum(result is None for result in results) == 5


async def test_renewing_many_holders_at_once_keeps_only_the_places_still_held(
    store: EventStore,
) -> None:
    """A process renews the places of all its replies in one call: thousands of holders
    sharing a few quotas (beyond one script's argument batch), each place extended by its
    own quota's time, and neither a released nor a lapsed place taken back."""
    owner, address = Quota("owner", 5000, 1.0), Quota("address", 5000, 1.0)
    holders = [f"h{n}" for n in range(2500)]
    taken = [Quota("owner", 5000, 30), Quota("address", 5000, 30)]
    for holder in holders:
        assert await store.acquire_quotas(holder, taken) is None
    # From now on every place lasts 1 s from its last renewal.
    await store.renew_many_quotas([(holder, [owner, address]) for holder in holders])
    short = Quota("short", 1, 0.2)
    assert await store.acquire_quotas("lapsing", [short]) is None
    await store.release_quotas("h0", ["owner", "address"])
    places = [(holder, [owner, address]) for holder in holders]
    for _ in range(5):  # 1.5 s: longer than the lease
        await asyncio.sleep(0.3)
        await store.renew_many_quotas([*places, ("lapsing", [short]), ("none", [])])
    # Still held: 2,499 places; with a limit of 2,500, one more fits, then none.
    full = Quota("owner", 2500, 1.0)
    assert await store.acquire_quotas("new", [full]) is None
    assert await store.acquire_quotas("new2", [full]) is not None
    # The lapsed place was not taken back by the renewals after its lease.
    assert await store.acquire_quotas("other", [short]) is None
    # Released, it stays free: "h0" renewed with the others got no place back.
    await store.release_quotas("new", ["owner"])
    assert await store.acquire_quotas("h0", [full]) is None
    assert await store.acquire_quotas("new3", [full]) is not None
