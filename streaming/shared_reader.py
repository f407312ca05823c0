"""One reader per process for every local follower of replies that run elsewhere.

A follower here of a generation another process runs (a resume on another server process
sharing the Redis store) registers its stream and cursor with this process's
``SharedReader``; one task reads all of them through the store's ``StreamsReader`` (with
Redis: one blocking ``XREAD`` over every stream, on one connection) and hands each
follower its events through a future, as the in-process handover does. The same task
marks all the followed streams watched in one store call per ``WATCH_EVERY`` seconds,
and learns there which expired or were left by a process that died.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field

from .errors import StreamError, StreamErrorCode
from .keepalive import KeepAlive
from .store.base import LAPSED, EventStore, StoredEvent, StreamsReader, Tail, not_found

logger = logging.getLogger("streaming")

#: Seconds between two marks of every followed stream as watched (the watcher of the
#: process running a reply cancels it when nobody watched it for its grace period).
WATCH_EVERY = 0.25
#: Events a follower may have waiting to be taken before its stream is read no further
#: for it (a slow client holds back its own reads only, and a bounded amount of memory).
MAX_WAITING = 1024
#: The message of the followers' error when the reader stops while they wait.
STOPPED = "The reader of the event store stopped"


@dataclass(eq=False)
class _Follower:
    stream_id: str
    #: The seq of the last event handed to it (in ``events`` or already taken).
    after: int
    events: list[StoredEvent] = field(default_factory=list)
    #: The stream finished right after ``after``.
    finished: bool = False
    failure: StreamError | None = None
    waiter: asyncio.Future[None] | None = None

    @property
    def reading(self) -> bool:
        """Whether its stream is read for it now."""
        return not self.finished and self.failure is None and len(self.events) < MAX_WAITING

    def wake(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def fail(self, failure: StreamError) -> None:
        if self.failure is None and not self.finished:
            self.failure = failure
        self.wake()


class SharedReader:
    """The followers in this process of the streams of one store written elsewhere.

    ``follow()`` yields a stream's events after a cursor until it finishes (and returns:
    the caller checks that the last event ended it). ``check_lease`` is called for a
    stream whose lease lapsed; ``shut_out(stream_id)`` tells when the process drains and
    a follower must stop (asked every ``WATCH_EVERY``, and whenever a follower wakes up).
    """

    def __init__(
        self,
        store: EventStore,
        reader: StreamsReader,
        check_lease: Callable[[str], Awaitable[object]],
        shut_out: Callable[[str], StreamError | None],
    ) -> None:
        self.store = store
        self.reader = reader
        self.check_lease = check_lease
        self.shut_out = shut_out
        self.followers: dict[str, list[_Follower]] = {}
        #: The cursor the reader reads each stream from (what it was told, and moved).
        self.reading: dict[str, int] = {}
        #: The streams whose cursor may have to change before the next read.
        self.changed: set[str] = set()
        self.task: asyncio.Task[None] | None = None
        #: Whether a ``wait`` is on its way, and whether it was asked to return already.
        self.waiting = False
        self.woken = False

    async def follow(
        self, stream_id: str, after: int, beat: KeepAlive | None = None
    ) -> AsyncGenerator[list[StoredEvent]]:
        """The stream's events after ``after``, in batches, until it finishes; with a
        ``beat``, an empty batch when it is due (it wakes the follower)."""
        self._check_shutdown(stream_id)
        # The events stored so far, read at once: this checks the cursor (``BAD_CURSOR``,
        # ``EVENTS_EXPIRED``, ``NOT_FOUND``) and marks the stream watched.
        while stored := await self.store.read(stream_id, after, timeout=0):
            if beat is not None:
                beat.sent()
            yield stored
            after = stored[-1].seq
            self._check_shutdown(stream_id)
        follower = _Follower(stream_id, after)
        if beat is not None:
            beat.on_silence = follower.wake
        self.followers.setdefault(stream_id, []).append(follower)
        self.changed.add(stream_id)
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run())
        try:
            await self._wake()
            while True:
                self._check_shutdown(stream_id)
                if follower.events:
                    held_back = not follower.reading
                    batch, follower.events = follower.events, []
                    if held_back:
                        self.changed.add(stream_id)
                        await self._wake()
                    if beat is not None:
                        beat.sent()
                    yield batch
                elif follower.failure is not None:
                    raise follower.failure
                elif follower.finished:
                    return
                elif beat is not None and beat.due:
                    beat.sent()
                    yield []
                else:
                    follower.waiter = asyncio.get_running_loop().create_future()
                    await follower.waiter
        finally:
            follower.waiter = None
            self._remove(follower)

    def _check_shutdown(self, stream_id: str) -> None:
        failure = self.shut_out(stream_id)
        if failure is not None:
            raise failure

    def _remove(self, follower: _Follower) -> None:
        """A follower leaves. Its stream stays in the ``wait`` on its way, which ends
        within ``WATCH_EVERY``; then it is read no more (and the task ends when nobody
        follows anything)."""
        followers = self.followers.get(follower.stream_id)
        if followers is None:
            return
        with contextlib.suppress(ValueError):
            followers.remove(follower)
        if not followers:
            del self.followers[follower.stream_id]
        self.changed.add(follower.stream_id)

    async def _wake(self) -> None:
        """The streams to read changed: make the ``wait`` on its way return (once)."""
        if self.waiting and not self.woken:
            self.woken = True
            await self.reader.wake()

    def _update(self) -> None:
        """Tell the reader the cursors that changed: each stream is read for its
        followers that take their events, from the earliest of their cursors."""
        for stream_id in self.changed:
            afters = [f.after for f in self.followers.get(stream_id, ()) if f.reading]
            cursor = min(afters) if afters else None
            if cursor is None:
                if self.reading.pop(stream_id, None) is not None:
                    self.reader.forget(stream_id)
            elif self.reading.get(stream_id) != cursor:
                self.reading[stream_id] = cursor
                self.reader.read_from(stream_id, cursor)
        self.changed.clear()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_watch = loop.time()
        try:
            while self.followers:
                if loop.time() >= next_watch:
                    next_watch = loop.time() + WATCH_EVERY
                    self._shut_out()
                    await self._watch()
                self._update()
                self.waiting, self.woken = True, False
                try:
                    found = await self.reader.wait(timeout=max(0.0, next_watch - loop.time()))
                finally:
                    self.waiting = False
                self._deliver(found)
        except Exception as exc:
            failure = exc if isinstance(exc, StreamError) else None
            if failure is None:
                logger.exception("The shared reader of the event store failed")
                failure = StreamError(StreamErrorCode.INTERNAL_ERROR, "Reading the reply failed")
            self._fail_all(failure)
        finally:
            # Cancelled (its event loop closes): nobody may wait for it any longer.
            self._fail_all(StreamError(StreamErrorCode.STORE_UNAVAILABLE, STOPPED))
            for stream_id in self.reading:
                self.reader.forget(stream_id)
            self.reading.clear()
            self.changed = set(self.followers)

    async def _watch(self) -> None:
        """Mark every followed stream watched, in one call; end the followers of those
        that are gone, and end those whose process died (``check_lease``)."""
        for stream_id, reason in (await self.reader.watch(list(self.followers))).items():
            try:
                if reason == LAPSED:
                    await self.check_lease(stream_id)
                    continue
                raise not_found(stream_id)
            except StreamError as error:
                for follower in self.followers.get(stream_id, ()):
                    follower.fail(error)
                self.changed.add(stream_id)

    def _deliver(self, found: dict[str, Tail | StreamError]) -> None:
        """Hand each follower what was read after its cursor; the reader moved on."""
        for stream_id, tail in found.items():
            cursor = self.reading[stream_id]  # where this read began
            if isinstance(tail, StreamError) or tail.finished:
                del self.reading[stream_id]  # the reader read it for the last time
            elif tail.events:
                self.reading[stream_id] = tail.events[-1].seq
            self.changed.add(stream_id)
            for follower in self.followers.get(stream_id, ()):
                if not follower.reading:
                    continue  # its stream is read for it again once it took its events
                if isinstance(tail, StreamError):
                    follower.fail(tail)
                    continue
                # ``tail`` follows ``cursor``: the part after the follower's own cursor.
                start = follower.after - cursor
                if start < 0:
                    continue  # it came during the read, with an earlier cursor
                if start < len(tail.events):
                    follower.events += tail.events[start:]
                    follower.after = tail.events[-1].seq
                    follower.wake()
                last = tail.events[-1].seq if tail.events else cursor
                if tail.finished and follower.after == last:
                    follower.finished = True
                    follower.wake()

    def _shut_out(self) -> None:
        """When the process drains, wake the followers it stops."""
        for stream_id, followers in self.followers.items():
            if self.shut_out(stream_id) is not None:
                for follower in followers:
                    follower.wake()

    def _fail_all(self, failure: StreamError) -> None:
        for followers in self.followers.values():
            for follower in followers:
                follower.fail(failure)
