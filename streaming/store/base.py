"""The event store contract: the log of each generation, read by transports from a cursor.

A generation writes its events here with increasing, gapless sequence numbers; any
number of transports (SSE, WebSocket, in any process the backend reaches) read them
from a cursor, so a client that reconnects gets exactly the events it missed. Channel
layers only carry wake-ups: the store is the log.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from streaming.errors import StreamError, StreamErrorCode

# Seconds a finished stream stays replayable before it expires.
DEFAULT_TTL_FINISHED = 300.0
# Seconds a stream that never finishes (its process died) lives after its last append.
DEFAULT_TTL_ACTIVE = 3600.0
# Events kept per stream; older ones are trimmed, and a cursor behind them is an error.
DEFAULT_MAX_EVENTS = 10_000
# Events one ``read()`` returns at most.
DEFAULT_MAX_BATCH = 512


# The reasons a store fails; ``StreamError.details["reason"]`` always names one of them.
NOT_FOUND = "NOT_FOUND"
EVENTS_EXPIRED = "EVENTS_EXPIRED"
STORE_UNAVAILABLE = "STORE_UNAVAILABLE"
STORE_BUSY = "STORE_BUSY"
_CODES = {
    NOT_FOUND: StreamErrorCode.NOT_FOUND,
    EVENTS_EXPIRED: StreamErrorCode.EVENTS_EXPIRED,
    STORE_UNAVAILABLE: StreamErrorCode.STORE_UNAVAILABLE,
    STORE_BUSY: StreamErrorCode.SERVER_BUSY,
    # Mistakes of the caller, not of the client: a reused id, a write after the end.
    "STREAM_EXISTS": StreamErrorCode.INTERNAL_ERROR,
    "STREAM_FINISHED": StreamErrorCode.STREAM_CLOSED,
    "BAD_CURSOR": StreamErrorCode.BAD_REQUEST,
}


def store_error(reason: str, message: str, **details: Any) -> StreamError:
    """A ``StreamError`` for ``reason`` (a key of ``_CODES``), with the reason in its details."""
    return StreamError(_CODES[reason], message, {"reason": reason, **details})


def not_found(stream_id: str) -> StreamError:
    """The one answer for an unknown, expired (or guessed) stream id."""
    return store_error(NOT_FOUND, "unknown or expired stream", stream_id=stream_id)


def trimmed(stream_id: str, after: int, first: int) -> StreamError:
    """A cursor fell behind the events the store still keeps: never skip them silently."""
    return store_error(
        EVENTS_EXPIRED,
        f"events after {after} are no longer stored (the oldest kept is {first})",
        stream_id=stream_id,
        after=after,
        first=first,
    )


def check_cursor(stream_id: str, after: int, last: int) -> None:
    """Refuse a cursor below 0 or ahead of the last event written."""
    if not 0 <= after <= last:
        raise store_error(
            "BAD_CURSOR",
            f"cursor {after} is outside the stream (last event {last})",
            stream_id=stream_id,
            after=after,
            last=last,
        )


def check_options(ttl_finished: float, ttl_active: float, max_events: int, max_batch: int) -> None:
    """Fail at construction, not at the first append, when an option makes no sense."""
    require_seconds(ttl_finished=ttl_finished, ttl_active=ttl_active)
    require_counts(max_events=max_events, max_batch=max_batch)


def require_seconds(**options: object) -> None:
    """Each option must be a finite number of seconds above 0: a string such as ``"5"``
    would only fail inside a timer, at a request, and ``inf`` or NaN never fire."""
    for name, value in options.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")


def require_counts(**options: object) -> None:
    """Each option must be an integer of at least 1."""
    for name, value in options.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer of at least 1, not {value!r}")


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One event of a stream: its position ``seq`` (1, 2, 3 … without gaps) and its data."""

    seq: int
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Quota:
    """At most ``limit`` holders of ``key`` at a time, each place held for ``seconds``.

    ``renewed``: the place belongs to a running reply, whose process renews it while the
    reply runs (so a process that dies frees its places by itself); a store may then
    renew all of a process's places at once. Otherwise it lasts ``seconds`` from when it
    was taken (a window of starts)."""

    key: str
    limit: int
    seconds: float
    renewed: bool = False


@dataclass(frozen=True, slots=True)
class QuotaRefusal:
    """The quota that had no free place, and the seconds until its earliest place lapses."""

    key: str
    retry_after: float


@dataclass(frozen=True, slots=True)
class Tail:
    """What a ``StreamsReader`` found after one stream's cursor: the next ``events`` (the
    first is the one right after the cursor), and whether the stream is ``finished``
    right after them (nothing will ever follow)."""

    events: list[StoredEvent]
    finished: bool


#: What ``StreamsReader.watch`` reports about a stream that needs its followers' attention.
LAPSED = "LAPSED"


class StreamsReader(abc.ABC):
    """One reader of many streams for a whole process (``EventStore.streams_reader``):
    one blocking read serves every local follower of the streams written elsewhere,
    instead of a connection and a blocking read per follower. It keeps the set of streams
    to read and a cursor for each (changed between reads, by one task at a time), so a
    read costs nothing per stream that did not change."""

    @abc.abstractmethod
    def read_from(self, stream_id: str, cursor: int) -> None:
        """Read ``stream_id`` after ``cursor`` from the next ``wait`` on."""

    @abc.abstractmethod
    def forget(self, stream_id: str) -> None:
        """Read ``stream_id`` no more (nothing if it is not read)."""

    @abc.abstractmethod
    async def wait(self, *, timeout: float) -> dict[str, Tail | StreamError]:
        """The streams read that have events after their cursor, or finished there (a
        ``Tail``, at most the batch limit of events; their cursor moves past them, and a
        finished one is read no more), and those whose cursor is behind the trimmed
        events (``EVENTS_EXPIRED``; read no more). Waits up to ``timeout`` seconds for
        the first, or until ``wake()``; then returns what it has (maybe nothing). An
        unknown stream has nothing: ``watch`` tells. Raises ``StreamError`` when the
        store fails."""

    @abc.abstractmethod
    async def wake(self) -> None:
        """Make the ``wait`` in progress (or the next one) return at once: the streams to
        read changed. Safe to call from any task, also when no ``wait`` runs."""

    @abc.abstractmethod
    async def watch(self, stream_ids: Collection[str]) -> dict[str, str]:
        """``touch`` every stream at once (one round trip) and return those that need
        their followers: ``NOT_FOUND`` (unknown or expired) or ``LAPSED`` (unfinished,
        and its lease lapsed: see ``EventStore.interrupt_if_lapsed``)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release what the reader holds (its connection)."""


class EventStore(abc.ABC):
    """Where generations write their events and transports read them from a cursor.

    Every method raises ``StreamError``: ``details["reason"]`` is ``NOT_FOUND`` for an
    unknown or expired id, ``EVENTS_EXPIRED`` for a cursor behind the trimmed events,
    ``STORE_UNAVAILABLE`` when the backend cannot be reached (never a hang).
    """

    #: True when an instance only works on the event loop it was first used on (it holds
    #: connections): ``get_store()`` then keeps one instance per loop, else one per process.
    loop_bound: ClassVar[bool] = True
    #: True when other processes see this store's streams (Redis); False when only this
    #: process does (memory): a stream it does not know is not being started elsewhere.
    shared: ClassVar[bool] = True
    #: True when one call to ``renew_leases`` or ``renew_many_quotas`` renews every lease
    #: and every renewed place (``Quota.renewed``) taken through this instance on the
    #: calling event loop, whichever replies it names (``MemoryStore``; ``RedisStore`` with
    #: ``process_leases``): a process running many replies then makes one call, not one
    #: per slice of them.
    renews_per_process: bool = False

    @abc.abstractmethod
    async def create(self, stream_id: str, *, owner: str, lease: float | None = None) -> None:
        """Register a new stream owned by ``owner`` (e.g. "user:3"); it must not exist.

        ``lease``: seconds the stream counts as run by a live process; the process renews
        it (``renew_leases``), and a lapsed lease lets followers end it
        (``interrupt_if_lapsed``). Without one, the stream never lapses.
        """

    @abc.abstractmethod
    async def owner(self, stream_id: str) -> str | None:
        """Who started the stream; None if it is unknown or expired."""

    @abc.abstractmethod
    async def append(self, stream_id: str, data: dict[str, Any]) -> int:
        """Add one event; return its seq. Refused once the stream is finished."""

    @abc.abstractmethod
    async def append_many(self, stream_id: str, items: list[dict[str, Any]]) -> int:
        """Add several events at once (one round trip); return the last seq."""

    @property
    def appends_now(self) -> bool:
        """Whether ``append_now`` works: the store needs no I/O to append (memory)."""
        return False

    def append_now(self, stream_id: str, items: list[dict[str, Any]]) -> int | None:
        """``append_many`` for a store that needs no I/O: done at once, the last seq
        returned. ``None`` (the default): this store must be awaited."""
        return None

    async def append_batches(
        self, batches: dict[str, list[dict[str, Any]]], *, finish: Collection[str] = ()
    ) -> dict[str, int | StreamError]:
        """``append_many`` for several streams at once, then ``finish`` for those in
        ``finish``: the last seq of each, or the error its append (or finish) raised. A
        networked store does it in one round trip."""
        results: dict[str, int | StreamError] = {}
        for stream_id, items in batches.items():
            try:
                results[stream_id] = await self.append_many(stream_id, items)
                if stream_id in finish:
                    await self.finish(stream_id)
            except StreamError as error:
                results[stream_id] = error
        return results

    @abc.abstractmethod
    async def read(self, stream_id: str, after: int, *, timeout: float) -> list[StoredEvent]:
        """The events with seq > ``after``, in order, up to the batch limit.

        Waits up to ``timeout`` seconds for the first one, then returns []; returns []
        at once when the stream is finished and nothing follows ``after``. Counts as a
        watch (see ``last_watched``).
        """

    def streams_reader(self) -> StreamsReader | None:
        """This store's one reader of many streams, which the process's followers of
        generations running elsewhere share. ``None`` (the default): each follower reads
        on its own (``read``), as it does with a store in one process's memory."""
        return None

    @abc.abstractmethod
    async def finish(self, stream_id: str) -> None:
        """No more events: wake the readers; the stream expires ``ttl_finished`` later."""

    @abc.abstractmethod
    async def is_finished(self, stream_id: str) -> bool:
        """Whether ``finish()`` was called."""

    @abc.abstractmethod
    async def touch(self, stream_id: str) -> None:
        """Record that a watcher is reading the stream now."""

    @abc.abstractmethod
    async def last_watched(self, stream_id: str) -> float | None:
        """``time.time()`` of the last touch or read; None if never, or unknown."""

    @abc.abstractmethod
    async def request_cancel(self, stream_id: str) -> None:
        """Ask the process running the generation to stop it (from any process)."""

    @abc.abstractmethod
    async def cancel_requested(self, stream_id: str) -> bool:
        """Whether someone asked to stop the generation."""

    async def cancel_requests(self, cursor: Any) -> tuple[list[str], Any] | None:
        """The streams whose stop was requested since ``cursor`` (``None``: as far back
        as the store remembers), and the cursor to pass next: one call tells a process
        about all of its generations. ``None`` (the default): not supported, the caller
        asks ``cancel_requested`` per stream."""
        return None

    @abc.abstractmethod
    async def acquire_quotas(self, holder: str, quotas: Sequence[Quota]) -> QuotaRefusal | None:
        """Take a place for ``holder`` in every quota, atomically: all of them, or none and
        the first one that is full. Lapsed places are dropped first; a holder already
        present keeps its place (its time is renewed)."""

    @abc.abstractmethod
    async def renew_quotas(self, holder: str, quotas: Sequence[Quota]) -> None:
        """Extend ``holder``'s places by each quota's ``seconds`` (those it still holds)."""

    async def renew_many_quotas(self, places: Iterable[tuple[str, Sequence[Quota]]]) -> None:
        """``renew_quotas`` for many holders at once (all the replies of a process); a
        networked store does it in one round trip."""
        for holder, quotas in places:
            await self.renew_quotas(holder, quotas)

    @abc.abstractmethod
    async def release_quotas(self, holder: str, keys: Sequence[str]) -> None:
        """Give back ``holder``'s places in ``keys`` (a place not held is ignored)."""

    @abc.abstractmethod
    async def renew_leases(self, stream_ids: Collection[str], seconds: float) -> None:
        """Extend the lease of each live stream by ``seconds`` from now, in one round trip
        (a process renews all the streams it runs at once). Unknown ids are skipped."""

    @abc.abstractmethod
    async def interrupt_if_lapsed(self, stream_id: str, data: dict[str, Any]) -> bool:
        """If the stream is unfinished and its lease has lapsed (its process died),
        append ``data`` as its last event and finish it, atomically; return whether it
        did. Several followers may call it: only one appends."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections; the store is not used afterwards."""
