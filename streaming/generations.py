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
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

from . import shutdown
from .conf import setting
from .errors import StreamError, StreamErrorCode
from .events import (
    TERMINAL,
    Cancelled,
    Chunk,
    Complete,
    Error,
    Event,
    GenerationEvent,
    from_record,
    to_record,
)
from .extractors import Pipeline
from .limits import Reservation
from .runtime import as_text_source
from .store import get_store
from .store.base import EventStore
from .surrogates import replace_surrogates

logger = logging.getLogger("streaming")

DisconnectPolicy = Literal["cancel", "keep"]
#: Awaited with how a generation ended: "complete", "cancelled" or "error".
OnEnd = Callable[[str], Awaitable[None]]

#: Seconds a follower waits on the store before it checks in again.
FOLLOW_POLL = 1.0
#: Seconds between two watchdog checks (cancel requests, unwatched generations).
WATCH_INTERVAL = 0.5
#: The session key holding an anonymous visitor's owner token.
OWNER_SESSION_KEY = "streaming_owner"


def new_owner_token() -> str:
    return uuid.uuid4().hex


def owner_of(user: Any, session: Any) -> str:
    """Who may follow a generation: the user when logged in, else the session's visitor.

    An anonymous visitor gets a random token in the session (saved with the response, or
    by the caller), so the same browser can resume and nobody else can. Without a session
    the owner is random: the generation can only be followed by the request that made it.
    """
    if _authenticated(user):
        return f"user:{user.pk}"
    if session is None:
        return f"connection:{new_owner_token()}"
    token = session.get(OWNER_SESSION_KEY)
    if not isinstance(token, str):
        token = session[OWNER_SESSION_KEY] = new_owner_token()
    return f"session:{token}"


async def aowner_of(user: Any, session: Any) -> str:
    """``owner_of`` with Django's async session API (no thread for a database session)."""
    if _authenticated(user):
        return f"user:{user.pk}"
    if session is None:
        return f"connection:{new_owner_token()}"
    token = await session.aget(OWNER_SESSION_KEY)
    if not isinstance(token, str):
        token = new_owner_token()
        await session.aset(OWNER_SESSION_KEY, token)
    return f"session:{token}"


def _authenticated(user: Any) -> bool:
    return user is not None and bool(getattr(user, "is_authenticated", False))


#: Store failures remembered for this process's followers (the newest ones).
MAX_REMEMBERED_FAILURES = 256


def store_failure(exc: BaseException) -> StreamError:
    """The error a failed store write ends a generation with (its own, when it has one)."""
    if isinstance(exc, StreamError):
        return exc
    return StreamError(StreamErrorCode.STORE_UNAVAILABLE, "The event store failed")


@dataclass
class _Running:
    task: asyncio.Task[None]
    watchdog: asyncio.Task[None]


class _EventWriter:
    """Appends a generation's events, merging text that arrives while a write is in flight.

    With an in-memory store a write never waits; with Redis, text that arrives during a
    round trip goes out in the next one, so the model is never held back by the store.
    The generation is the only writer of its log, so it numbers its events itself. A
    failed write is kept in ``failure`` and reported to ``on_failure`` at once.
    """

    def __init__(self, store: EventStore, generation_id: str) -> None:
        self.store = store
        self.generation_id = generation_id
        self.seq = 0
        self.pending: list[GenerationEvent] = []
        #: Text after the last pending event, joined once when it is written.
        self.text: list[str] = []
        self.writing: asyncio.Task[None] | None = None
        self.failure: StreamError | None = None
        self.on_failure: Callable[[], object] = lambda: None

    def add_text(self, text: str) -> None:
        self.text.append(text)
        self._kick()

    def add_event(self, name: str, data: Any) -> None:
        self._close_text()
        self.seq += 1
        self.pending.append(Event(self.seq, name, data))
        self._kick()

    def _close_text(self) -> None:
        if self.text:
            self.seq += 1
            self.pending.append(Chunk(self.seq, "".join(self.text)))
            self.text = []

    def _kick(self) -> None:
        if self.failure is None and (self.writing is None or self.writing.done()):
            self.writing = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self.pending or self.text:
                self._close_text()
                batch, self.pending = self.pending, []
                await self._append(batch)
        except Exception as exc:
            if not isinstance(exc, StreamError):
                logger.exception("Generation %s: the event store failed", self.generation_id)
            self.failure = store_failure(exc)
            self.pending, self.text = [], []
            self.on_failure()

    async def close(self, terminal: Callable[[int], GenerationEvent]) -> None:
        """Write everything added so far, then the terminal event ``terminal(seq)``, and
        finish the log. A failed write raises the store's error."""
        if self.writing is not None:
            await self.writing
        if self.failure is not None:
            raise self.failure
        self._close_text()
        self.seq += 1
        batch = [*self.pending, terminal(self.seq)]
        self.pending = []
        await self._append(batch)
        await self.store.finish(self.generation_id)

    async def _append(self, batch: list[GenerationEvent]) -> None:
        last = await self.store.append_many(self.generation_id, [to_record(e) for e in batch])
        if last != batch[-1].seq:
            raise StreamError(
                StreamErrorCode.INTERNAL_ERROR,
                f"The log of {self.generation_id} has another writer (seq {last}, not "
                f"{batch[-1].seq})",
            )


class Generations:
    """The generations this process runs, and the way to follow any generation."""

    def __init__(self, store: EventStore | None = None) -> None:
        self._store = store
        self.running: dict[str, _Running] = {}
        #: How many followers each generation has in this process.
        self.followers: dict[str, int] = {}
        #: Store failures that ended generations here, for this process's followers.
        self.failures: OrderedDict[str, StreamError] = OrderedDict()
        #: The one task that renews the leases of every generation running here.
        self.renewer: asyncio.Task[None] | None = None
        #: Set when the process drains: the generations it ended with SHUTTING_DOWN.
        self.cut: set[str] | None = None
        shutdown.register(self)

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
    ) -> str:
        """Start a generation; return its id. It runs until done, cancelled or unwatched.

        ``forward_events``: store the pipeline's extractor events (else they are dropped).
        ``reservation``: the places it holds in the limits (``streaming.limits``), held
        while it runs and released before its end is written, however it ends.
        ``generation_id`` (default: a random one) lets a caller record it first;
        ``on_end`` is awaited with how it ended, before its terminal event is written.
        """
        if shutdown.is_stopping():
            raise StreamError(
                StreamErrorCode.SHUTTING_DOWN, "The server is restarting; try again shortly"
            )
        generation_id = generation_id or uuid.uuid4().hex
        store = self.store
        await store.create(generation_id, owner=owner, lease=float(setting("LEASE_SECONDS")))
        writer = _EventWriter(store, generation_id)
        task = asyncio.create_task(
            self._run(generation_id, source, pipeline, writer, forward_events, reservation, on_end)
        )
        if reservation is not None:
            reservation.attach(task)
        writer.on_failure = task.cancel
        watchdog = asyncio.create_task(self._watch(generation_id, task, policy))
        self.running[generation_id] = _Running(task, watchdog)
        task.add_done_callback(lambda _: self._forget(generation_id))
        if self.renewer is None or self.renewer.done():
            self.renewer = asyncio.create_task(self._renew_leases())
        # Let the run begin: a task cancelled before its first step never runs, and its
        # log would never get the Cancelled event its followers wait for.
        await asyncio.sleep(0)
        return generation_id

    async def cancel(self, generation_id: str) -> None:
        """Stop a generation, here or in the process that runs it."""
        running = self.running.get(generation_id)
        if running is not None:
            running.task.cancel()
            await asyncio.wait({running.task}, timeout=setting("CLEANUP_TIMEOUT"))
            return
        with contextlib.suppress(StreamError):
            await self.store.request_cancel(generation_id)

    async def check_owner(self, generation_id: str, owner: str) -> None:
        """The same ``NOT_FOUND`` for an unknown, expired or someone else's generation."""
        if await self.store.owner(generation_id) != owner:
            raise StreamError(
                StreamErrorCode.NOT_FOUND, "No such reply (unknown, expired or not yours)"
            )

    async def has_more(self, generation_id: str, owner: str, after: int) -> bool:
        """Whether following from ``after`` would give anything: False once the
        generation is finished and its events after ``after`` are all read."""
        await self.check_owner(generation_id, owner)
        store = self.store
        if not await store.is_finished(generation_id):
            return True
        return bool(await store.read(generation_id, after, timeout=0))

    async def follow(
        self, generation_id: str, owner: str, after: int = 0
    ) -> AsyncGenerator[list[GenerationEvent]]:
        """The events after ``after``, in batches, until the terminal one (included).

        A store failure is raised as ``StreamError`` (also when the generation was ended
        by one: its log then has no terminal event). Close it (``aclosing``) when you stop
        early: it counts as a follower until then.
        """
        await self.check_owner(generation_id, owner)
        store = self.store
        touched = 0.0
        self.followers[generation_id] = self.followers.get(generation_id, 0) + 1
        try:
            while True:
                if self.cut is not None and generation_id not in self.cut:
                    raise StreamError(
                        StreamErrorCode.SHUTTING_DOWN, "The server is restarting; resume the reply"
                    )
                now = time.monotonic()
                if now - touched >= WATCH_INTERVAL / 2:
                    await store.touch(generation_id)
                    touched = now
                stored = await store.read(generation_id, after, timeout=FOLLOW_POLL)
                if stored:
                    events = [from_record(item.seq, item.data) for item in stored]
                    yield events
                    if isinstance(events[-1], TERMINAL):
                        return
                    after = events[-1].seq
                elif await store.is_finished(generation_id):
                    if await store.read(generation_id, after, timeout=0):
                        continue  # the last events came between the read and the check
                    if not await self._ended_at(generation_id, after):
                        raise self._lost(generation_id)
                    return
                elif generation_id not in self.running:
                    await self._check_lease(generation_id)
        finally:
            left = self.followers.pop(generation_id, 1) - 1
            if left:
                self.followers[generation_id] = left

    async def text_before(self, generation_id: str, seq: int) -> str:
        """The reply's text in its events up to ``seq`` (a follower that resumed after
        ``seq`` and needs the whole text reads it once, at the end)."""
        parts: list[str] = []
        after = 0
        while after < seq:
            stored = await self.store.read(generation_id, after, timeout=0)
            if not stored:
                break
            for item in stored:
                if item.seq > seq:
                    break
                if item.data["type"] == "chunk":
                    parts.append(item.data["text"])
            after = stored[-1].seq
        return "".join(parts)

    async def _check_lease(self, generation_id: str) -> None:
        """End a generation another process ran when that process died (its lease
        lapsed), so that no follower waits for it forever."""
        interrupted = Error(
            0, str(StreamErrorCode.INTERRUPTED), "The server running the reply stopped"
        )
        if await self.store.interrupt_if_lapsed(generation_id, to_record(interrupted)):
            logger.warning("Generation %s: its process stopped renewing it", generation_id)

    async def _renew_leases(self) -> None:
        """Renew the leases of every generation running here, in one store call, every
        third of ``LEASE_SECONDS``, while any runs."""
        lease = float(setting("LEASE_SECONDS"))
        while self.running:
            await asyncio.sleep(lease / 3)
            try:
                await self.store.renew_leases(list(self.running), lease)
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

    async def _ended_at(self, generation_id: str, seq: int) -> bool:
        """Whether event ``seq`` is the terminal one (a finished log always ends with one,
        unless the store failed)."""
        if seq < 1:
            return False
        events = await self.store.read(generation_id, seq - 1, timeout=0)
        return bool(events) and isinstance(from_record(events[0].seq, events[0].data), TERMINAL)

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
        writer: _EventWriter,
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
            # then raises the store's error).
            terminal, end = Cancelled, "cancelled"
            if self.cut is not None:
                end = "error"
                terminal = partial(
                    Error,
                    code=str(StreamErrorCode.SHUTTING_DOWN),
                    message="The server is restarting; the reply was cut",
                )
        except StreamError as exc:
            logger.warning("Generation %s failed: %r", generation_id, exc)
            terminal = partial(Error, code=str(exc.code), message=replace_surrogates(exc.message))
        except Exception:
            logger.exception("Generation %s failed", generation_id)
            terminal = partial(
                Error, code=str(StreamErrorCode.INTERNAL_ERROR), message="The model stream failed"
            )
        if reservation is not None:
            # Before the end is visible: its client may start the next reply at once.
            await reservation.release()
        await _ended(generation_id, on_end, end)
        try:
            await writer.close(terminal)
        except Exception as exc:
            # The store failed: end the log if it still can, so that every follower
            # stops at once and reports the store's error.
            failure = store_failure(exc)
            logger.error("Generation %s could not be stored: %r", generation_id, failure)
            self._remember(generation_id, failure)
            with contextlib.suppress(Exception):
                await writer.store.finish(generation_id)

    @staticmethod
    async def _produce(
        source: Any, pipeline: Pipeline, writer: _EventWriter, forward_events: bool
    ) -> None:
        """Feed the source's chunks through the pipeline to the writer.

        The pipeline's held-back tail is delivered last, also when the source fails
        midway, so nothing it accepted is lost; chunks after it is done are dropped.
        Cancellation closes the source (an upstream request stops) and delivers nothing more.
        Text past ``MAX_REPLY_CHARS`` is cut there and ends the reply (``REPLY_TOO_LARGE``,
        the source closed). The text is kept only in the store, never joined here.
        """
        limit: int | None = setting("MAX_REPLY_CHARS")
        size = 0

        def deliver(text: str) -> None:
            nonlocal size
            if text:
                if limit is not None and size + len(text) > limit:
                    if limit > size:
                        writer.add_text(text[: limit - size])
                    raise StreamError(
                        StreamErrorCode.REPLY_TOO_LARGE,
                        f"The reply is longer than {limit} characters; it was cut there",
                    )
                size += len(text)
                writer.add_text(text)
            for event in pipeline.drain_events():
                if forward_events:
                    writer.add_event(event.name, event.data)

        try:
            async with aclosing(as_text_source(source)) as chunks:
                async for chunk in chunks:
                    if pipeline.done:
                        continue
                    text = pipeline.push(chunk)
                    await pipeline.drain()
                    deliver(text)
        except Exception as exc:
            # The model failed mid-reply: the client still gets every character that
            # arrived (unless the reply is over its cap).
            if getattr(exc, "code", None) != StreamErrorCode.REPLY_TOO_LARGE:
                deliver(pipeline.flush())
            raise
        deliver(pipeline.flush())

    def _remember(self, generation_id: str, failure: StreamError) -> None:
        self.failures[generation_id] = failure
        while len(self.failures) > MAX_REMEMBERED_FAILURES:
            self.failures.popitem(last=False)

    async def _watch(
        self, generation_id: str, task: asyncio.Task[None], policy: DisconnectPolicy
    ) -> None:
        """Cancel ``task`` on a cancel request, or once nobody has followed it (here or in
        another process) for ``KEEP_GRACE`` (``keep``) or ``CANCEL_GRACE`` seconds."""
        store = self.store
        grace = float(setting("KEEP_GRACE" if policy == "keep" else "CANCEL_GRACE"))
        started = time.time()
        while not task.done():
            await asyncio.wait({task}, timeout=WATCH_INTERVAL)
            if task.done():
                return
            try:
                if await store.cancel_requested(generation_id):
                    task.cancel()
                elif not self.followers.get(generation_id):
                    watched = await store.last_watched(generation_id) or started
                    if time.time() - watched > grace:
                        logger.info(
                            "Generation %s unwatched for %ss: cancelled", generation_id, grace
                        )
                        task.cancel()
            except StreamError as exc:
                logger.error("Generation %s: the store failed (%r); cancelled", generation_id, exc)
                task.cancel()

    def _forget(self, generation_id: str) -> None:
        running = self.running.pop(generation_id, None)
        if running is not None:
            running.watchdog.cancel()


async def _ended(generation_id: str, on_end: OnEnd | None, end: str) -> None:
    """Await ``on_end(end)`` to its end; its failure is logged, never the generation's.

    A cancel request is repeated until the generation is done (the watchdog), so one may
    arrive while ``on_end`` stores: it is finished all the same, and the terminal event
    is written after it, so no follower waits for an end that never comes.
    """
    if on_end is None:
        return
    storing = asyncio.ensure_future(on_end(end))
    while not storing.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait({storing})
    if not storing.cancelled() and storing.exception() is not None:
        logger.error("Generation %s: on_end failed", generation_id, exc_info=storing.exception())


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


def parse_event_id(value: str) -> tuple[str, int] | None:
    """``"<generation>:<seq>"`` as SSE ids carry it, or ``None`` when it is not one."""
    generation_id, _, seq = value.partition(":")
    if not generation_id or not seq.isdigit():
        return None
    return generation_id, int(seq)
