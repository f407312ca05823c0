"""Fixtures for the event stores: a real redis-server, and each store to run the contract on."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from streaming.store.base import EventStore
from streaming.store.memory import MemoryStore
from tests.redis_server import RedisServer, needs_redis, redis_server, require_redis

if TYPE_CHECKING:
    from streaming.store.redis import RedisStore

StoreFactory = Callable[..., EventStore]

#: The commands ``RedisStore`` sends (the Lua scripts' own calls included, which Redis
#: checks against the user's ACL too): all an ACL user of the store needs.
STORE_COMMANDS = (
    "+evalsha +eval +script|load +hget +hmget +xadd +xread +xrange +pexpire +exists +time "
    "+del +hdel +hexists +hscan +hset +persist +pttl +zadd +zcard +zrange +zrangebyscore "
    "+zrem +zremrangebyscore +zscore"
)
#: The password of the ACL user of these tests.
ACL_PASSWORD = "s3cret-acl-pw"


def store_user(name: str, key_prefix: str) -> str:
    """An ACL rule (``ACL SETUSER``'s arguments) for a user of the store with the
    password ``ACL_PASSWORD``, the store's commands and no keys but its own."""
    return f"{name} on >{ACL_PASSWORD} ~{key_prefix}* {STORE_COMMANDS}"


@pytest.fixture(scope="session")
def redis() -> Iterator[RedisServer]:
    """One redis-server for the session; tests keep apart by their own key prefix."""
    require_redis()
    with redis_server() as server:
        yield server


@pytest.fixture(scope="session")
def acl_redis() -> Iterator[RedisServer]:
    """A redis-server with the user ``store`` of ``store_user`` for keys under ``test:``
    (the key prefix of ``redis_stores``)."""
    require_redis()
    with redis_server(users=[store_user("store", "test:")]) as server:
        yield server


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of this test alone, which it may stop, restart or pause."""
    require_redis()
    with redis_server() as server:
        yield server


def redis_stores(
    server: RedisServer, made: list[EventStore], user: str = ""
) -> Callable[..., RedisStore]:
    """Build Redis stores on ``server`` under a key prefix of their own (the processes of
    one fleet, sharing their streams and quotas), each added to ``made``; as the ACL user
    ``user`` (of ``store_user``) if given."""
    from streaming.store.redis import RedisStore

    prefix = f"test:{uuid.uuid4().hex[:8]}:"
    login = f"{user}:{ACL_PASSWORD}@" if user else ""
    url = server.url.replace("://", f"://{login}", 1)

    def make(**options: Any) -> RedisStore:
        store = RedisStore(url=url, key_prefix=prefix, **options)
        made.append(store)
        return store

    return make


@pytest.fixture
async def make_redis_store(redis: RedisServer) -> AsyncIterator[Callable[..., RedisStore]]:
    """``redis_stores`` on the session's server; all are closed after the test."""
    made: list[EventStore] = []
    yield redis_stores(redis, made)
    for store in made:
        await store.close()


@pytest.fixture(
    params=[
        "memory",
        pytest.param("redis", marks=needs_redis),
        pytest.param("redis-process-leases", marks=needs_redis),
        pytest.param("redis-acl", marks=needs_redis),
        pytest.param("redis-acl-process-leases", marks=needs_redis),
    ]
)
async def make_store(request: pytest.FixtureRequest) -> AsyncIterator[StoreFactory]:
    """Build stores of one backend with any options; all are closed after the test. The
    Redis store runs the contract with a lease per stream and place, and with one lease
    per process (``process_leases``); each both as Redis's default user and as an ACL
    user allowed only the store's commands on its own keys (``store_user``)."""
    made: list[EventStore] = []
    if request.param == "memory":

        def make(**options: Any) -> EventStore:
            made.append(MemoryStore(**options))
            return made[-1]

    else:
        if request.param.startswith("redis-acl"):
            build = redis_stores(request.getfixturevalue("acl_redis"), made, user="store")
        else:
            build = redis_stores(request.getfixturevalue("redis"), made)
        leases = request.param.endswith("process-leases")

        def make(**options: Any) -> EventStore:
            return build(**{"process_leases": leases, **options})

    yield make
    for store in made:
        await store.close()


@pytest.fixture
def store(make_store: StoreFactory) -> EventStore:
    """A store of each backend with the default options."""
    return make_store()
