"""``streaming.limits``: reservations of running replies and starts, on the memory store
(the contract tests run the store part on Redis too; the transports over daphne)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from django.test import override_settings

from streaming import generations as generations_module
from streaming import limits as limits_module
from streaming.errors import StreamError
from streaming.extractors import Pipeline
from streaming.generations import Generations
from streaming.limits import UNLIMITED, Limits, Reservation, address_key, reserve, retry_after
from streaming.store.base import Quota
from streaming.store.memory import MemoryStore

from .generation_helpers import paced


async def test_the_settings_give_the_limits() -> None:
    """The defaults (tests.settings turns them off for the rest of the suite)."""
    with override_settings(STREAMING={}):
        assert Limits.from_settings() == Limits(3, 10, 30)
    with override_settings(STREAMING={"MAX_ACTIVE_PER_OWNER": None}):
        assert Limits.from_settings() == Limits(None, 10, 30)


async def test_per_owner_limit_and_release() -> None:
    store = MemoryStore()
    limits = Limits(max_active_per_owner=2)
    first = await reserve(store, limits, owner="session:a", address="1.1.1.1")
    await reserve(store, limits, owner="session:a", address="2.2.2.2")
    with pytest.raises(StreamError) as refused:
        await reserve(store, limits, owner="session:a", address="3.3.3.3")
    assert str(refused.value.code) == "TOO_MANY_REPLIES"
    assert "for you" in refused.value.message and retry_after(refused.value) == 5
    await reserve(store, limits, owner="session:b", address="1.1.1.1")  # another owner
    await first.release()
    await first.release()  # once only: it frees one place, not two
    await reserve(store, limits, owner="session:a", address="3.3.3.3")
    with pytest.raises(StreamError):
        await reserve(store, limits, owner="session:a", address="3.3.3.3")


async def test_per_address_limit_counts_every_owner() -> None:
    store = MemoryStore()
    limits = Limits(max_active_per_address=2)
    for owner in ("a", "b"):
        await reserve(store, limits, owner=owner, address="1.1.1.1")
    with pytest.raises(StreamError) as refused:
        await reserve(store, limits, owner="c", address="1.1.1.1")
    assert "from this address" in refused.value.message


async def test_ipv6_clients_count_per_64_network() -> None:
    assert address_key("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert address_key("192.0.2.1") == "192.0.2.1"
    assert address_key("unknown") == "unknown"
    store = MemoryStore()
    limits = Limits(max_active_per_address=1)
    await reserve(store, limits, owner="a", address="2001:db8:1:2::1")
    with pytest.raises(StreamError):
        await reserve(store, limits, owner="b", address="2001:db8:1:2::ffff")
    await reserve(store, limits, owner="c", address="2001:db8:1:3::1")


async def test_starts_per_minute_is_a_window_that_releasing_does_not_refill() -> None:
    store = MemoryStore()
    limits = Limits(max_starts_per_minute=2)
    for _ in range(2):
        reservation = await reserve(store, limits, owner="a", address="1.1.1.1")
        await reservation.release()
    with pytest.raises(StreamError) as refused:
        await reserve(store, limits, owner="a", address="1.1.1.1")
    assert str(refused.value.code) == "RATE_LIMITED"
    assert retry_after(refused.value) in range(59, 61)


async def test_a_refunded_reservation_gives_back_its_start_and_its_places() -> None:
    store = MemoryStore()
    limits = Limits(max_active_per_owner=1, max_starts_per_minute=2)
    for _ in range(5):  # refused requests: no start counts
        reservation = await reserve(store, limits, owner="a", address="1.1.1.1")
        await reservation.refund()
        await reservation.release()  # a release after it is nothing more
    for _ in range(2):
        await (await reserve(store, limits, owner="a", address="1.1.1.1")).release()
    with pytest.raises(StreamError) as refused:
        await reserve(store, limits, owner="a", address="1.1.1.1")
    assert str(refused.value.code) == "RATE_LIMITED"


async def test_unlimited_never_asks_the_store() -> None:
    class Refusing(MemoryStore):
        async def acquire_quotas(self, *args: object) -> None:
            raise AssertionError("asked")

    reservation = await reserve(Refusing(), UNLIMITED, owner="a", address="1.1.1.1")
    await reservation.release()


@pytest.mark.parametrize("ending", ["complete", "fail", "cancel"])
async def test_a_reply_gives_back_its_places_when_it_ends(ending: str) -> None:
    store = MemoryStore()
    generations = Generations(store)
    limits = Limits(max_active_per_owner=1)
    gate = asyncio.Event()

    async def reply() -> AsyncIterator[str]:
        yield "a"
        await gate.wait()
        if ending == "fail":
            raise RuntimeError("the model failed")

    reservation = await reserve(store, limits, owner="a", address="1.1.1.1")
    generation_id = await generations.start(reply(), Pipeline(), owner="a", reservation=reservation)
    with pytest.raises(StreamError):
        await reserve(store, limits, owner="a", address="1.1.1.1")
    task = generations.running[generation_id].task
    if ending == "cancel":
        task.cancel()
    else:
        gate.set()
    await asyncio.wait_for(asyncio.wait({task}), 5)
    assert reservation.released
    await reserve(store, limits, owner="a", address="1.1.1.1")


async def test_a_running_reply_renews_its_places(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reply that runs longer than the lease keeps its places: the process renews them."""
    monkeypatch.setattr(limits_module, "LEASE", 0.3)
    monkeypatch.setattr(limits_module, "RENEW_EVERY", 0.1)
    monkeypatch.setattr(generations_module, "WATCH_INTERVAL", 0.05)
    store = MemoryStore()
    generations = Generations(store)
    limits = Limits(max_active_per_owner=1)
    reservation = await reserve(store, limits, owner="a", address="1.1.1.1")
    generation_id = await generations.start(
        paced(100, 0.01, []), Pipeline(), owner="a", reservation=reservation
    )
    await asyncio.sleep(0.7)
    with pytest.raises(StreamError):
        await reserve(store, limits, owner="a", address="1.1.1.1")
    await generations.cancel(generation_id)
    await reserve(store, limits, owner="a", address="1.1.1.1")


def test_a_reply_s_active_places_must_be_renewed_ones() -> None:
    """A store that renews per process renews them all when told of one reply: a place of
    its own deadline among them would lapse unnoticed."""
    with pytest.raises(ValueError, match="renewed"):
        Reservation(MemoryStore(), "h", [Quota("active:owner:a", 1, 30)])
    renewed = Quota("active:owner:a", 1, 30, renewed=True)
    assert Reservation(MemoryStore(), "h", [renewed]).active == (renewed,)
