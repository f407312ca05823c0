"""``MemoryStore`` leases: one per event loop for its streams and one for its renewed
places, renewed in one step whatever runs there. A loop that stops renewing (closed, or
stalled past the lease) loses its streams and places; another loop's renewals keep only
its own."""

from __future__ import annotations

import asyncio

from streaming.store.base import Quota
from streaming.store.memory import MemoryStore

INTERRUPTED = {"type": "error", "code": "INTERRUPTED", "message": "gone"}
#: The leases of these tests, the wait past one, and the renewals that keep one.
LEASE, PAST, RENEW = 0.5, 0.7, 0.15


def active(key: str, limit: int = 1, seconds: float = LEASE) -> Quota:
    return Quota(key, limit, seconds, renewed=True)


async def on_another_loop(store: MemoryStore, holders: list[str], streams: list[str]) -> None:
    """Take places and start streams from an event loop of another thread, which then
    closes without giving anything back (as a loop whose replies were lost)."""

    async def take() -> None:
        for holder in holders:
            assert await store.acquire_quotas(holder, [active("owner", 100)]) is None
        for stream_id in streams:
            await store.create(stream_id, owner="o", lease=LEASE)

    await asyncio.to_thread(asyncio.run, take())


async def keep_renewing(store: MemoryStore, holder: str, stream_id: str, seconds: float) -> None:
    """This loop's process at work: its renewer names one reply, every ``RENEW``."""
    for _ in range(round(seconds / RENEW)):
        await asyncio.sleep(RENEW)
        await store.renew_many_quotas([(holder, [active("owner", 100)])])
        await store.renew_leases([stream_id], LEASE)


async def test_one_renewal_keeps_every_place_and_stream_of_the_loop() -> None:
    store = MemoryStore()
    holders = [f"r{n}" for n in range(2000)]
    for holder in holders:
        assert await store.acquire_quotas(holder, [active("owner", 2000)]) is None
    for stream_id in ("s1", "s2"):
        await store.create(stream_id, owner="o", lease=LEASE)
    await keep_renewing(store, holders[0], "s1", PAST * 2)  # past every place's lease
    assert await store.acquire_quotas("late", [active("owner", 2000)]) is not None
    assert not await store.interrupt_if_lapsed("s2", INTERRUPTED)
    assert store.renews_per_process  # ``Generations`` names them all in one call
    await store.close()


async def test_another_loop_s_places_and_streams_lapse_while_this_one_renews() -> None:
    store = MemoryStore()
    assert await store.acquire_quotas("here", [active("owner", 100)]) is None
    await store.create("mine", owner="o", lease=LEASE)
    await on_another_loop(store, [f"gone{n}" for n in range(99)], ["theirs"])
    assert await store.acquire_quotas("full", [active("owner", 100)]) is not None
    await keep_renewing(store, "here", "mine", PAST)
    # A full quota first gives back the places of a lapsed lease.
    assert await store.acquire_quotas("new", [active("owner", 100)]) is None
    assert not await store.interrupt_if_lapsed("mine", INTERRUPTED)
    assert await store.interrupt_if_lapsed("theirs", INTERRUPTED)
    assert [event.data for event in await store.read("theirs", 0, timeout=0)] == [INTERRUPTED]
    await store.close()


async def test_the_sweep_gives_back_the_places_of_a_lapsed_loop_nobody_asks_for() -> None:
    """Keys nobody takes a place in again do not keep a dead loop's places in memory."""
    store = MemoryStore()
    await on_another_loop(store, ["a", "b"], [])
    assert store._held_places.keys() == {"owner"}
    await asyncio.sleep(1.1)  # past the lease and the sweep's interval
    await store.create("next", owner="o")  # a store call sweeps (as its timer does)
    assert store._held_places == {}
    assert await store.acquire_quotas("c", [active("owner", 1)]) is None
    await store.close()


async def test_a_loop_that_runs_again_after_its_lease_was_swept_takes_a_new_one() -> None:
    """A loop stalled past its lease lost its places; the ones it takes next are on a
    lease the sweep watches too."""
    store = MemoryStore()
    assert await store.acquire_quotas("stale", [active("owner", 2)]) is None
    await asyncio.sleep(1.1)  # the loop "stalled" past its lease
    await store.create("first", owner="o")
    assert await store.acquire_quotas("fresh", [active("owner", 2)]) is None
    assert await store.acquire_quotas("other", [active("owner", 2)]) is None
    assert await store.acquire_quotas("more", [active("owner", 2)]) is not None
    await asyncio.sleep(1.1)
    await store.create("second", owner="o")
    assert store._held_places == {}
    await store.close()
