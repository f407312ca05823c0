"""Fixtures for the event stores: a real redis-server, and each store to run the contract on."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from streaming.store.base import EventStore
from streaming.store.memory import MemoryStore
from tests.redis_server import REDIS_SERVER, RedisServer, redis_server

needs_redis = pytest.mark.skipif(
    REDIS_SERVER is None, reason="redis-server is not installed (CI installs it)"
)

StoreFactory = Callable[..., EventStore]


@pytest.fixture(scope="session")
def redis() -> Iterator[RedisServer]:
    """One redis-server for the session; tests keep apart by their own key prefix."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (CI installs it)")
    with redis_server() as server:
        yield server


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of this test alone, which it may stop, restart or pause."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (CI installs it)")
    with redis_server() as server:
        yield server


@pytest.fixture(params=["memory", pytest.param("redis", marks=needs_redis)])
async def make_store(request: pytest.FixtureRequest) -> AsyncIterator[StoreFactory]:
    """Build stores of one backend with any options; all are closed after the test."""
    made: list[EventStore] = []
    prefix = f"test:{uuid.uuid4().hex[:8]}:"
    server: RedisServer | None = None
    if request.param == "redis":
        server = request.getfixturevalue("redis")

    def make(**options: Any) -> EventStore:
        store: EventStore
        if server is None:
            store = MemoryStore(**options)
        else:
            from streaming.store.redis import RedisStore

            store = RedisStore(url=server.url, key_prefix=prefix, **options)
        made.append(store)
        return store

    yield make
    for store in made:
        await store.close()


@pytest.fixture
def store(make_store: StoreFactory) -> EventStore:
    """A store of each backend with the default options."""
    return make_store()
