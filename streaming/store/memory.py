"""``MemoryStore``: the default event store, in the memory of one process.

It is shared by every event loop and thread of the process (a sync view running
``async_to_sync`` reads what the daphne loop writes), so it binds no asyncio object at
construction: each waiting reader parks a future on its own loop, and a writer wakes it
on that loop. Expiry is checked lazily on access, and a timer on the loop that created
the latest stream sweeps the expired ones once a second while any are kept: no thread.
A sweep looks only at the streams due by then (a heap of expiry times), so 10,000 open
replies cost a sweep nothing.

Leases are held per event loop, not per reply: the streams and the renewed places taken
on one loop share a lease, which one call renews (``renews_per_process``). The store dies
with its process, so the lease only has to tell a live loop from one that stopped
running its replies (closed, or stalled for longer than the lease).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import threading
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .base import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_EVENTS,
    DEFAULT_TTL_ACTIVE,
    DEFAULT_TTL_FINISHED,
    EventStore,
    Quota,
    QuotaRefusal,
    StoredEvent,
    check_cursor,
    check_options,
    not_found,
    store_error,
    trimmed,
)

# Seconds between two sweeps of expired streams.
_SWEEP_INTERVAL = 1.0
# Entries of streams already gone that the expiry heap may hold beyond twice its streams.
_STALE_EXPIRIES = 64
# Cancel requests remembered for ``cancel_requests`` (the newest ones).
_CANCELS_KEPT = 10_000

_Waiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]"]


@dataclass(slots=True, eq=False)
class _Lease:
    """What the streams (or the renewed places) taken on one event loop hold: one deadline
    for them all, so that renewing 10,000 replies is one assignment."""

    #: ``time.monotonic()`` when it lapses.
    until: float = 0.0
    #: A places lease the sweep found lapsed and whose places it gave back: the loop, if it
    #: runs again, takes a new one.
    swept: bool = False

    def extend(self, seconds: float) -> None:
        self.until = max(self.until, time.monotonic() + seconds)


@dataclass(slots=True, eq=False)
class _Stream:
    """One stream's log: ``events[head:]`` are the data of the kept events, the last has
    seq ``last`` (the ones before count down from it): a ``StoredEvent`` is made only for
    a read, not for every append (a token)."""

    owner: str
    expires_at: float
    events: list[dict[str, Any]] = field(default_factory=list)
    head: int = 0
    last: int = 0
    finished: bool = False
    cancel: bool = False
    watched: float | None = None
    #: The lease of the event loop running it; None: it never lapses.
    lease: _Lease | None = None
    waiters: list[_Waiter] = field(default_factory=list)

    @property
    def kept(self) -> int:
        return len(self.events) - self.head


def _wake(waiters: list[_Waiter]) -> None:
    """Resolve each waiter's future on its own loop (from any thread)."""
    try:
        current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        current = None
    for loop, future in waiters:
        if loop is current:
            _resolve(future)
        else:
            with contextlib.suppress(RuntimeError):  # a closed loop: its reader is gone
                loop.call_soon_threadsafe(_resolve, future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class MemoryStore(EventStore):
    """Event store in this process's memory (one server process only).

    Options (seconds and counts): ``ttl_finished`` (default 300) a finished stream stays
    replayable; ``ttl_active`` (default 3600) a stream lives after its last append if it
    never finishes; ``max_events`` (default 10000) events kept per stream; ``max_batch``
    (default 512) events one read returns. Event data is kept by reference, not copied.
    """

    loop_bound = False
    shared = False
    renews_per_process = True

    def __init__(
        self,
        *,
        ttl_finished: float = DEFAULT_TTL_FINISHED,
        ttl_active: float = DEFAULT_TTL_ACTIVE,
        max_events: int = DEFAULT_MAX_EVENTS,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        check_options(ttl_finished, ttl_active, max_events, max_batch)
        self.ttl_finished = ttl_finished
        self.ttl_active = ttl_active
        self.max_events = max_events
        self.max_batch = max_batch
        # Not when a subclass changed how appends work: they then go through it.
        self._appends_now = type(self).append_many is MemoryStore.append_many
        self._streams: dict[str, _Stream] = {}
        # (when a stream may expire, its id), a heap: pushed when a stream is created or
        # finished (its expiry comes closer); an append only moves ``expires_at`` later,
        # and the sweep pushes a stream again when it finds it still alive.
        self._expiries: list[tuple[float, str]] = []
        # Quota key -> holder -> monotonic time its place lapses, in that order (a key's
        # places all last the same seconds, and a renewed one moves to the end). Ordered
        # dicts: their oldest entry is found at once, where a dict's first live entry
        # comes after every one renewed (deleted) since it was last resized, so renewing
        # N places one by one would cost N * N.
        self._quotas: dict[str, OrderedDict[str, float]] = {}
        # (when a quota key's oldest place may lapse, the key), a heap with one entry per
        # key in ``_quota_due`` (key -> that time): pushed when a key is made, and by the
        # sweep again for a key it finds still held. Its oldest place only ever lapses
        # later, so a sweep looks at the keys due by then, not at every key.
        self._quota_lapses: list[tuple[float, str]] = []
        self._quota_due: dict[str, float] = {}
        # Renewed places (``Quota.renewed``): key -> holder -> the lease of the event loop
        # that took it. Renewing them is renewing the lease; a lapsed lease's places go
        # in the sweep, or when a full quota is asked for one.
        self._held_places: dict[str, dict[str, _Lease]] = {}
        # Each event loop's lease for its streams and for its places (dropped with the
        # loop), and the places leases in use, which the sweep checks.
        self._stream_leases: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Lease] = (
            weakref.WeakKeyDictionary()
        )
        self._place_leases: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Lease] = (
            weakref.WeakKeyDictionary()
        )
        self._places_leases_in_use: list[_Lease] = []
        # Held only around plain dict/list updates, never across an await.
        self._lock = threading.Lock()
        self._next_sweep = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None
        self._cancels: deque[str] = deque(maxlen=_CANCELS_KEPT)
        self._cancel_count = 0

    def _get(self, stream_id: str) -> _Stream | None:
        """The live stream, dropping it (and waking its readers) if it has expired."""
        stream = self._streams.get(stream_id)
        if stream is not None and stream.expires_at <= time.monotonic():
            with self._lock:
                if self._streams.get(stream_id) is stream:
                    del self._streams[stream_id]
            _wake(stream.waiters)
            return None
        return stream

    def _require(self, stream_id: str) -> _Stream:
        stream = self._get(stream_id)
        if stream is None:
            raise not_found(stream_id)
        return stream

    def _sweep(self, now: float) -> None:
        """Drop every expired stream and every lapsed quota place (a quota drops its own
        when it is used; this frees the keys nobody uses again); runs at most once per
        ``_SWEEP_INTERVAL``, and looks only at the streams and keys due by ``now`` (and,
        once an event loop's places lease lapsed, at every renewed place)."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + _SWEEP_INTERVAL
        dropped = []
        with self._lock:
            expiries = self._expiries
            while expiries and expiries[0][0] <= now:
                _, key = heapq.heappop(expiries)
                stream = self._streams.get(key)
                if stream is None:
                    continue  # already dropped (or pushed twice)
                if stream.expires_at <= now:
                    dropped.append(self._streams.pop(key))
                else:
                    heapq.heappush(expiries, (stream.expires_at, key))
            if len(expiries) > 2 * len(self._streams) + _STALE_EXPIRIES:
                # Mostly entries of streams gone before them (a finished stream's first
                # entry is due ``ttl_active`` after it began): start afresh.
                expiries[:] = [(stream.expires_at, key) for key, stream in self._streams.items()]
                heapq.heapify(expiries)
            lapses, due = self._quota_lapses, self._quota_due
            while lapses and lapses[0][0] <= now:
                _, key = heapq.heappop(lapses)
                held = self._held(key, now)
                if held:
                    due[key] = next(iter(held.values()))
                    heapq.heappush(lapses, (due[key], key))
                else:
                    del due[key]
            if any(lease.until <= now for lease in self._places_leases_in_use):
                self._give_back_lapsed_leases(now)
        for stream in dropped:
            _wake(stream.waiters)

    def _give_back_lapsed_leases(self, now: float) -> None:
        """Free the places of every event loop whose places lease lapsed (call with the
        lock held): a loop closed, or stalled for longer than the lease."""
        for lease in self._places_leases_in_use:
            if lease.until <= now:
                lease.swept = True
        self._places_leases_in_use = [
            lease for lease in self._places_leases_in_use if not lease.swept
        ]
        for key, held in list(self._held_places.items()):
            for holder in [holder for holder, lease in held.items() if lease.swept]:
                del held[holder]
            if not held:
                del self._held_places[key]

    def _streams_lease(self) -> _Lease:
        """The running event loop's lease for its streams (call with the lock held)."""
        return self._stream_leases.setdefault(asyncio.get_running_loop(), _Lease())

    def _places_lease(self) -> _Lease:
        """The running event loop's lease for its renewed places (call with the lock held):
        a new one, which the sweep watches, once the sweep gave the last one's back."""
        loop = asyncio.get_running_loop()
        lease = self._place_leases.get(loop)
        if lease is None or lease.swept:
            lease = self._place_leases[loop] = _Lease()
            self._places_leases_in_use.append(lease)
        return lease

    def _schedule_sweeps(self) -> None:
        """Keep a sweep timer on the running loop (or on the loop that has one, while it
        runs), so expired streams leave memory when nothing else touches the store."""
        loop = asyncio.get_running_loop()
        current = self._timer_loop
        if (
            self._timer is not None
            and current is not None
            and not current.is_closed()
            and (current is loop or current.is_running())
        ):
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_loop = loop
        self._timer = loop.call_later(_SWEEP_INTERVAL, self._timed_sweep)

    def _timed_sweep(self) -> None:
        self._timer = None
        self._next_sweep = 0.0
        self._sweep(time.monotonic())
        if (self._streams or self._quota_due) and self._timer_loop is not None:
            self._timer = self._timer_loop.call_later(_SWEEP_INTERVAL, self._timed_sweep)

    async def create(self, stream_id: str, *, owner: str, lease: float | None = None) -> None:
        now = time.monotonic()
        self._sweep(now)
        with self._lock:
            current = self._streams.get(stream_id)
            if current is not None and current.expires_at > now:
                raise store_error("STREAM_EXISTS", "the stream already exists", stream_id=stream_id)
            held = None
            if lease is not None:
                held = self._streams_lease()
                held.extend(lease)
            self._streams[stream_id] = _Stream(
                owner=owner, expires_at=now + self.ttl_active, lease=held
            )
            heapq.heappush(self._expiries, (now + self.ttl_active, stream_id))
        self._schedule_sweeps()

    async def owner(self, stream_id: str) -> str | None:
        stream = self._get(stream_id)
        return None if stream is None else stream.owner

    async def append(self, stream_id: str, data: dict[str, Any]) -> int:
        return self._append(stream_id, (data,))

    async def append_many(self, stream_id: str, items: list[dict[str, Any]]) -> int:
        return self._append(stream_id, items)

    @property
    def appends_now(self) -> bool:
        return self._appends_now

    def append_now(self, stream_id: str, items: list[dict[str, Any]]) -> int | None:
        if not self._appends_now:
            return None
        return self._append(stream_id, items)

    def _append(self, stream_id: str, items: Sequence[dict[str, Any]]) -> int:
        # Once per token: one clock read, and no new list when nobody waits here.
        now = time.monotonic()
        stream = self._streams.get(stream_id)
        if stream is None or stream.expires_at <= now:
            stream = self._require(stream_id)
        with self._lock:
            if stream.finished:
                raise store_error("STREAM_FINISHED", "the stream is finished", stream_id=stream_id)
            events = stream.events
            events += items
            last = stream.last = stream.last + len(items)
            excess = len(events) - stream.head - self.max_events
            if excess > 0:
                # Trim by moving the head; compact once the dead part is max_events long,
                # so the list never holds more than twice max_events (amortised O(1)).
                stream.head += excess
                if stream.head >= self.max_events:
                    del events[: stream.head]
                    stream.head = 0
            stream.expires_at = now + self.ttl_active
            waiters = stream.waiters
            if waiters:
                stream.waiters = []
        if waiters:
            _wake(waiters)
        return last

    async def read(self, stream_id: str, after: int, *, timeout: float) -> list[StoredEvent]:
        stream = self._require(stream_id)
        check_cursor(stream_id, after, stream.last)
        stream.watched = time.time()
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                available = stream.last - after
                if available > stream.kept:
                    raise trimmed(stream_id, after, stream.last - stream.kept + 1)
                if available > 0:
                    start = len(stream.events) - available
                    batch = stream.events[start : start + self.max_batch]
                    return [StoredEvent(seq, data) for seq, data in enumerate(batch, after + 1)]
                if stream.finished:
                    return []
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                loop = asyncio.get_running_loop()
                waiter: _Waiter = (loop, loop.create_future())
                stream.waiters.append(waiter)
            try:
                async with asyncio.timeout(remaining):
                    await waiter[1]
            except TimeoutError:
                return []
            finally:
                with self._lock:
                    if waiter in stream.waiters:
                        stream.waiters.remove(waiter)
            # Woken by an append, a finish or an expiry: look again.
            self._require(stream_id)

    async def finish(self, stream_id: str) -> None:
        stream = self._require(stream_id)
        with self._lock:
            if stream.finished:
                return
            stream.finished = True
            stream.expires_at = time.monotonic() + self.ttl_finished
            heapq.heappush(self._expiries, (stream.expires_at, stream_id))
            waiters, stream.waiters = stream.waiters, []
        _wake(waiters)

    async def is_finished(self, stream_id: str) -> bool:
        return self._require(stream_id).finished

    async def touch(self, stream_id: str) -> None:
        self._require(stream_id).watched = time.time()

    async def last_watched(self, stream_id: str) -> float | None:
        stream = self._get(stream_id)
        return None if stream is None else stream.watched

    async def request_cancel(self, stream_id: str) -> None:
        self._require(stream_id).cancel = True
        with self._lock:
            self._cancels.append(stream_id)
            self._cancel_count += 1

    async def cancel_requests(self, cursor: Any) -> tuple[list[str], Any]:
        with self._lock:
            count = self._cancel_count
            new = min(len(self._cancels), count - (cursor or 0))
            return (list(self._cancels)[len(self._cancels) - new :] if new > 0 else []), count

    async def cancel_requested(self, stream_id: str) -> bool:
        return self._require(stream_id).cancel

    def _held(self, key: str, now: float) -> OrderedDict[str, float]:
        """The live places of quota ``key`` (call with the lock held); lapsed ones, which
        come first, go."""
        held = self._quotas.get(key)
        if held is None:
            return OrderedDict()
        while held:
            holder, until = next(iter(held.items()))
            if until > now:
                break
            del held[holder]
        if not held:
            del self._quotas[key]
        return held

    def _refusal(self, holder: str, quota: Quota, now: float) -> QuotaRefusal | None:
        """Why ``holder`` cannot take a place in ``quota`` (call with the lock held): the
        seconds until its earliest timed place lapses, or the quota's own for a place
        held on a lease (its loop renews it while it runs)."""
        timed = self._held(quota.key, now)
        on_lease = self._held_places.get(quota.key, {})
        if holder in timed or holder in on_lease or len(timed) + len(on_lease) < quota.limit:
            return None
        lapsed = [other for other, lease in on_lease.items() if lease.until <= now]
        if lapsed:
            for other in lapsed:
                del on_lease[other]
            if not on_lease:
                del self._held_places[quota.key]
            if len(timed) + len(on_lease) < quota.limit:
                return None
        return QuotaRefusal(quota.key, min(timed.values()) - now if timed else quota.seconds)

    async def acquire_quotas(self, holder: str, quotas: Sequence[Quota]) -> QuotaRefusal | None:
        now = time.monotonic()
        with self._lock:
            for quota in quotas:
                refusal = self._refusal(holder, quota, now)
                if refusal is not None:
                    return refusal
            for quota in quotas:
                if quota.renewed:
                    lease = self._places_lease()
                    lease.extend(quota.seconds)
                    self._held_places.setdefault(quota.key, {})[holder] = lease
                    continue
                held = self._quotas.setdefault(quota.key, OrderedDict())
                held[holder] = until = now + quota.seconds
                held.move_to_end(holder)
                if quota.key not in self._quota_due:
                    self._quota_due[quota.key] = until
                    heapq.heappush(self._quota_lapses, (until, quota.key))
        return None

    async def renew_quotas(self, holder: str, quotas: Sequence[Quota]) -> None:
        await self.renew_many_quotas(((holder, quotas),))

    async def renew_many_quotas(self, places: Iterable[tuple[str, Sequence[Quota]]]) -> None:
        """Every place at once, under the lock: no coroutine per holder. The renewed ones
        are all held on the event loop's lease: renewing it renews them."""
        now = time.monotonic()
        keys: dict[str, OrderedDict[str, float]] = {}
        longest = 0.0
        with self._lock:
            for holder, quotas in places:
                for quota in quotas:
                    if quota.renewed:
                        longest = max(longest, quota.seconds)
                        continue
                    held = keys.get(quota.key)
                    if held is None:
                        held = keys[quota.key] = self._held(quota.key, now)
                    if held.pop(holder, None) is not None:
                        held[holder] = now + quota.seconds
            if longest:
                self._places_lease().extend(longest)

    async def release_quotas(self, holder: str, keys: Sequence[str]) -> None:
        with self._lock:
            for places in (self._quotas, self._held_places):
                for key in keys:
                    held = places.get(key)
                    if held is not None:
                        held.pop(holder, None)
                        if not held:
                            del places[key]

    async def renew_leases(self, stream_ids: Collection[str], seconds: float) -> None:
        """One assignment: every stream created on this event loop holds its lease."""
        if stream_ids:
            with self._lock:
                self._streams_lease().extend(seconds)

    async def interrupt_if_lapsed(self, stream_id: str, data: dict[str, Any]) -> bool:
        stream = self._require(stream_id)
        with self._lock:
            lapsed = (
                not stream.finished
                and stream.lease is not None
                and stream.lease.until <= time.monotonic()
            )
            if lapsed:
                stream.lease = None  # only this caller appends
        if lapsed:
            self._append(stream_id, (data,))
            await self.finish(stream_id)
        return lapsed

    async def close(self) -> None:
        """Stop the sweep timer; the streams live as long as the store object."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
