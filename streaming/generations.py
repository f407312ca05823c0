"""Generations: a model reply that runs as its own task and outlives its connection.

A generation drives a text source through an extractor pipeline (``run_generation``) and
writes what comes out to the event store, with increasing sequence numbers:
``{"type": "chunk", "text"}`` (text ready at once is merged into one event),
``{"type": "event", "name", "data"}`` (extractor events), then exactly one of
``{"type": "complete", "text"}``, ``{"type": "error", "code", "message"}`` or
``{"type": "cancelled"}``. Transports *follow* the store from a cursor, so a client that
reconnects gets exactly the events it missed, from any process sharing the store.

Policies on disconnect: ``cancel`` stops the generation when its client goes away;
``keep`` lets it run while someone followed it within ``KEEP_GRACE`` seconds. A cancel
request stops it in whichever process runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .conf import setting
from .errors import StreamError, StreamErrorCode
from .extractors import Pipeline, ValidationStreamExtractor
from .runtime import run_generation
from .store import get_store
from .store.base import EventStore, StoredEvent

logger = logging.getLogger("streaming")

DisconnectPolicy = Literal["cancel", "keep"]

#: Event types that end a generation.
TERMINAL = frozenset({"complete", "error", "cancelled"})
#: Seconds a follower waits on the store before it checks in again.
FOLLOW_POLL = 1.0
#: Seconds between two watchdog checks (cancel requests, unwatched ``keep`` generations).
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


@dataclass
class _Running:
    task: asyncio.Task[None]
    watchdog: asyncio.Task[None]


class _EventWriter:
    """Appends a generation's events, merging text that arrives while a write is in flight.

    With an in-memory store a write never waits; with Redis, text that arrives during a
    round trip goes out in the next one, so the model is never held back by the store.
    """

    def __init__(self, store: EventStore, generation_id: str) -> None:
        self.store = store
        self.generation_id = generation_id
        self.pending: list[dict[str, Any]] = []
        #: Text after the last pending event, joined once when it is written.
        self.text: list[str] = []
        self.writing: asyncio.Task[None] | None = None

    def add_text(self, text: str) -> None:
        self.text.append(text)
        self._kick()

    def add_event(self, name: str, data: Any) -> None:
        self._close_text()
        self.pending.append({"type": "event", "name": name, "data": data})
        self._kick()

    def _close_text(self) -> None:
        if self.text:
            self.pending.append({"type": "chunk", "text": "".join(self.text)})
            self.text = []

    def _kick(self) -> None:
        if self.writing is None or self.writing.done():
            self.writing = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        while self.pending or self.text:
            self._close_text()
            batch, self.pending = self.pending, []
            await self.store.append_many(self.generation_id, batch)

    async def close(self) -> None:
        """Wait until everything added so far is stored (errors of the store propagate)."""
        if self.writing is not None:
            await self.writing


class Generations:
    """The generations this process runs, and the way to follow any generation."""

    def __init__(self, store: EventStore | None = None) -> None:
        self._store = store
        self.running: dict[str, _Running] = {}

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
    ) -> str:
        """Start a generation; return its id. It runs until done, cancelled or unwatched."""
        generation_id = uuid.uuid4().hex
        store = self.store
        await store.create(generation_id, owner=owner)
        writer = _EventWriter(store, generation_id)
        _wire_validation(pipeline, writer, forward_events)
        task = asyncio.create_task(self._run(generation_id, source, pipeline, writer))
        watchdog = asyncio.create_task(self._watch(generation_id, task, policy))
        self.running[generation_id] = _Running(task, watchdog)
        task.add_done_callback(lambda _: self._forget(generation_id))
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

    async def follow(
        self, generation_id: str, owner: str, after: int = 0
    ) -> AsyncIterator[list[StoredEvent]]:
        """The events after ``after``, in batches, until the terminal one (included)."""
        await self.check_owner(generation_id, owner)
        store = self.store
        touched = 0.0
        while True:
            now = time.monotonic()
            if now - touched >= WATCH_INTERVAL / 2:
                await store.touch(generation_id)
                touched = now
            events = await store.read(generation_id, after, timeout=FOLLOW_POLL)
            if events:
                yield events
                if events[-1].data["type"] in TERMINAL:
                    return
                after = events[-1].seq
            elif await store.is_finished(generation_id):
                return

    # ----------------------------------------------------------------- running
    async def _run(
        self, generation_id: str, source: Any, pipeline: Pipeline, writer: _EventWriter
    ) -> None:
        terminal: dict[str, Any]
        try:
            full = await run_generation(
                source, pipeline, lambda text, _id: writer.add_text(text), message_id=generation_id
            )
            terminal = {"type": "complete", "text": full}
        except asyncio.CancelledError:
            terminal = {"type": "cancelled"}
        except StreamError as exc:
            logger.warning("Generation %s failed: %r", generation_id, exc)
            terminal = {"type": "error", "code": str(exc.code), "message": exc.message}
        except Exception:
            logger.exception("Generation %s failed", generation_id)
            terminal = {
                "type": "error",
                "code": str(StreamErrorCode.INTERNAL_ERROR),
                "message": "The model stream failed",
            }
        try:
            await writer.close()
            await writer.store.append(generation_id, terminal)
            await writer.store.finish(generation_id)
        except StreamError as exc:
            # The store is gone: followers get the same error from their reads.
            logger.error("Generation %s could not be stored: %r", generation_id, exc)

    async def _watch(
        self, generation_id: str, task: asyncio.Task[None], policy: DisconnectPolicy
    ) -> None:
        """Cancel ``task`` on a cancel request, or (``keep``) once nobody follows it."""
        store = self.store
        grace = float(setting("KEEP_GRACE"))
        started = time.time()
        while not task.done():
            await asyncio.wait({task}, timeout=WATCH_INTERVAL)
            if task.done():
                return
            try:
                if await store.cancel_requested(generation_id):
                    task.cancel()
                elif policy == "keep":
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


def _wire_validation(pipeline: Pipeline, writer: _EventWriter, forward_events: bool) -> None:
    """Route ``ValidationStreamExtractor`` output that has no callback into the store."""
    for extractor in pipeline.extractors:
        if not isinstance(extractor, ValidationStreamExtractor):
            continue
        if extractor.on_chunk is None:
            extractor.on_chunk = lambda text, _field, _so_far: writer.add_text(text)
        if forward_events and extractor.on_event is None:
            extractor.on_event = lambda event: writer.add_event(str(event["event_type"]), event)


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


def merge_chunks(batch: list[StoredEvent]) -> list[StoredEvent]:
    """``batch`` with each run of ``chunk`` events merged into one, numbered as its last:
    the protocols are about text, so a client resuming after that number misses nothing."""
    merged: list[StoredEvent] = []
    text: list[str] = []
    for index, stored in enumerate(batch):
        if stored.data["type"] != "chunk":
            merged.append(stored)
            continue
        text.append(stored.data["text"])
        following = batch[index + 1] if index + 1 < len(batch) else None
        if following is None or following.data["type"] != "chunk":
            merged.append(StoredEvent(stored.seq, {"type": "chunk", "text": "".join(text)}))
            text.clear()
    return merged


def parse_event_id(value: str) -> tuple[str, int] | None:
    """``"<generation>:<seq>"`` as SSE ids carry it, or ``None`` when it is not one."""
    generation_id, _, seq = value.partition(":")
    if not generation_id or not seq.isdigit():
        return None
    return generation_id, int(seq)


def terminal_error(data: Mapping[str, Any]) -> StreamError:
    """The ``StreamError`` an ``error`` or ``cancelled`` event stands for."""
    if data["type"] == "cancelled":
        return StreamError(StreamErrorCode.ABORTED, "The reply was cancelled")
    return StreamError(data["code"], data["message"])
