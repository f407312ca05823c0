"""Generations: a model reply that runs as its own task and outlives its connection.

A generation drives a text source through an extractor pipeline and writes what comes out
to the event store as typed events (``streaming.events``), numbered 1, 2, 3 …: ``Chunk``
(text ready at once is merged into one), ``Event`` (extractor events), then exactly one of
``Complete``, ``Error`` or ``Cancelled``. Transports *follow* a generation through
``Generations.follow`` from a cursor, so a client that reconnects gets exactly the events
it missed, from any process sharing the store.

``start(..., on_end=...)`` lets a caller store the outcome (the chat's messages): it is
awaited with how the generation ended before its terminal event is written, so a client
that has seen the end finds what ``on_end`` stored.

Policies on disconnect: ``cancel`` stops the generation when its client goes away (and
after ``CANCEL_GRACE`` seconds when nobody ever followed it); ``keep`` lets it run while
someone followed it within ``KEEP_GRACE`` seconds. A cancel request stops it in whichever
process runs it. A store that fails ends the generation at once, with the store's error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal, TypeVar, get_args

from . import event_writer, limits, shutdown
from .conf import setting
from .errors import StreamError, StreamErrorCode
from .event_writer import EventWriter, StoreFlusher, store_failure
from .events import (
    TERMINAL,
    Cancelled,
    Complete,
    Error,
    GenerationEvent,
    from_record,
    to_record,
)
from .extractors import Pipeline
from .keepalive import KeepAlive
from .limits import Limits, Reservation, reserve
from .owners import CONNECTION_OWNER
from .runtime import text_chunk
from .shared_reader import SharedReader
from .sources.iterables import iterate
from .sources.reasoning import Reasoning
from .store import get_store
from .store.base import NOT_FOUND, EventStore, Quota, check_cursor
from .surrogates import replace_surrogates

logger = logging.getLogger("streaming")

DisconnectPolicy = Literal["cancel", "keep"]
DISCONNECT_POLICIES: tuple[str, ...] = get_args(DisconnectPolicy)
_T = TypeVar("_T")
#: Awaited with how a generation ended: "complete", "cancelled" or "error".
OnEnd = Callable[[str], Awaitable[None]]
#: Awaited beside a generation once it is in the store: whether it is still wanted.
OnStart = Callable[[], Awaitable[bool]]

#: Seconds a follower waits on the store before it checks in again.
FOLLOW_POLL = 1.0
#: Seconds between two checks of this process's watcher (cancel requests, unwatched
#: generations), for all the generations it runs at once.
WATCH_INTERVAL = 0.5
#: Seconds between two looks at a generation stopped in another process (``cancel``).
SETTLE_POLL = 0.05
#: Replies renewed per store call (leases, places): a process running many renews them a
#: slice at a time and lets the event loop run in between (10,000 at once held it for
#: tens of milliseconds, a stall for every reply streaming in the process).
RENEW_SLICE = 500
#: Seconds between two looks at the store by a resume that is ahead of it (by at most
#: ``event_writer.MAX_UNSTORED`` events).
CATCH_UP_POLL = 0.005
#: Seconds between two warnings in the log that ``MAX_ACTIVE_PER_PROCESS`` refused a
#: reply (a full process refuses many at once).
BUSY_LOG_EVERY = 60.0

#: Store failures remembered for this process's followers (the newest ones).
MAX_REMEMBERED_FAILURES = 256


def _deliver(text: str, pipeline: Pipeline, writer: EventWriter, forward_events: bool) -> None:
    """Hand what the pipeline let through to the writer: ``text``, then its extractors'
    events (stored when ``forward_events``, else dropped); the pieces of a text (the
    reasoning's) are merged as the reply's text is."""
    if text:
        writer.add_text(text)
    if pipeline.emits:
        for event in pipeline.drain_events():
            if not forward_events:
                continue
            if event.piece:
                writer.add_text(event.data["text"], event.name)
            else:
                writer.add_event(event.name, event.data)


async def _deliver_tail(pipeline: Pipeline, writer: EventWriter, forward_events: bool) -> None:
    """Deliver what the pipeline held back, after awaiting the async callbacks its flush
    called (as after each push)."""
    text = pipeline.flush()
    if pipeline.drains:
        await pipeline.drain()
    _deliver(text, pipeline, writer, forward_events)


async def _reason(
    piece: Reasoning,
    room: float,
    limit: int | None,
    pipeline: Pipeline,
    writer: EventWriter,
    forward_events: bool,
) -> float:
    """A piece of the source's reasoning (``Reasoning``): counted in ``MAX_REPLY_CHARS``
    as text is (cut at the cap, then ``REPLY_TOO_LARGE``), handed to the pipeline's
    reasoning channel and its ``reasoning`` event delivered (with ``forward_events``);
    the room left is returned. Only a source that sends reasoning comes here: text pays
    nothing for it."""
    text = text_chunk(str(piece))
    room -= len(text)
    if room < 0:
        text = text[: len(text) + int(room)]
    if text:
        pipeline.push_reasoning(text)
        _deliver("", pipeline, writer, forward_events)
    if room < 0:
        raise _too_large(limit)
    if writer.held:
        await writer.hold()
    elif writer.sealing is not None and writer.hogging(asyncio.get_running_loop().time()):
        await writer.give_way()  # reasoning ready at once: as for text
    return room


def _too_large(limit: int | None) -> StreamError:
    return StreamError(
        StreamErrorCode.REPLY_TOO_LARGE,
        f"The model wrote more than {limit} characters; the reply was cut",
    )


def renewal_slices(store: EventStore, items: list[_T]) -> Iterator[list[_T]]:
    """``items`` in lists of at most ``RENEW_SLICE``, a store call each; or all in one
    list when ``store.renews_per_process`` (one call then does the work of them all)."""
    if store.renews_per_process:
        if items:
            yield items
        return
    for start in range(0, len(items), RENEW_SLICE):
        yield items[start : start + RENEW_SLICE]


def _places(running: Iterable[_Running]) -> Iterator[tuple[str, Sequence[Quota]]]:
    """The places of the replies in ``running`` that hold some, made as the store reads
    them, not kept in a list: 10,000 tuples alive at once moved the collector's next young
    collection to tens of ms."""
    for each in running:
        reservation = each.reservation
        if reservation is not None and reservation.active and not reservation.released:
            yield reservation.holder, reservation.active


@dataclass(eq=False, slots=True)
class _Running:
    task: asyncio.Task[None]
    writer: EventWriter
    #: Whose it is: a follower here is checked against it without asking the store.
    owner: str
    #: Seconds it may run with nobody following it, and since when it runs (``time()``).
    grace: float
    started: float
    #: The places it holds in the limits: renewed by the watcher with all the others.
    reservation: Reservation | None = None
    #: Awaited with how it ended (by ``_run``, or here if it was cancelled before it ran).
    on_end: OnEnd | None = None


class _Following:
    """A follower's start and end, wherever its events come from (``async with``): the
    owner checked, its keep-alive clock (when it wants heartbeats) and the follower
    counted, until it stops. One small object per open reply (a generator-based context
    manager took a generator and its wrapper, about 0.5 KiB)."""

    __slots__ = ("beat", "generation_id", "generations", "heartbeat", "on_silence", "owner")

    def __init__(
        self,
        generations: Generations,
        generation_id: str,
        owner: str,
        heartbeat: float | None,
        on_silence: Callable[[], object] | None,
    ) -> None:
        self.generations = generations
        self.generation_id = generation_id
        self.owner = owner
        self.heartbeat = heartbeat
        self.on_silence = on_silence
        self.beat: KeepAlive | None = None

    async def __aenter__(self) -> KeepAlive | None:
        await self.generations.check_owner(self.generation_id, self.owner)
        if self.heartbeat:
            self.beat = KeepAlive(self.heartbeat, self.on_silence)
        self.generations._add_follower(self.generation_id)
        return self.beat

    async def __aexit__(self, *exc_info: object) -> None:
        if self.beat is not None:
            self.beat.cancel()
        self.generations._unfollow(self.generation_id)


class _ExpectedFollower:
    """A follower counted before it starts (``Generations.expect_follower``). Calling it
    (from any thread) stops counting it on its event loop; so does ``end`` (the request's
    task ended), whichever comes first."""

    __slots__ = ("counted", "generation_id", "generations", "loop")

    def __init__(self, generations: Generations, generation_id: str) -> None:
        self.generations = generations
        self.generation_id = generation_id
        self.loop = asyncio.get_running_loop()
        self.counted = True
        generations._add_follower(generation_id)

    def __call__(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing counts
            self.loop.call_soon_threadsafe(self.end)

    def end(self, _task: object = None) -> None:
        if self.counted:
            self.counted = False
            self.generations._unfollow(self.generation_id)


class Generations:
    """The generations this process runs, and the way to follow any generation."""

    def __init__(self, store: EventStore | None = None) -> None:
        self._store = store
        self.running: dict[str, _Running] = {}
        #: Generations past ``admit`` whose log is being created (not yet ``running``).
        self.starting = 0
        #: When ``admit`` last logged a refusal (monotonic seconds).
        self._busy_logged = -BUSY_LOG_EVERY
        #: How many followers each generation has in this process.
        self.followers: dict[str, int] = {}
        #: The generations running here that nobody here follows (kept as followers come
        #: and go, so the watcher looks at these only, not at every running one).
        self.unfollowed: set[str] = set()
        #: Store failures that ended generations here, for this process's followers.
        self.failures: OrderedDict[str, StreamError] = OrderedDict()
        #: The one task that renews the leases of every generation running here.
        self.renewer: asyncio.Task[None] | None = None
        #: Generations that ended here but whose log the store failed to end: the renewer
        #: ends them once it can (a lease held per process would keep them open).
        self.unended: set[str] = set()
        #: Set when the process drains: the generations it ended with SHUTTING_DOWN.
        self.cut: set[str] | None = None
        #: The task checking cancel requests and unwatched generations for all of them.
        self.watcher: asyncio.Task[None] | None = None
        self._flusher: StoreFlusher | None = None
        #: Work nobody awaits (a late end, a start check), held until done.
        self._background: set[asyncio.Future[None]] = set()
        #: Where the store's feed of cancel requests was last read.
        self._cancel_cursor: Any = None
        #: The reader this process's followers of generations running elsewhere share.
        self._shared: SharedReader | None = None
        shutdown.register(self)

    def admit(self) -> None:
        """Refuse a new reply in this process: ``SHUTTING_DOWN`` while it drains,
        ``SERVER_BUSY`` (with ``retry_after``) while it runs ``MAX_ACTIVE_PER_PROCESS``
        replies. A transport asks before it reserves or stores anything; ``start`` asks
        again, and decides."""
        if shutdown.is_stopping():
            raise StreamError(
                StreamErrorCode.SHUTTING_DOWN, "The server is restarting; try again shortly"
            )
        cap: int | None = setting("MAX_ACTIVE_PER_PROCESS")
        if cap is None or len(self.running) + self.starting < cap:
            return
        now = time.monotonic()
        if now - self._busy_logged > BUSY_LOG_EVERY:
            self._busy_logged = now
            logger.warning(
                "New replies refused (SERVER_BUSY): %d run in this process, "
                "STREAMING['MAX_ACTIVE_PER_PROCESS'] is %d",
                len(self.running) + self.starting,
                cap,
            )
        raise StreamError(
            StreamErrorCode.SERVER_BUSY,
            "The server is too busy; try again shortly",
            {"retry_after": limits.ACTIVE_RETRY_AFTER},
        )

    async def reserve(self, client_limits: Limits, *, owner: str, address: str) -> Reservation:
        """The places of a new reply: here (``admit``, before the store is asked) and in
        the limits of ``owner`` and ``address`` (``streaming.limits.reserve``)."""
        self.admit()
        return await reserve(self.store, client_limits, owner=owner, address=address)

    @property
    def store(self) -> EventStore:
        return self._store if self._store is not None else get_store()

    async def start(
        self,
        source: Any,
        pipeline: Pipeline,
        *,
        owner: str,
        policy: DisconnectPolicy = "cancel",
        forward_events: bool = False,
        reservation: Reservation | None = None,
        generation_id: str | None = None,
        on_end: OnEnd | None = None,
        on_start: OnStart | None = None,
    ) -> str:
        """Start a generation; return its id. It runs until done, cancelled or unwatched.

        ``forward_events``: store the pipeline's extractor events (else they are dropped).
        ``reservation``: the places it holds in the limits (``streaming.limits``), held
        while it runs and released before its end is written, however it ends.
        ``generation_id`` (default: a random one) lets a caller record it first;
        ``on_end`` is awaited with how it ended, before its terminal event is written.
        ``on_start`` is awaited beside the source once the generation is in the store, where
        a cancel request finds it; False cancels it. A chat checks that its conversation
        was not deleted while the turn was being stored, when no cancel could reach it.
        """
        self.admit()
        generation_id = generation_id or uuid.uuid4().hex
        store = self.store
        self.starting += 1  # counted at once: starts that pass ``admit`` together fit
        try:
            await store.create(generation_id, owner=owner, lease=float(setting("LEASE_SECONDS")))
        finally:
            self.starting -= 1
        if self._flusher is None or self._flusher.store is not store:
            self._flusher = StoreFlusher(store)
        interval = float(setting("FLUSH_INTERVAL_MS") or 0) / 1000
        writer = EventWriter(store, generation_id, self._flusher, interval)
        task = asyncio.create_task(
            self._run(generation_id, source, pipeline, writer, forward_events, reservation, on_end),
            name=generation_id,
        )
        writer.on_failure = task.cancel
        # A connection's own owner (no session) dies with it: nobody could ever resume,
        # follow or stop a kept reply, so it is cancelled like any unwatched one.
        keep = policy == "keep" and not owner.startswith(CONNECTION_OWNER)
        grace = float(setting("KEEP_GRACE" if keep else "CANCEL_GRACE"))
        held = reservation if reservation is not None and reservation.active else None
        self.running[generation_id] = _Running(
            task, writer, owner, grace, time.time(), held, on_end
        )
        if not self.followers.get(generation_id):
            self.unfollowed.add(generation_id)
        task.add_done_callback(self._forget_task)
        if self.watcher is None or self.watcher.done():
            self.watcher = asyncio.create_task(self._watch())
        self._keep_renewing()
        if on_start is not None:
            checking = asyncio.ensure_future(self._confirm(generation_id, on_start))
            self._background.add(checking)
            checking.add_done_callback(self._background.discard)
        # Let the run begin: a task cancelled before its first step never runs, and its
        # log would never get the Cancelled event its followers wait for.
        await asyncio.sleep(0)
        return generation_id

    async def _confirm(self, generation_id: str, on_start: OnStart) -> None:
        """Cancel the generation unless ``on_start()`` wants it; a failing check is
        logged and the generation goes on."""
        try:
            wanted = await on_start()
        except Exception:
            logger.exception("Generation %s: its start check failed", generation_id)
            return
        if not wanted:
            await self.cancel(generation_id)

    async def cancel(self, generation_id: str, *, settle: bool = False) -> None:
        """Stop a generation, here or in the process that runs it. One running here is
        over on return (within ``CLEANUP_TIMEOUT``); one running elsewhere is asked to
        stop, and with ``settle`` waited for as well (polled: that process sees the ask
        within ``WATCH_INTERVAL``), so that a prompt sent next does not find it running.
        One that is over already is asked nothing: the store's feed of cancel requests is
        bounded, and a flood of stops of finished replies would push real ones out of it."""
        running = self.running.get(generation_id)
        if running is not None:
            running.task.cancel()
            await asyncio.wait({running.task}, timeout=setting("CLEANUP_TIMEOUT"))
            return
        with contextlib.suppress(StreamError):
            if await self.store.is_finished(generation_id):
                return
            await self.store.request_cancel(generation_id)
            if settle:
                deadline = time.monotonic() + WATCH_INTERVAL + setting("CLEANUP_TIMEOUT")
                while not await self.store.is_finished(generation_id):
                    if time.monotonic() >= deadline:
                        return
                    await asyncio.sleep(SETTLE_POLL)

    async def check_owner(self, generation_id: str, owner: str) -> None:
        """The same ``NOT_FOUND`` for an unknown, expired or someone else's generation
        (one running here is checked here: no store round trip before its first event)."""
        running = self.running.get(generation_id)
        known = running.owner if running is not None else await self.store.owner(generation_id)
        if known != owner:
            raise StreamError(
                StreamErrorCode.NOT_FOUND, "No such reply (unknown, expired or not yours)"
            )

    async def has_more(self, generation_id: str, owner: str, after: int) -> bool:
        """Whether following from ``after`` would give anything: False once the
        generation is finished and its events after ``after`` are all read. A cursor
        past the last event written is refused (``BAD_CURSOR``) whether or not the
        generation still runs, so a resume is refused before its response starts."""
        await self.check_owner(generation_id, owner)
        running = self.running.get(generation_id)
        if running is not None and after > running.writer.stored_seq:
            # Handed over here, not yet stored: the terminal event is not among them.
            check_cursor(generation_id, after, running.writer.handed)
            return True
        store = self.store
        after = await self._caught_up(generation_id, after)
        finished = await store.is_finished(generation_id)
        more = await store.read(generation_id, after, timeout=0)
        return not finished or bool(more)

    async def _caught_up(self, generation_id: str, after: int) -> int:
        """The cursor to read the store from for a client that saw the events up to
        ``after``: ``after`` once the store has them. The process running the reply hands
        its clients events before it stores them (``EventWriter``), so a client that
        resumes here at once may be ahead of the store, by ``MAX_UNSTORED`` events at most:
        wait until it caught up, or until the reply ended without them (its process
        died holding them, and its lease lapsed; the ``INTERRUPTED`` end then took the
        first seq the store lacked, maybe one the client saw): then the cursor before that
        end, which tells the client so. Otherwise ahead, or still ahead after twice
        ``LEASE_SECONDS`` (a live process stores its events within milliseconds, or
        fails its reply): ``BAD_CURSOR``."""
        poll = CATCH_UP_POLL
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2 * float(setting("LEASE_SECONDS"))
        while True:
            try:
                stored = await self.store.read(generation_id, after, timeout=0)
            except StreamError as error:
                last = (error.details or {}).get("last")
                if not isinstance(last, int) or not 0 < after - last <= event_writer.MAX_UNSTORED:
                    raise
                if await self.store.is_finished(generation_id):
                    if await self._interrupted_at(generation_id, last):
                        return last - 1
                    raise
                if loop.time() >= deadline:
                    raise
                if generation_id not in self.running:
                    await self.end_if_lapsed(generation_id)
                await asyncio.sleep(poll)
                poll = min(poll * 2, WATCH_INTERVAL)
                continue
            if stored or after < 1 or not await self.store.is_finished(generation_id):
                return after
            return after - 1 if await self._interrupted_at(generation_id, after) else after

    def follow(
        self, generation_id: str, owner: str, after: int = 0, *, heartbeat: float | None = None
    ) -> AsyncGenerator[list[GenerationEvent]]:
        """The events after ``after``, in batches, until the terminal one (included).

        ``heartbeat``: after that many seconds without a batch, an empty one, so that the
        transport can send a keep-alive without a timer of its own per wait.
        A store failure is raised as ``StreamError`` (also when the generation was ended
        by one: its log then has no terminal event). Close it (``aclosing``) when you stop
        early: it counts as a follower until then. The owner is checked at the first read.

        A generation running here is followed by its own generator (no layer of ours
        between it and the transport, which resumes it once per token).
        """
        running = self.running.get(generation_id)
        if running is not None:
            return self._follow_here(running.writer, owner, after, heartbeat)
        return self._follow_stored(generation_id, owner, after, heartbeat)

    async def _follow_stored(
        self, generation_id: str, owner: str, after: int, heartbeat: float | None
    ) -> AsyncGenerator[list[GenerationEvent]]:
        """``follow`` for a generation another process runs (or that ended): its events
        come from the store, through this process's shared reader when the store has one."""
        store = self.store
        touched = 0.0
        async with _Following(self, generation_id, owner, heartbeat, None) as beat:
            after = await self._caught_up(generation_id, after)
            shared = self._shared_reader(store)
            if shared is not None:
                # It runs elsewhere: this process's one reader of the store serves it.
                async with aclosing(shared.follow(generation_id, after, beat)) as batches:
                    async for stored in batches:
                        if not stored:
                            yield []  # a heartbeat
                            continue
                        events = [from_record(item.seq, item.data) for item in stored]
                        yield events
                        if isinstance(events[-1], TERMINAL):
                            return
                        after = events[-1].seq
                if not await self._ended_at(generation_id, after):
                    raise self._lost(generation_id)
                return
            poll = FOLLOW_POLL if beat is None else min(FOLLOW_POLL, beat.seconds)
            while True:
                if self.cut is not None and generation_id not in self.cut:
                    raise StreamError(
                        StreamErrorCode.SHUTTING_DOWN, "The server is restarting; resume the reply"
                    )
                now = time.monotonic()
                if now - touched >= WATCH_INTERVAL / 2:
                    await store.touch(generation_id)
                    touched = now
                stored = await store.read(generation_id, after, timeout=poll)
                if stored:
                    events = [from_record(item.seq, item.data) for item in stored]
                    if beat is not None:
                        beat.sent()
                    yield events
                    if isinstance(events[-1], TERMINAL):
                        return
                    after = events[-1].seq
                elif beat is not None and beat.due:
                    beat.sent()
                    yield []
                elif await store.is_finished(generation_id):
                    if await store.read(generation_id, after, timeout=0):
                        continue  # the last events came between the read and the check
                    if not await self._ended_at(generation_id, after):
                        raise self._lost(generation_id)
                    return
                elif generation_id not in self.running:
                    await self.end_if_lapsed(generation_id)

    def expect_follower(self, generation_id: str) -> Callable[[], None]:
        """Count a follower about to start: a response the server has not begun reading
        yet. A busy server may take longer than ``CANCEL_GRACE`` to get there, and its
        reply must not be cancelled as unwatched meanwhile. Returns the call (from any
        thread: Django closes a response in a worker thread) that stops counting it, on
        this event loop; the end of the current task (the request's, which reads the
        response it returns) stops it too, so a response dropped unread (its client gone
        while a view or middleware still ran) holds nothing until it is collected."""
        expected = _ExpectedFollower(self, generation_id)
        request = asyncio.current_task()
        if request is not None:
            request.add_done_callback(expected.end)
        return expected

    def _add_follower(self, generation_id: str) -> None:
        self.followers[generation_id] = self.followers.get(generation_id, 0) + 1
        self.unfollowed.discard(generation_id)

    def _unfollow(self, generation_id: str) -> None:
        left = self.followers.pop(generation_id, 1) - 1
        if left:
            self.followers[generation_id] = left
        elif generation_id in self.running:
            self.unfollowed.add(generation_id)

    def _shared_reader(self, store: EventStore) -> SharedReader | None:
        """The process's reader of ``store`` for followers of generations running
        elsewhere; ``None`` when the store has none (each follower then reads alone)."""
        if self._shared is None or self._shared.store is not store:
            reader = store.streams_reader()
            if reader is None:
                return None
            self._shared = SharedReader(store, reader, self.end_if_lapsed, self._shut_out)
        return self._shared

    def _shut_out(self, generation_id: str) -> StreamError | None:
        """The error a follower here of ``generation_id`` stops with when the process
        drains (a generation it cut itself still gives its followers its end)."""
        if self.cut is not None and generation_id not in self.cut:
            return StreamError(
                StreamErrorCode.SHUTTING_DOWN, "The server is restarting; resume the reply"
            )
        return None

    async def text_before(self, generation_id: str, seq: int) -> str:
        """The reply's text in its events up to ``seq`` (a follower that resumed after
        ``seq`` and needs the whole text reads it once, at the end)."""
        text, _ = await self.texts_before(generation_id, seq)
        return text

    async def texts_before(
        self, generation_id: str, seq: int, *, event: str = "reasoning"
    ) -> tuple[str, str]:
        """The reply's text, and the text of its ``event`` events (``{"text": ...}``: the
        reasoning), in its events up to ``seq``."""
        text: list[str] = []
        named: list[str] = []
        after = 0
        while after < seq:
            stored = await self.store.read(generation_id, after, timeout=0)
            if not stored:
                break
            for item in stored:
                if item.seq > seq:
                    break
                data = item.data
                if data["type"] == "chunk":
                    text.append(data["text"])
                elif data["type"] == "event" and data["name"] == event:
                    piece = data["data"].get("text") if isinstance(data["data"], dict) else None
                    if isinstance(piece, str):
                        named.append(piece)
            after = stored[-1].seq
        return "".join(text), "".join(named)

    async def end_if_lapsed(self, generation_id: str) -> bool:
        """End a generation another process ran when that process died (its lease
        lapsed), so that no follower waits for it forever; whether it did."""
        interrupted = Error(
            0, str(StreamErrorCode.INTERRUPTED), "The server running the reply stopped"
        )
        if await self.store.interrupt_if_lapsed(generation_id, to_record(interrupted)):
            logger.warning("Generation %s: its process stopped renewing it", generation_id)
            return True
        return False

    def _keep_renewing(self) -> None:
        """Start the renewer unless it runs."""
        if self.renewer is None or self.renewer.done():
            self.renewer = asyncio.create_task(self._renew_leases())

    async def _renew_leases(self) -> None:
        """Renew the leases of every generation running here, in one store call, every
        third of ``LEASE_SECONDS``, while any runs; and end the logs the store failed to
        end (``unended``) once it answers again."""
        lease = float(setting("LEASE_SECONDS"))
        while self.running or self.unended:
            await asyncio.sleep(lease / 3)
            try:
                for ids in renewal_slices(self.store, list(self.running)):
                    await self.store.renew_leases(ids, lease)
                    await asyncio.sleep(0)
                for generation_id in list(self.unended):
                    await _end_log(self.store, generation_id)
                    self.unended.discard(generation_id)
            except StreamError as exc:
                logger.error("Could not renew the leases of this process: %r", exc)

    async def shut_down(self) -> None:
        """The process drains: end every generation running here with ``SHUTTING_DOWN``
        (stored, so a resume elsewhere gets it at once), then wait for its followers."""
        self.cut = set(self.running)
        tasks = [running.task for running in self.running.values()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        while self.followers:
            await asyncio.sleep(0.05)

    async def _follow_here(
        self, writer: EventWriter, owner: str, after: int, heartbeat: float | None
    ) -> AsyncGenerator[list[GenerationEvent]]:
        """``follow`` for a generation this process runs (or ran, when it ended since):
        no store read, no polling (the store is read only for events older than what the
        writer still keeps)."""
        generation_id = writer.generation_id
        async with _Following(self, generation_id, owner, heartbeat, writer.wake) as beat:
            writer.readers += 1
            try:
                while after < writer.base:
                    stored = await self.store.read(generation_id, after, timeout=0)
                    if not stored:
                        raise self._lost(generation_id)
                    events = [from_record(item.seq, item.data) for item in stored]
                    events = [e for e in events if e.seq <= writer.base]
                    yield events
                    if not writer.out:
                        writer.passed_on()
                    if isinstance(events[-1], TERMINAL):
                        return
                    after = events[-1].seq
                woken = True
                while True:
                    start = after - writer.base
                    kept = writer.events
                    if start > len(kept):
                        check_cursor(generation_id, after, writer.base + len(kept))
                    if len(kept) > start:
                        batch = kept[start:]
                        if writer.readers == 1:  # the only reader: nobody needs them again
                            if writer.stored_seq >= batch[-1].seq:
                                writer.events = []
                                writer.base = batch[-1].seq
                            elif writer.stored_seq > writer.base:
                                writer.trim(batch[-1].seq)
                        if beat is not None:
                            beat.sent()
                        yield batch
                        if not writer.out:
                            writer.passed_on()
                        if isinstance(batch[-1], TERMINAL):
                            return
                        after = batch[-1].seq
                        woken = False  # just sent: no keep-alive can be due
                    elif writer.failure is not None:
                        raise writer.failure
                    elif writer.ended:
                        raise self._lost(generation_id)
                    elif woken and beat is not None and beat.due:
                        beat.sent()
                        yield []
                    else:
                        waiting = writer.waiting()
                        try:
                            await waiting
                        except BaseException:  # closed or cancelled while it waited
                            writer.stop_waiting(waiting)
                            raise
                        woken = True
            finally:
                writer.readers -= 1

    async def _event_at(self, generation_id: str, seq: int) -> GenerationEvent | None:
        """Event ``seq`` of the store's log, if it has it."""
        if seq < 1:
            return None
        events = await self.store.read(generation_id, seq - 1, timeout=0)
        return from_record(events[0].seq, events[0].data) if events else None

    async def _interrupted_at(self, generation_id: str, seq: int) -> bool:
        """Whether event ``seq`` is the ``INTERRUPTED`` end of a reply whose process died."""
        end = await self._event_at(generation_id, seq)
        return isinstance(end, Error) and end.code == StreamErrorCode.INTERRUPTED

    async def _ended_at(self, generation_id: str, seq: int) -> bool:
        """Whether event ``seq`` is the terminal one (a finished log always ends with one,
        unless the store failed)."""
        return isinstance(await self._event_at(generation_id, seq), TERMINAL)

    def _lost(self, generation_id: str) -> StreamError:
        failure = self.failures.get(generation_id)
        if failure is not None:
            return failure
        return StreamError(
            StreamErrorCode.STORE_UNAVAILABLE, "The event store failed; the reply was stopped"
        )

    # ----------------------------------------------------------------- running
    async def _run(
        self,
        generation_id: str,
        source: Any,
        pipeline: Pipeline,
        writer: EventWriter,
        forward_events: bool,
        reservation: Reservation | None = None,
        on_end: OnEnd | None = None,
    ) -> None:
        terminal: Callable[[int], GenerationEvent]
        deadline = setting("MAX_REPLY_SECONDS")
        end = "error"
        try:
            try:
                async with asyncio.timeout(deadline) as budget:
                    await self._produce(source, pipeline, writer, forward_events)
            except TimeoutError as exc:
                if not budget.expired():
                    raise
                raise StreamError(
                    StreamErrorCode.TIMEOUT, f"The reply took longer than {deadline} s"
                ) from exc
            terminal, end = Complete, "complete"
        except asyncio.CancelledError:
            # Cancelled, the process draining, or stopped by a failed write (``close``
            # then raises the store's error, and ``on_end`` hears "error": a chat stores
            # the reply as failed, not as stopped by its user).
            terminal, end = self._cancelled_end()
            if writer.failure is not None:
                end = "error"
        except StreamError as exc:
            logger.warning("Generation %s failed: %r", generation_id, exc)
            terminal = partial(Error, code=str(exc.code), message=replace_surrogates(exc.message))
        except Exception:
            logger.exception("Generation %s failed", generation_id)
            terminal = partial(
                Error, code=str(StreamErrorCode.INTERNAL_ERROR), message="The model stream failed"
            )
        # Cancel requests are repeated until the generation is done (the watchdog's): one
        # may come while it ends, and must not cut its end short (its places would stay
        # taken until their lease lapsed, its followers would hear the store failed).
        await _to_its_end(self._finish(generation_id, writer, terminal, end, reservation, on_end))

    def _cancelled_end(self) -> tuple[Callable[[int], GenerationEvent], str]:
        """The terminal event of a cancelled generation, and how it ended."""
        if self.cut is None:
            return Cancelled, "cancelled"
        message = "The server is restarting; the reply was cut"
        return partial(Error, code=str(StreamErrorCode.SHUTTING_DOWN), message=message), "error"

    async def _finish(
        self,
        generation_id: str,
        writer: EventWriter,
        terminal: Callable[[int], GenerationEvent],
        end: str,
        reservation: Reservation | None,
        on_end: OnEnd | None,
    ) -> None:
        """Release the places, await ``on_end``, write the terminal event, end the log.
        While the process drains, the followers here get an end other than ``complete``
        (which ``on_end`` may still change) first: a hung store must not keep them from
        their ``SHUTTING_DOWN`` until the process stops and cuts them without it."""
        if self.cut is not None and end != "complete":
            writer.hand_end(terminal)
        if reservation is not None:
            # Before the end is visible: its client may start the next reply at once.
            await reservation.release()
        unsaved = await _ended(generation_id, on_end, end)
        if unsaved is not None and end == "complete":
            # Its client must not see the end of a reply its ``on_end`` (the chat's
            # message) failed to store: it hears why instead.
            terminal = partial(Error, code=str(unsaved.code), message=unsaved.message)
        try:
            await writer.close(terminal)
        except Exception as exc:
            # The store failed: end the log if it still can, so that every follower
            # stops at once and reports the store's error.
            failure = store_failure(exc)
            logger.error("Generation %s could not be stored: %r", generation_id, failure)
            self._remember(generation_id, failure)
            try:
                await _end_log(writer.store, generation_id)
            except StreamError:
                self.unended.add(generation_id)
                self._keep_renewing()
        finally:
            writer.end()

    @staticmethod
    async def _produce(
        source: Any, pipeline: Pipeline, writer: EventWriter, forward_events: bool
    ) -> None:
        """Feed the source's chunks through the pipeline to the writer.

        The pipeline's held-back tail is delivered last, also when the source fails
        midway, so nothing it accepted is lost. Once the pipeline is done the source is
        closed: the rest of the model's reply would be paid for and dropped, and a model
        that stalls after it would turn a finished reply into a timeout. Cancellation
        closes the source (an upstream request stops) and delivers nothing more. A model
        that writes past ``MAX_REPLY_CHARS`` (its tags and reasoning count) is cut there,
        the source closed, and the reply ends with ``REPLY_TOO_LARGE``, the pipeline's
        held-back tail undelivered. The text is kept only in the store, never joined here.
        Reasoning the source sends apart (``Reasoning`` pieces) goes to the pipeline's
        reasoning channel (``push_reasoning``), never through its extractors.
        """
        clock = asyncio.get_running_loop().time
        limit: int | None = setting("MAX_REPLY_CHARS")
        room: float = math.inf if limit is None else limit
        try:
            # The source itself (``iterate`` adds no layer to an async generator), each
            # chunk checked here: no generator of our own to pass through per token. The
            # checks below spare a paced token three calls: ``text_chunk`` (ASCII ``str``
            # is text already), ``_deliver`` (no events to forward) and ``hogging`` with
            # its clock read (nothing waits to be sealed when a follower took the text).
            async with aclosing(iterate(source)) as chunks:
                async for chunk in chunks:
                    if type(chunk) is not str:
                        if isinstance(chunk, Reasoning):
                            room = await _reason(
                                chunk, room, limit, pipeline, writer, forward_events
                            )
                            continue
                        chunk = text_chunk(chunk)
                    elif not chunk.isascii():
                        chunk = text_chunk(chunk)
                    room -= len(chunk)
                    if room < 0:
                        chunk = chunk[: len(chunk) + int(room)]  # what fits
                    text = pipeline.push(chunk)
                    if pipeline.drains:
                        await pipeline.drain()
                    if text and not pipeline.emits:
                        writer.add_text(text)
                    else:
                        _deliver(text, pipeline, writer, forward_events)
                    if pipeline.done:
                        break  # also past the cap: what came after the pipeline's end
                    if room < 0:
                        raise _too_large(limit)
                    if writer.held:
                        await writer.hold()
                    elif writer.sealing is not None and writer.hogging(clock()):
                        # Chunks ready at once: let what is merged so far go out, so the
                        # first text is not held back until the source ends.
                        await writer.give_way()
        except Exception as exc:
            # The model failed mid-reply: the client still gets every character that
            # arrived (unless the reply is over its cap).
            if getattr(exc, "code", None) != StreamErrorCode.REPLY_TOO_LARGE:
                await _deliver_tail(pipeline, writer, forward_events)
            raise
        await _deliver_tail(pipeline, writer, forward_events)

    def _remember(self, generation_id: str, failure: StreamError) -> None:
        self.failures[generation_id] = failure
        while len(self.failures) > MAX_REMEMBERED_FAILURES:
            self.failures.popitem(last=False)

    async def _watch(self) -> None:
        """Every ``WATCH_INTERVAL``, for all the generations running here at once: cancel
        those someone asked to stop (from any process), and those nobody has followed
        (here or elsewhere) for their grace period. The store is asked once for the
        cancel requests (``cancel_requests``), and about the unfollowed ones only.

        A store that fails these calls is asked again at the next turn; once it has failed
        for ``LEASE_SECONDS`` (other processes then hold these replies for dead), the
        generations here are cancelled. A failed write ends its generation at once anyway.
        """
        store = self.store
        renewed = time.monotonic()
        failing_since: float | None = None
        while self.running:
            await asyncio.sleep(WATCH_INTERVAL)
            if time.monotonic() - renewed >= limits.RENEW_EVERY:
                renewed = time.monotonic()
                await self._renew_reservations(store)
            try:
                feed = await store.cancel_requests(self._cancel_cursor)
                if feed is None:  # a store without the feed: ask about each one
                    cancelled = [
                        key for key in list(self.running) if await store.cancel_requested(key)
                    ]
                else:
                    cancelled, self._cancel_cursor = feed
                for generation_id in cancelled:
                    running = self.running.get(generation_id)
                    if running is not None:
                        running.task.cancel()
                now = time.time()
                # The unfollowed ones only: nothing per followed reply, twice a second.
                for generation_id in list(self.unfollowed):
                    running = self.running.get(generation_id)
                    if running is None or running.task.done():
                        continue
                    watched = await store.last_watched(generation_id) or running.started
                    if now - watched > running.grace:
                        logger.info(
                            "Generation %s unwatched for %ss: cancelled",
                            generation_id,
                            running.grace,
                        )
                        running.task.cancel()
                failing_since = None
            except StreamError as exc:
                now = time.monotonic()
                failing_since = now if failing_since is None else failing_since
                if now - failing_since < float(setting("LEASE_SECONDS")):
                    logger.warning("The store failed (%r); asking again shortly", exc)
                    continue
                logger.error(
                    "The store keeps failing (%r); the generations here are cancelled", exc
                )
                for running in list(self.running.values()):
                    running.task.cancel()

    async def _renew_reservations(self, store: EventStore) -> None:
        """Extend the places every reply running here holds: a store call per slice of
        them; or, when the store renews per process, one call naming one of them (a
        reply's places are all renewed ones, ``Reservation.active``, which such a store
        holds on one lease): nothing per reply."""
        try:
            if store.renews_per_process:
                named = next(_places(self.running.values()), None)
                if named is not None:
                    await store.renew_many_quotas((named,))
                return
            for running in renewal_slices(store, list(self.running.values())):
                await store.renew_many_quotas(_places(running))
                await asyncio.sleep(0)
        except StreamError as exc:
            logger.warning("Reply places of this process not renewed: %r", exc)

    def _forget_task(self, task: asyncio.Task[None]) -> None:
        """A generation's task ended (it is named after the generation): forget it."""
        self._forget(task.get_name())

    def _forget(self, generation_id: str) -> None:
        running = self.running.pop(generation_id, None)
        self.unfollowed.discard(generation_id)
        if running is not None and not running.writer.ended:
            # Cancelled before its task ever ran (a loop busy for longer than the grace
            # can do it): release its places and end its log here, or its followers
            # would wait for an end that never comes.
            terminal, end = self._cancelled_end()
            ending = asyncio.ensure_future(
                self._finish(
                    generation_id,
                    running.writer,
                    terminal,
                    end,
                    running.reservation,
                    running.on_end,
                )
            )
            self._background.add(ending)
            ending.add_done_callback(self._background.discard)
        if not self.running and self.watcher is not None:
            self.watcher.cancel()
            self.watcher = None


async def _end_log(store: EventStore, generation_id: str) -> None:
    """``store.finish``; raises ``StreamError`` only when the store failed (an unknown
    or expired log has nothing left to end)."""
    try:
        await store.finish(generation_id)
    except StreamError as exc:
        if (exc.details or {}).get("reason") != NOT_FOUND:
            raise
    except Exception as exc:
        raise store_failure(exc) from exc


async def _to_its_end(awaitable: Awaitable[Any]) -> asyncio.Future[Any]:
    """Run ``awaitable`` to its end, whatever cancels the caller meanwhile; its future."""
    running = asyncio.ensure_future(awaitable)
    while not running.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait({running})
    return running


async def _ended(generation_id: str, on_end: OnEnd | None, end: str) -> StreamError | None:
    """Await ``on_end(end)`` to its end; its failure is logged (a ``StreamError`` on one
    line, anything else with its traceback) and returned (as the ``StreamError`` it
    raised, or ``INTERNAL_ERROR``), never raised (its own
    cancellation is none: the terminal event is still written)."""
    if on_end is None:
        return None
    storing = await _to_its_end(on_end(end))
    failure = None if storing.cancelled() else storing.exception()
    if failure is None:
        return None
    if isinstance(failure, StreamError):  # a defined error: its repr says it all
        logger.error("Generation %s: on_end failed: %r", generation_id, failure)
        return failure
    logger.error("Generation %s: on_end failed", generation_id, exc_info=failure)
    return StreamError(StreamErrorCode.INTERNAL_ERROR, "The reply could not be saved")


_generations: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Generations] = (
    weakref.WeakKeyDictionary()
)


def get_generations() -> Generations:
    """This process's generations (one registry per running event loop)."""
    loop = asyncio.get_running_loop()
    registry = _generations.get(loop)
    if registry is None:
        registry = _generations[loop] = Generations()
    return registry


#: Digits an event id's seq may have (more would cost ``int`` a quadratic parse, or
#: exceed Python's limit on the digits of an ``int`` string: a 500, not an answer).
MAX_SEQ_DIGITS = 18


def parse_event_id(value: str) -> tuple[str, int] | None:
    """``"<generation>:<seq>"`` as SSE ids carry it, or ``None`` when it is not one."""
    generation_id, _, seq = value.partition(":")
    if not generation_id or not (seq.isascii() and seq.isdigit()) or len(seq) > MAX_SEQ_DIGITS:
        return None  # "²" is a digit to ``isdigit``, not to ``int``
    return generation_id, int(seq)
