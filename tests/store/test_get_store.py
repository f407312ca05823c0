"""``get_store()``: the configured backend, one instance per process or per event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings

from streaming.store import MemoryStore, get_store, reset_stores
from tests.redis_server import RedisServer

from .conftest import needs_redis


@pytest.fixture(autouse=True)
def fresh_stores() -> Iterator[None]:
    """Each test starts without cached stores."""
    reset_stores()
    yield
    reset_stores()


def store_setting(backend: str, **options: Any) -> Any:
    return override_settings(STREAMING={"STORE": {"BACKEND": backend, "OPTIONS": options}})


async def test_the_default_is_one_memory_store_per_process() -> None:
    store = get_store()
    assert isinstance(store, MemoryStore)
    assert get_store() is store
    assert await asyncio.to_thread(asyncio.run, _get_store_async()) is store
    reset_stores()
    assert get_store() is not store


async def _get_store_async() -> object:
    return get_store()


async def test_options_come_from_the_setting() -> None:
    with store_setting("streaming.store.memory.MemoryStore", ttl_finished=7, max_events=9):
        store = get_store()
        assert isinstance(store, MemoryStore)
        assert (store.ttl_finished, store.max_events) == (7, 9)
    assert get_store() is not store  # another configuration, another store


@needs_redis
async def test_a_redis_store_per_event_loop(redis: RedisServer) -> None:
    from streaming.store.redis import RedisStore

    with store_setting("streaming.store.redis.RedisStore", url=redis.url):
        store = get_store()
        assert isinstance(store, RedisStore)
        assert get_store() is store
        other = await asyncio.to_thread(asyncio.run, _get_store_async())
        assert isinstance(other, RedisStore) and other is not store
        await store.create("loop-test", owner="o")
        assert await store.owner("loop-test") == "o"
        await store.close()
