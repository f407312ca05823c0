"""``RedisStore``: events in Redis Streams, shared by every server process.

Each stream has two keys with the same hash tag (so a cluster keeps them together):
``<prefix>{<id>}:meta``, a hash (owner, seq, finished, watched, cancel, and lease or the
process whose lease it holds), and
``<prefix>{<id>}:events``, a Redis stream whose entry ids are ``<seq>-0``: the seq is the
position, gapless, and a cursor is an entry id. ``finish()`` adds an end marker
``<last seq>-1`` so that blocked ``XREAD``s wake up. Writes are Lua scripts
(``redis_scripts``: atomic, one round trip). Every wait is bounded: a blocked read is cut
into ``XREAD BLOCK``s shorter than the socket timeout, and redis-py retries nothing (only
a connect that timed out is made once more, before anything is sent on it), so a dead or
restarted Redis surfaces as ``StreamError`` (reason ``STORE_UNAVAILABLE``) within seconds.
Its message, which clients see, names no host, port or database: the server's log (logger
``streaming``) and the error's ``details`` (``url``, password hidden, and ``error``) do.

The followers in one process of the streams written by other processes share one reader
(``streams_reader()``): one ``XREAD BLOCK`` over all their streams on a connection of its
own (so a process holds at most one connection in a blocking read, however many
followers it serves), woken through a small stream of its own when a follower comes, and
one script call per interval that marks all those streams watched. It reads several
streams in one command, so they must live on one Redis server (not a Redis Cluster).

Needs the ``redis`` package (``pip install redis``); only this module imports it.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from json.encoder import encode_basestring
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit, urlunsplit

from streaming.errors import StreamError
from streaming.flat_json import compact_json

try:
    from redis.asyncio import BlockingConnectionPool, Redis
    from redis.asyncio.connection import Connection, parse_url
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.commands.core import AsyncScript
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import NoScriptError, RedisError, ResponseError
    from redis.exceptions import TimeoutError as RedisTimeoutError
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "streaming.store.redis.RedisStore needs the redis package: pip install redis"
    ) from error
try:
    from redis.driver_info import DriverInfo
except ImportError:  # an older redis-py, which reads its version once, at import
    DriverInfo = None  # type: ignore[assignment,misc]
try:
    from redis.maint_notifications import MaintNotificationsConfig
except ImportError:  # an older redis-py, which has no maintenance notifications
    MaintNotificationsConfig = None  # type: ignore[assignment,misc]

from . import redis_scripts as scripts
from .base import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_EVENTS,
    DEFAULT_TTL_ACTIVE,
    DEFAULT_TTL_FINISHED,
    LAPSED,
    NOT_FOUND,
    STORE_BUSY,
    STORE_UNAVAILABLE,
    EventStore,
    Quota,
    QuotaRefusal,
    StoredEvent,
    StreamsReader,
    Tail,
    check_cursor,
    check_options,
    not_found,
    require_counts,
    require_seconds,
    store_error,
    trimmed,
)

logger = logging.getLogger("streaming")

_Call = TypeVar("_Call")
_Result = TypeVar("_Result")

#: ``Retry-After`` (seconds) when every pooled connection stayed busy for the pool's wait.
BUSY_RETRY_AFTER = 1


def _pool_wait_ran_out(error: Exception) -> bool:
    """redis-py's pool gave up waiting for a free connection: the process is overloaded,
    the store may well be fine (redis-py says so only with a ``TimeoutError`` cause)."""
    return isinstance(error, RedisConnectionError) and isinstance(error.__cause__, TimeoutError)


#: Cancel requests kept in the ``<prefix>cancels`` stream (about; the newest ones), which
#: every process reads with one call per watch interval.
CANCELS_KEPT = 10_000


#: A password redis-py reads from a URL's query (``?password=``, ``?ssl_password=``).
_QUERY_PASSWORD = re.compile(r"((?:^|&)(?:ssl_)?password=)[^&]*", re.IGNORECASE)


def _redacted(url: str) -> str:
    """``url`` without its passwords (of its user, and in its query), fit for error
    messages and logs."""
    parts = urlsplit(url)
    parts = parts._replace(query=_QUERY_PASSWORD.sub(r"\1***", parts.query))
    if parts.password is not None:
        host = parts.netloc.rsplit("@", 1)[1]
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{host}")
    return urlunsplit(parts)


#: The JSON a payload is stored as (compact, non-ASCII kept).
_encode = compact_json

#: A chunk's record as that JSON, up to its text.
_CHUNK_RECORD = '{"type":"chunk","text":'


def _payload(data: dict[str, Any]) -> str:
    """``_encode(data)`` for an event's record; a chunk's (nearly every event: one a
    token) is written directly, without looking at its keys and values one by one."""
    if len(data) == 2 and data.get("type") == "chunk":
        text = data.get("text")
        if type(text) is str:
            return _CHUNK_RECORD + encode_basestring(text) + "}"
    return _encode(data)


@functools.cache
def _driver_info() -> dict[str, Any]:
    """What each new connection tells Redis about its client (``CLIENT SETINFO``), made
    once: left to redis-py, every new pooled connection reads the package's metadata
    again (about 1 ms, holding the event loop; 50 of them when replies start at once)."""
    return {} if DriverInfo is None else {"driver_info": DriverInfo()}


def _fresh_connections() -> dict[str, Any]:
    """Maintenance notifications off: while on (redis-py 7+ turns them on by default), the
    pool hands out a connection the server has closed without checking it, so after a
    Redis restart each pooled connection failed one request with ``STORE_UNAVAILABLE``."""
    if MaintNotificationsConfig is None:
        return {}
    return {"maint_notifications_config": MaintNotificationsConfig(enabled=False)}


class _ConnectTriedTwice:
    """Mixed into redis-py's connection class: a TCP connect that times out is made once
    more, at once. A loaded event loop can run the connect's timeout before noticing that
    the kernel finished the handshake long before, and the request failed though Redis
    was fine. Nothing has been sent on the connection yet, so trying again is safe; a
    refused connect is not tried again (nothing listens: Redis is down)."""

    async def _connect(self) -> None:
        try:
            await super()._connect()  # type: ignore[misc]
        except TimeoutError:
            logger.warning(
                "Connecting to the event store took longer than connect_timeout (%s s): "
                "trying once more",
                self.socket_connect_timeout,  # type: ignore[attr-defined]
            )
            await super()._connect()  # type: ignore[misc]


def _connect_tried_twice(base: type[Any]) -> type[Any]:
    """redis-py's connection class ``base`` with ``_ConnectTriedTwice``."""
    return type(f"ConnectTriedTwice{base.__name__}", (_ConnectTriedTwice, base), {})


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class RedisStore(EventStore):
    """Event store in Redis Streams, for several server processes.

    Options: ``url`` (default "redis://127.0.0.1:6379/0"); ``key_prefix`` (default
    "streaming:", must not contain "{"); ``ttl_finished`` (default 300 s), ``ttl_active``
    (default 3600 s, refreshed on each append), ``max_events`` (default 10000, XADD
    MAXLEN), ``max_batch`` (default 512) as for ``MemoryStore``; ``socket_timeout``
    (default 5 s: longest wait for one Redis reply, so a hung Redis is noticed),
    ``connect_timeout`` (default 2 s, tried twice); ``max_connections`` (default 50: connections for
    short commands, none held while a follower waits; the shared reader of the process's
    followers and the batched writes of its replies have one more each of their own) and
    ``pool_timeout`` (default 5 s: wait for a free connection when all are taken);
    ``process_leases`` (default False): one lease for all the streams this instance runs
    and one for all its places in the quotas, each renewed in one command, instead of one
    per stream and place (whose renewals cost Redis about 0.2 % of its core per 1,000
    running replies); switch it on once every process sharing the Redis runs a version
    that reads both forms.
    """

    def __init__(
        self,
        *,
        url: str = "redis://127.0.0.1:6379/0",
        key_prefix: str = "streaming:",
        ttl_finished: float = DEFAULT_TTL_FINISHED,
        ttl_active: float = DEFAULT_TTL_ACTIVE,
        max_events: int = DEFAULT_MAX_EVENTS,
        max_batch: int = DEFAULT_MAX_BATCH,
        socket_timeout: float = 5.0,
        connect_timeout: float = 2.0,
        max_connections: int = 50,
        pool_timeout: float = 5.0,
        process_leases: bool = False,
    ) -> None:
        check_options(ttl_finished, ttl_active, max_events, max_batch)
        require_seconds(
            socket_timeout=socket_timeout,
            connect_timeout=connect_timeout,
            pool_timeout=pool_timeout,
        )
        require_counts(max_connections=max_connections)
        for name, text in (("url", url), ("key_prefix", key_prefix)):
            if not isinstance(text, str):
                raise ValueError(f"{name} must be a string, not {text!r}")
        if "{" in key_prefix:
            raise ValueError("key_prefix must not contain '{' (it would change the hash tag)")
        if not isinstance(process_leases, bool):
            raise ValueError(f"process_leases must be True or False, not {process_leases!r}")
        self.url = _redacted(url)
        self.key_prefix = key_prefix
        self._cancels = f"{key_prefix}cancels"
        # The lease of this instance (``process_leases``): its id in the registries of the
        # processes running streams and holding places ("": a lease per stream and place).
        self.process = uuid.uuid4().hex if process_leases else ""
        self.renews_per_process = process_leases
        self._stream_leases = f"{key_prefix}processes"
        self._place_leases = self._quota_key("processes")
        self._place_index = self._quota_key("process:")
        # Releases of places held on the process's lease that failed: sent again with the
        # next ones (or the next renewal), or the places would stay taken while it lives.
        self._unreleased: list[tuple[str, Sequence[str]]] = []
        self.ttl_finished = ttl_finished
        self.ttl_active = ttl_active
        self.max_events = max_events
        self.max_batch = max_batch
        # One XREAD BLOCK waits at most this long, well inside the socket timeout.
        self._block = socket_timeout / 2
        self._socket_timeout = socket_timeout
        self._connect_timeout = connect_timeout
        self._pool_timeout = pool_timeout
        # Connections bind to the event loop of their first use; nothing connects yet.
        self._pool = self._new_pool(url, max_connections)
        self._redis = Redis(connection_pool=self._pool)
        # For the shared reader's own connection (made when it is first used).
        self._raw_url = url
        self._reader: _RedisStreamsReader | None = None
        # The batched writes of the process's replies (``append_batches``) have a
        # connection of their own, made at first use: a burst of requests that takes
        # every pooled connection cannot hold up (and fail) them.
        self._batch_writer: _OwnConnection | None = None
        # Appends and releases made while one is on its way go together in the next call.
        self._appends = _Combined(self._append_all)
        self._releases = _Combined(self._release_all)
        self._create_script = self._redis.register_script(scripts.CREATE)
        self._append_script = self._redis.register_script(scripts.APPEND)
        self._finish_script = self._redis.register_script(scripts.FINISH)
        self._read_script = self._redis.register_script(scripts.READ)
        self._set_script = self._redis.register_script(scripts.SET_IF_EXISTS)
        self._acquire_script = self._redis.register_script(scripts.ACQUIRE)
        self._renew_many_script = self._redis.register_script(scripts.RENEW_MANY)
        self._renew_lease_script = self._redis.register_script(scripts.RENEW_LEASE)
        self._renew_process_script = self._redis.register_script(scripts.RENEW_PROCESS)
        self._release_many_script = self._redis.register_script(scripts.RELEASE_MANY)
        self._interrupt_script = self._redis.register_script(scripts.INTERRUPT)
        self._watch_script = self._redis.register_script(scripts.WATCH)

    def _new_pool(self, url: str, max_connections: int) -> BlockingConnectionPool:
        # The connection class the URL asks for (TCP, TLS or Unix socket).
        transport: type[Any] = parse_url(url).get("connection_class", Connection)
        return BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=self._pool_timeout,
            socket_timeout=self._socket_timeout,
            socket_connect_timeout=self._connect_timeout,
            retry=Retry(NoBackoff(), 0),
            connection_class=_connect_tried_twice(transport),
            decode_responses=True,
            **_driver_info(),
            **_fresh_connections(),
        )

    def _keys(self, stream_id: str) -> list[str]:
        base = f"{self.key_prefix}{{{stream_id}}}"
        return [f"{base}:meta", f"{base}:events"]

    @contextmanager
    def _reaching(self) -> Iterator[None]:
        """Turn every redis-py failure into a ``StreamError``: the log names the store and
        the failure, the message (what clients see) neither."""
        try:
            yield
        except (RedisConnectionError, RedisTimeoutError) as error:
            if _pool_wait_ran_out(error):
                logger.warning(
                    "All %d connections to the event store at %s stayed busy for %s s: "
                    "the process has more requests than connections (raise "
                    "max_connections, or add processes), or the store answers slowly",
                    self._pool.max_connections,
                    self.url,
                    self._pool_timeout,
                )
                raise store_error(
                    STORE_BUSY,
                    "The server is too busy; try again shortly",
                    url=self.url,
                    retry_after=BUSY_RETRY_AFTER,
                ) from error
            logger.error("The event store at %s is unavailable: %s", self.url, error)
            raise store_error(
                STORE_UNAVAILABLE,
                "The event store is unavailable",
                url=self.url,
                error=str(error),
            ) from error
        except RedisError as error:
            logger.error("The event store at %s failed: %s", self.url, error)
            raise store_error(
                STORE_UNAVAILABLE, "The event store failed", url=self.url, error=str(error)
            ) from error

    async def create(self, stream_id: str, *, owner: str, lease: float | None = None) -> None:
        with self._reaching():
            created = await self._create_script(
                keys=self._keys(stream_id),
                args=[
                    owner,
                    _ms(self.ttl_active),
                    0 if lease is None else _ms(lease),
                    self.process,
                    self._stream_leases,
                ],
            )
        if not created:
            raise store_error("STREAM_EXISTS", "the stream already exists", stream_id=stream_id)

    async def owner(self, stream_id: str) -> str | None:
        with self._reaching():
            value = await self._redis.hget(self._keys(stream_id)[0], "owner")
        return None if value is None else str(value)

    async def append(self, stream_id: str, data: dict[str, Any]) -> int:
        return await self.append_many(stream_id, [data])

    @staticmethod
    def _appended(stream_id: str, reply: Any) -> int:
        seq = int(reply)
        if seq == -1:
            raise not_found(stream_id)
        if seq == -2:
            raise store_error("STREAM_FINISHED", "the stream is finished", stream_id=stream_id)
        return seq

    async def append_many(self, stream_id: str, items: list[dict[str, Any]]) -> int:
        result = (await self._append({stream_id: items}, None))[stream_id]
        if isinstance(result, StreamError):
            raise result
        return result

    async def append_batches(
        self, batches: dict[str, list[dict[str, Any]]], *, finish: Collection[str] = ()
    ) -> dict[str, int | StreamError]:
        """One script call (one round trip) appends to all the streams, on the batch
        writer's own connection. Calls made while one is on its way go together in the
        next (the process's flusher, the replies that end meanwhile): replies that end
        at once never queue one call each, and never wait for the pool."""
        results = await self._appends.call((batches, finish))
        return {stream_id: results[stream_id] for stream_id in batches}

    async def _append_all(
        self, calls: list[tuple[dict[str, list[dict[str, Any]]], Collection[str]]]
    ) -> dict[str, int | StreamError]:
        """The calls of ``append_batches`` combined, in one script call."""
        batches: dict[str, list[dict[str, Any]]] = {}
        finish: set[str] = set()
        for call_batches, call_finish in calls:
            batches.update(call_batches)
            finish.update(call_finish)
        return await self._append(batches, self._own_connection(), finish)

    def _own_connection(self) -> _OwnConnection:
        if self._batch_writer is None:
            self._batch_writer = _OwnConnection(self)
        return self._batch_writer

    async def _append(
        self,
        batches: dict[str, list[dict[str, Any]]],
        own: _OwnConnection | None,
        finish: Collection[str] = (),
    ) -> dict[str, int | StreamError]:
        """Append through the pool, or (``own``) on a connection of its own; then finish
        the streams in ``finish``."""
        if not batches:
            return {}
        streams = [
            [stream_id, len(items), int(stream_id in finish)]
            for stream_id, items in batches.items()
        ]
        payloads = "\n".join([_payload(data) for items in batches.values() for data in items])
        args: list[str | int] = [
            self.max_events,
            _ms(self.ttl_active),
            self.key_prefix,
            _encode(streams),
            payloads,
            _ms(self.ttl_finished),
        ]
        with self._reaching():
            if own is None:
                replies = await self._append_script(keys=[], args=args)
            else:
                replies = await own.call_script(self._append_script, scripts.APPEND, args)
        results: dict[str, int | StreamError] = {}
        for stream_id, reply in zip(batches, replies.split(","), strict=True):
            try:
                results[stream_id] = self._appended(stream_id, reply)
            except StreamError as error:
                results[stream_id] = error
        return results

    async def read(self, stream_id: str, after: int, *, timeout: float) -> list[StoredEvent]:
        keys = self._keys(stream_id)
        deadline = time.monotonic() + timeout
        with self._reaching():
            state = await self._read_script(keys=keys, args=[after, self.max_batch, time.time()])
            if state is None:
                raise not_found(stream_id)
            last, finished, entries = int(state[0]), bool(state[1]), state[2]
            check_cursor(stream_id, after, last)
            events, ended = self._events(stream_id, after, entries)
            if events or ended or finished:
                return events
            if last > after:  # the events key is gone while the meta remains
                raise trimmed(stream_id, after, last + 1)
            # Nothing yet: follow the stream live, in XREAD BLOCKs shorter than the socket
            # timeout; the EXISTS in the same round trip notices an expired (or lost) stream.
            while (remaining := deadline - time.monotonic()) > 0:
                pipe = self._redis.pipeline(transaction=False)
                pipe.exists(keys[0])
                pipe.xread(
                    {keys[1]: f"{after}-0"},
                    count=self.max_batch,
                    block=_ms(min(remaining, self._block)),
                )
                exists, reply = await pipe.execute()
                if not exists:
                    raise not_found(stream_id)
                if reply:
                    events, _ = self._events(stream_id, after, reply[0][1])
                    return events
        return []

    def _events(
        self, stream_id: str, after: int, entries: Sequence[Sequence[Any]]
    ) -> tuple[list[StoredEvent], bool]:
        """The events of ``entries`` (``XRANGE``/``XREAD`` replies), and whether the end
        marker is among them; raise if the first is not ``after + 1`` (trimmed away)."""
        events: list[StoredEvent] = []
        for entry_id, fields in entries:
            text, _, kind = entry_id.partition("-")
            seq = int(text)
            if kind == "1":  # the end marker, id "<last seq>-1"
                if not events and seq != after:
                    raise trimmed(stream_id, after, seq + 1)
                return events, True
            if not events and seq != after + 1:
                raise trimmed(stream_id, after, seq)
            # XREAD replies are parsed into dicts, EVALSHA ones are flat [field, value] lists.
            payload = fields["d"] if isinstance(fields, dict) else fields[1]
            events.append(StoredEvent(seq, json.loads(payload)))
        return events, False

    async def finish(self, stream_id: str) -> None:
        with self._reaching():
            found = await self._finish_script(
                keys=self._keys(stream_id), args=[_ms(self.ttl_finished)]
            )
        if not found:
            raise not_found(stream_id)

    async def _flag(self, stream_id: str, field: str) -> bool:
        """Whether a live stream's meta hash has ``field``; ``StreamError`` if it is gone."""
        with self._reaching():
            seq, value = await self._redis.hmget(self._keys(stream_id)[0], ["seq", field])
        if seq is None:
            raise not_found(stream_id)
        return value is not None

    async def is_finished(self, stream_id: str) -> bool:
        return await self._flag(stream_id, "finished")

    async def _set(self, stream_id: str, field: str, value: str) -> None:
        with self._reaching():
            found = await self._set_script(keys=self._keys(stream_id)[:1], args=[field, value])
        if not found:
            raise not_found(stream_id)

    async def touch(self, stream_id: str) -> None:
        await self._set(stream_id, "watched", repr(time.time()))

    async def last_watched(self, stream_id: str) -> float | None:
        with self._reaching():
            value = await self._redis.hget(self._keys(stream_id)[0], "watched")
        return None if value is None else float(value)

    async def request_cancel(self, stream_id: str) -> None:
        await self._set(stream_id, "cancel", "1")
        with self._reaching():
            await self._redis.xadd(
                self._cancels, {"id": stream_id}, maxlen=CANCELS_KEPT, approximate=True
            )

    async def cancel_requested(self, stream_id: str) -> bool:
        return await self._flag(stream_id, "cancel")

    def _quota_key(self, key: str) -> str:
        # One hash tag for every quota: a script touches several at once (Redis Cluster).
        return f"{self.key_prefix}{{quotas}}:{key}"

    async def acquire_quotas(self, holder: str, quotas: Sequence[Quota]) -> QuotaRefusal | None:
        if not quotas:
            return None
        args: list[Any] = [holder, self._place_leases, self._place_index, self.process]
        for quota in quotas:
            args += [quota.limit, _ms(quota.seconds), int(quota.renewed)]
        with self._reaching():
            index, wait_ms = await self._acquire_script(
                keys=[self._quota_key(q.key) for q in quotas], args=args
            )
        if not index:
            return None
        return QuotaRefusal(quotas[int(index) - 1].key, max(0, int(wait_ms)) / 1000)

    async def renew_quotas(self, holder: str, quotas: Sequence[Quota]) -> None:
        await self.renew_many_quotas(((holder, quotas),))

    async def renew_many_quotas(self, places: Iterable[tuple[str, Sequence[Quota]]]) -> None:
        """One script call for every holder, its holders grouped by quota (the replies of
        a process share a few owners' and addresses' quotas). With ``process_leases`` the
        renewed places are all held on the process's lease: one command renews them."""
        groups: dict[tuple[str, float], list[str]] = {}
        longest = 0.0
        for holder, quotas in places:
            for quota in quotas:
                if quota.renewed and self.process:
                    longest = max(longest, quota.seconds)
                else:
                    groups.setdefault((quota.key, quota.seconds), []).append(holder)
        if longest:
            await self._renew_process(self._place_leases, longest, self._place_index)
            if self._unreleased:
                await self._release_all([])
        if not groups:
            return
        renewals = [
            [self._quota_key(key), _ms(seconds), holders]
            for (key, seconds), holders in groups.items()
        ]
        with self._reaching():
            await self._renew_many_script(keys=[], args=[_encode(renewals)])

    async def release_quotas(self, holder: str, keys: Sequence[str]) -> None:
        """Given back with the releases made while one is on its way, in one script call
        on the batched writes' connection: replies that end together (a shutdown,
        thousands of clients gone at once) make a round trip or two, not one each, which
        queued for the pool until they failed ``STORE_BUSY`` and their places lapsed."""
        if not keys:
            return
        await self._releases.call((holder, keys))

    async def _release_all(self, calls: list[tuple[str, Sequence[str]]]) -> None:
        """The calls of ``release_quotas`` combined (with those that failed before, when
        the places are held on the process's lease), in one script call."""
        calls = [*self._unreleased, *calls]
        self._unreleased = []
        holders: dict[str, list[str]] = {}
        for holder, keys in calls:
            for key in keys:
                holders.setdefault(self._quota_key(key), []).append(holder)
        index = self._place_index + self.process if self.process else ""
        args = [_encode(list(holders.items())), index, _encode([holder for holder, _ in calls])]
        try:
            with self._reaching():
                await self._own_connection().call_script(
                    self._release_many_script, scripts.RELEASE_MANY, args
                )
        except StreamError:
            if self.process:
                self._unreleased.extend(calls)
            raise

    async def _renew_process(self, registry: str, seconds: float, index: str = "") -> None:
        """Renew this process's lease in ``registry`` (with ``process_leases``)."""
        with self._reaching():
            await self._renew_process_script(
                keys=[], args=[registry, self.process, _ms(seconds), index]
            )

    async def renew_leases(self, stream_ids: Collection[str], seconds: float) -> None:
        """With ``process_leases``, one command renews the process's lease, which every
        stream it created holds."""
        if not stream_ids:
            return
        if self.process:
            await self._renew_process(self._stream_leases, seconds)
            return
        with self._reaching():
            await self._renew_lease_script(
                keys=[], args=[_ms(seconds), self.key_prefix, _encode(list(stream_ids))]
            )

    async def interrupt_if_lapsed(self, stream_id: str, data: dict[str, Any]) -> bool:
        payload = _encode(data)
        with self._reaching():
            ended = int(
                await self._interrupt_script(
                    keys=self._keys(stream_id),
                    args=[self.max_events, _ms(self.ttl_finished), payload, self._stream_leases],
                )
            )
        if ended == -1:
            raise not_found(stream_id)
        return ended == 1

    async def cancel_requests(self, cursor: Any) -> tuple[list[str], Any]:
        """The ids added to the ``<prefix>cancels`` stream after ``cursor`` (an entry id)."""
        with self._reaching():
            entries = await self._redis.xrange(
                self._cancels, f"({cursor}" if cursor else "-", "+", count=CANCELS_KEPT
            )
        if not entries:
            return [], cursor
        return [str(fields["id"]) for _, fields in entries if fields], entries[-1][0]

    def streams_reader(self) -> _RedisStreamsReader:
        """The shared reader: one more connection, for its blocking ``XREAD``."""
        if self._reader is None:
            self._reader = _RedisStreamsReader(self)
        return self._reader

    async def close(self) -> None:
        if self._reader is not None:
            await self._reader.close()
        await self._appends.wait()
        await self._releases.wait()
        if self._batch_writer is not None:
            await self._batch_writer.close()
        await self._redis.aclose()
        await self._pool.aclose()


def _bulk(text: str) -> bytes:
    """``text`` as one argument of a command in the Redis protocol (RESP)."""
    data = text.encode()
    return b"$%d\r\n%s\r\n" % (len(data), data)


def _packed(*arguments: str | int) -> list[bytes]:
    """A command in the Redis protocol, ready to send."""
    return [b"*%d\r\n" % len(arguments), *(_bulk(str(argument)) for argument in arguments)]


async def _closed_by_server(connection: Any) -> bool:
    """Whether a connection with no reply due has something to read: the server closed it.
    Newer redis-py raises ``ConnectionError`` there instead of answering."""
    try:
        return bool(await connection.can_read())
    except (RedisConnectionError, OSError):
        return True


class _Combined(Generic[_Call, _Result]):
    """Calls of one kind that combine into one round trip: one made when none is on its
    way is sent at once (it waits for no other); those made meanwhile are gathered and
    sent together next (``send`` gets them all), so thousands at once make a call or two."""

    __slots__ = ("_busy", "_next", "_send", "_task")

    def __init__(self, send: Callable[[list[_Call]], Awaitable[_Result]]) -> None:
        self._send = send
        self._busy = False
        #: The calls gathered for the next send, and the future their callers await.
        self._next: tuple[list[_Call], asyncio.Future[_Result]] | None = None
        self._task: asyncio.Task[None] | None = None

    async def call(self, call: _Call) -> _Result:
        """The result of the send that took ``call`` (the same for all it took)."""
        if not self._busy:
            self._busy = True
            try:
                return await self._send([call])
            finally:
                if self._next is None:
                    self._busy = False
                else:
                    self._task = asyncio.create_task(self._send_gathered())
        if self._next is None:
            self._next = ([], asyncio.get_running_loop().create_future())
        self._next[0].append(call)
        return await asyncio.shield(self._next[1])

    async def _send_gathered(self) -> None:
        try:
            while self._next is not None:
                (calls, done), self._next = self._next, None
                try:
                    done.set_result(await self._send(calls))
                except asyncio.CancelledError:
                    done.cancel()  # the loop is closing
                    raise
                except Exception as exc:
                    done.set_exception(exc)
        finally:
            self._busy = False
            if self._next is not None:
                self._next[1].cancel()
                self._next = None

    async def wait(self) -> None:
        """Until what was gathered is sent."""
        if self._task is not None and not self._task.done():
            await asyncio.wait({self._task})


class _OwnConnection:
    """A connection of the store's own, held between commands and used by one at a time.

    A command through redis-py's pool takes the pool's lock, arms a timeout for the wait
    and checks the connection's health: about 45 µs of CPU, more than the round trip.
    A command cut midway (a failure, or cancelled) disconnects, since its reply may still
    come; the next one connects again. An error reply leaves the connection as it is.
    """

    def __init__(self, store: RedisStore) -> None:
        self._pool = store._new_pool(store._raw_url, 1)
        self._connection: Any = None
        self._turn = asyncio.Lock()

    async def execute(self, command: list[bytes]) -> Any:
        """Send an encoded command and return its reply (an error reply is raised)."""
        async with self._turn:
            if self._connection is None:
                self._connection = await self._pool.get_connection()  # type: ignore[no-untyped-call]
            connection = self._connection
            if connection.is_connected and await _closed_by_server(connection):
                # Closed by the server meanwhile (a restart, its idle ``timeout``), as
                # every reply was read: connect again (``send_packed_command`` does).
                await connection.disconnect(nowait=True)
            try:
                await connection.send_packed_command(command, check_health=False)
                return await connection.read_response()
            except ResponseError:
                raise  # the whole reply was read
            except BaseException:
                await connection.disconnect(nowait=True)
                raise

    async def call_script(self, script: AsyncScript, source: str, args: Sequence[str | int]) -> Any:
        """Call the Lua ``script`` (of ``source``) with no keys by its digest, sending the
        source if the server lost it (restarted or flushed)."""
        try:
            return await self.execute(_packed("EVALSHA", script.sha, 0, *args))
        except NoScriptError:
            return await self.execute(_packed("EVAL", source, 0, *args))

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.disconnect(nowait=True)
        await self._pool.aclose()


class _RedisStreamsReader(StreamsReader):
    """``XREAD BLOCK`` over many streams on a connection of its own, and the key of a
    small stream of its own (``<prefix>reader:<random>``) that it reads too: ``wake()``
    adds an entry there, so a blocked read returns at once, and a wake that comes while
    the read is still on its way is not lost (the entry stays after the read's cursor).

    The command is kept encoded, stream by stream (its key and its cursor), so a read
    encodes only the cursors that moved: with thousands of streams and a token at a time,
    building the command would otherwise cost more than the read.
    """

    def __init__(self, store: RedisStore) -> None:
        self.store = store
        self._connection = _OwnConnection(store)
        self._wakeup_key = f"{store.key_prefix}reader:{uuid.uuid4().hex}"
        self._wakeup_seen = "0-0"
        # The streams read, in the command's order: ids, cursors, encoded keys and ids.
        self._position: dict[str, int] = {}
        self._streams: list[str] = []
        self._cursors: list[int] = []
        self._key_args: list[bytes] = []
        self._id_args: list[bytes] = []
        self._stream_of: dict[str, str] = {}

    def read_from(self, stream_id: str, cursor: int) -> None:
        position = self._position.get(stream_id)
        if position is None:
            key = self.store._keys(stream_id)[1]
            self._position[stream_id] = len(self._streams)
            self._stream_of[key] = stream_id
            self._streams.append(stream_id)
            self._cursors.append(cursor)
            self._key_args.append(_bulk(key))
            self._id_args.append(_bulk(f"{cursor}-0"))
        elif self._cursors[position] != cursor:
            self._cursors[position] = cursor
            self._id_args[position] = _bulk(f"{cursor}-0")

    def forget(self, stream_id: str) -> None:
        position = self._position.pop(stream_id, None)
        if position is None:
            return
        del self._stream_of[self.store._keys(stream_id)[1]]
        last = len(self._streams) - 1
        if position != last:  # the last one takes its place
            moved = self._streams[last]
            self._position[moved] = position
            self._streams[position] = moved
            self._cursors[position] = self._cursors[last]
            self._key_args[position] = self._key_args[last]
            self._id_args[position] = self._id_args[last]
        for column in (self._streams, self._cursors, self._key_args, self._id_args):
            column.pop()

    def _command(self, timeout: float) -> list[bytes]:
        store = self.store
        count, block = str(store.max_batch), str(_ms(min(timeout, store._block)))
        head = b"*%d\r\n$5\r\nXREAD\r\n$5\r\nCOUNT\r\n%s$5\r\nBLOCK\r\n%s$7\r\nSTREAMS\r\n" % (
            8 + 2 * len(self._streams),
            _bulk(count),
            _bulk(block),
        )
        return [
            head,
            *self._key_args,
            _bulk(self._wakeup_key),
            *self._id_args,
            _bulk(self._wakeup_seen),
        ]

    async def wait(self, *, timeout: float) -> dict[str, Tail | StreamError]:
        store = self.store
        with store._reaching():
            reply = await self._connection.execute(self._command(timeout))
        found: dict[str, Tail | StreamError] = {}
        for key, entries in reply.items() if isinstance(reply, dict) else reply or ():
            stream_id = self._stream_of.get(key)
            if stream_id is None:  # the wake-up stream (or a stream forgotten meanwhile)
                if key == self._wakeup_key:
                    self._wakeup_seen = entries[-1][0]
                continue
            position = self._position[stream_id]
            try:
                events, finished = store._events(stream_id, self._cursors[position], entries)
            except StreamError as error:
                found[stream_id] = error
                self.forget(stream_id)
                continue
            found[stream_id] = Tail(events, finished)
            if finished:
                self.forget(stream_id)
            elif events:
                self.read_from(stream_id, events[-1].seq)
        return found

    async def wake(self) -> None:
        store = self.store
        with store._reaching():
            pipe = store._redis.pipeline(transaction=False)
            pipe.xadd(self._wakeup_key, {"w": "1"}, maxlen=1)
            pipe.pexpire(self._wakeup_key, _ms(store.ttl_active))
            await pipe.execute()

    async def watch(self, stream_ids: Collection[str]) -> dict[str, str]:
        if not stream_ids:
            return {}
        store = self.store
        ids = list(stream_ids)
        with store._reaching():
            codes = await store._watch_script(
                keys=[store._keys(stream_id)[0] for stream_id in ids],
                args=[time.time(), store._stream_leases],
            )
        reasons = {1: NOT_FOUND, 2: LAPSED}
        return {
            stream_id: reasons[int(code)]
            for stream_id, code in zip(ids, codes, strict=True)
            if int(code)
        }

    async def close(self) -> None:
        await self._connection.close()
