"""``EventWriter``: numbers a generation's events, stores them and hands them to the
followers in this process; ``StoreFlusher``: one writer of the store per process, for the
stores that need a round trip (Redis), batching every reply's new events.

``streaming.generations`` runs the reply and its followers; this module is the part that
turns the pipeline's text into numbered events and decides when each reaches the store
and the followers here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

from .conf import setting
from .errors import StreamError, StreamErrorCode
from .events import Chunk, Event, GenerationEvent, to_record
from .store.base import EventStore

logger = logging.getLogger("streaming")

#: Seconds a source may keep the event loop to itself (chunks ready at once) before the
#: generation lets the followers send what it has so far.
BURST_SLICE = 0.004
#: The same until the reply's first events are out: past it, the generation waits for them.
FIRST_SLICE = 0.0005
#: Seconds, at most, a generation whose source has much text ready at once leaves the
#: event loop to the reply's first events (to be stored, taken by a follower here and
#: given to its connection) before it reads on: every step they take needs a loop turn,
#: and each turn would wait for a slice of the source.
FIRST_WAIT = 0.02
#: Holds in a row that found less than two pieces of text ready after them, before a
#: generation stops holding its text (``EventWriter.hold``) and seals it with a timer,
#: reading on meanwhile. A hold saves wake-ups only when it reads several pieces at once;
#: a source that makes its tokens only when asked (a local model stepped per read, a
#: producer behind a small bounded queue) would make one or two per hold, while a model
#: streaming over a socket may just pause once.
EMPTY_HOLDS = 2
#: Seconds the store flusher waits for more writes before its task ends.
FLUSHER_LINGER = 1.0
#: Events a generation whose store needs a round trip (Redis) hands to its followers here
#: before they are stored, at most: a client that saw them and resumes in another process
#: at once is that far ahead of the store, at most, and waits there for it to catch up.
MAX_UNSTORED = 256


def store_failure(exc: BaseException) -> StreamError:
    """The error a failed store write ends a generation with (its own, when it has one)."""
    if isinstance(exc, StreamError):
        return exc
    return StreamError(StreamErrorCode.STORE_UNAVAILABLE, "The event store failed")


class EventWriter:
    """Numbers a generation's events, writes them to the store, and hands them to the
    followers in this process (no store read, no task per event).

    Text is merged until it is *sealed* into one ``Chunk``: at once when a follower here
    waits for it, else when the event loop next runs, so text ready at once makes few
    events and a token paced by its model goes out alone. With ``FLUSH_INTERVAL_MS``, the
    reply's task ``hold``s the first text of a message for the interval without reading
    its source, then reads what came meanwhile and seals it once the source has no more
    (or, for a source that makes nothing unless asked, a timer seals it: ``EMPTY_HOLDS``).
    The text of an event is merged the same way (``add_text(text, name)``: the reasoning's
    ``{"text": ...}`` pieces), in the same seals: text of another kind, or another event,
    ends a run, which becomes its own event then (so the order stays exactly as added)
    and goes out with the seal.
    A store that appends without waiting (``append_now``, the memory store) is written
    inline, and followers here get each event once it is stored. Another (Redis) is
    written by the process's ``StoreFlusher``, one round trip for every reply with new
    events gathered over ``STORE_BATCH_MS``: followers here are handed events before they
    are stored (up to ``MAX_UNSTORED`` of them), so that window delays no token, and the
    terminal event only once everything is stored (unless ``hand_end`` gave it first: a
    reply cut while the process drains). A client that resumes elsewhere in
    between finds the store behind its cursor and waits for it (``Generations.has_more``).
    A failed write is kept in ``failure`` and reported to ``on_failure`` at once.
    """

    __slots__ = (
        "base",
        "due",
        "empty_holds",
        "ended",
        "ending",
        "events",
        "failure",
        "flushed",
        "flusher",
        "generation_id",
        "going_out",
        "held",
        "inline",
        "interval",
        "limit",
        "on_failure",
        "out",
        "pending",
        "readers",
        "run",
        "sealing",
        "seq",
        "size",
        "split",
        "store",
        "stored_seq",
        "text",
        "waiters",
        "writing",
    )

    def __init__(
        self,
        store: EventStore,
        generation_id: str,
        flusher: StoreFlusher,
        interval: float,
    ) -> None:
        self.store = store
        self.generation_id = generation_id
        self.flusher = flusher
        self.interval = interval
        #: Whether the store is written inline (memory), else by the flusher (Redis).
        self.inline = store.appends_now
        self.seq = 0
        #: Sealed events not yet stored.
        self.pending: list[GenerationEvent] = []
        #: Text after the last sealed event, joined once when it is sealed.
        self.text: list[str] = []
        #: What ``text`` is sealed as: ``None`` a ``Chunk``, else an event of that name
        #: with data ``{"text": ...}``.
        self.run: str | None = None
        #: Pieces of text in runs ended since the last seal (for ``hold``'s count).
        self.split = 0
        self.sealing: asyncio.Handle | None = None
        #: Whether the text waits out ``interval`` in ``hold`` now, and how many holds in a
        #: row read less than two pieces after them (at ``EMPTY_HOLDS``, a timer seals).
        self.held = False
        self.empty_holds = 0
        #: ``loop.time()`` by which text waiting to be sealed should be: past it, the
        #: source is hogging the event loop and the generation lets it run.
        self.due = 0.0
        self.writing = False
        #: Resolved when a write ends (``close`` waits for the one on its way).
        self.flushed: asyncio.Future[None] | None = None
        self.failure: StreamError | None = None
        self.on_failure: Callable[[], object] = _ignore
        # For the followers here: the events handed over after ``base`` (kept while
        # someone here reads them, and until they are stored), the futures of those
        # waiting, and whether the log ended.
        self.events: list[GenerationEvent] = []
        self.base = 0
        #: The seq of the last event in the store.
        self.stored_seq = 0
        self.readers = 0
        self.waiters: list[asyncio.Future[None]] = []
        self.ended = False
        #: Whether the reply's first events are out (a follower here gave them to its
        #: connection), or the generation stopped waiting for that.
        self.out = False
        self.going_out: asyncio.Future[None] | None = None
        #: The terminal event, once ``hand_end`` gave it to the followers here.
        self.ending: GenerationEvent | None = None

    def add_text(self, text: str, name: str | None = None) -> None:
        """Merge reply text (sealed as one chunk event with what follows at once); with
        ``name``, the text of events ``name`` (sealed as one event ``{"text": ...}``)."""
        if name is not self.run and name != self.run:
            self._end_run(name)
        self.text.append(text)
        if self.sealing is not None or self.held or self.failure is not None:
            return
        if (
            self.waiters
            and not self.interval
            # not too far ahead of the store to hand it over before it is stored
            and (self.base + len(self.events) - self.stored_seq < MAX_UNSTORED or not self.flushing)
        ):
            self._seal()  # a follower waits: hand the text over now
            return
        loop = asyncio.get_running_loop()
        if self.interval:
            if self.empty_holds < EMPTY_HOLDS:
                self.held = True  # the reply's task waits it out: ``hold``
                self.due = loop.time() + self.interval
            else:
                self.sealing = loop.call_later(self.interval, self._seal)
                self.due = loop.time() + max(self.interval, BURST_SLICE)
            return
        self.sealing = loop.call_soon(self._seal)
        self.due = loop.time() + (BURST_SLICE if self.out else FIRST_SLICE)

    async def hold(self) -> None:
        """``FLUSH_INTERVAL_MS``: wait out the interval of the text added first, without
        reading the source, then let the reply read what its model sent meanwhile (from a
        socket's buffer: one wake-up of the reply for all of it, not one per token) and
        seal it once the source has no more ready."""
        loop = asyncio.get_running_loop()
        await asyncio.sleep(self.due - loop.time())
        self.held = False
        if self.text and self.sealing is None and self.failure is None:
            self.sealing = loop.call_soon(self._seal_drained, self.split + len(self.text))
            self.due = loop.time() + (BURST_SLICE if self.out else FIRST_SLICE)

    def _seal_drained(self, held: int) -> None:
        """Seal the text read after a hold, counting the holds in a row that read less
        than two pieces."""
        read = self.split + len(self.text) - held
        self.empty_holds = self.empty_holds + 1 if read < 2 else 0
        self._seal()

    def add_event(self, name: str, data: Any) -> None:
        self._close_text()
        self.seq += 1
        self.pending.append(Event(self.seq, name, data))
        self._write()

    @property
    def handed(self) -> int:
        """The seq of the last event handed to the followers here."""
        return self.base + len(self.events)

    @property
    def flushing(self) -> bool:
        """Whether events wait for the flusher: text is merged until it writes them."""
        return bool(self.pending) or self.writing

    def hogging(self, now: float) -> bool:
        """Whether text has waited to be sealed for longer than it should at ``now``."""
        return self.sealing is not None and now >= self.due

    async def give_way(self) -> None:
        """The source keeps the event loop to itself: let what is merged so far go out.

        The first time, wait (at most ``FIRST_WAIT``) until a follower here has given the
        reply's first events to its connection, then one more turn, in which the server
        writes them: a burst's first text reaches the client within a few milliseconds,
        not after a slice of the source per step it takes. Then one turn per slice.
        """
        if not self.out:
            loop = asyncio.get_running_loop()
            self.going_out = loop.create_future()
            timer = loop.call_later(FIRST_WAIT, resolve, self.going_out)
            try:
                await self.going_out
            finally:
                timer.cancel()
                self.going_out = None
                self.out = True
        await asyncio.sleep(0)

    def passed_on(self) -> None:
        """A follower here came back for more after giving events to its connection."""
        self.out = True
        if self.going_out is not None:
            resolve(self.going_out)

    @property
    def fresh(self) -> bool:
        """Whether nothing of the reply is stored yet."""
        return not self.stored_seq

    def _close_text(self) -> None:
        self.held = False
        if self.sealing is not None:
            self.sealing.cancel()
            self.sealing = None
        if self.text:
            # (``_number_run`` written out: one call fewer per paced token.)
            self.seq += 1
            if self.run is None:
                self.pending.append(Chunk(self.seq, "".join(self.text)))
            else:
                self.pending.append(Event(self.seq, self.run, {"text": "".join(self.text)}))
            self.text = []
        self.split = 0

    def _number_run(self) -> None:
        """The text merged so far becomes its event (``run``'s kind), numbered now."""
        self.seq += 1
        text = "".join(self.text)
        if self.run is None:
            self.pending.append(Chunk(self.seq, text))
        else:
            self.pending.append(Event(self.seq, self.run, {"text": text}))
        self.text = []

    def _end_run(self, name: str | None) -> None:
        """Text of another kind than the run's comes (``name``'s): the run so far becomes
        its event, stored with the rest when the text is sealed (its seal, hold or timer
        is left as it is, so neither waits longer than text would)."""
        if self.text:
            self.split += len(self.text)
            self._number_run()
        self.run = name

    def _seal(self) -> None:
        self._close_text()
        self._write()

    def _write(self) -> None:
        """Store the pending events: inline when the store can, else through the flusher
        (and hand them over now)."""
        if not self.pending or self.failure is not None:
            return
        if not self.inline:
            self._hand(self.pending)
            if not self.writing:
                self.flusher.mark(self)
            return
        if self.writing:
            return
        batch = self.pending
        try:
            last = self.store.append_now(self.generation_id, list(map(to_record, batch)))
        except Exception as exc:
            self.pending = []
            self.fail(exc)
            return
        if last is None:
            self.flusher.mark(self)
            return
        self.pending = []
        self.stored(batch, last)

    def stored(self, batch: list[GenerationEvent], last: int) -> None:
        """``batch`` is in the store (its last seq there is ``last``): hand it over here."""
        if last != batch[-1].seq:
            self.fail(
                StreamError(
                    StreamErrorCode.INTERNAL_ERROR,
                    f"The log of {self.generation_id} has another writer (seq {last}, not "
                    f"{batch[-1].seq})",
                )
            )
            return
        self.stored_seq = last
        handed = self.base + len(self.events)
        if batch[0].seq == handed + 1:  # none handed yet (the memory store): all at once
            self.events.extend(batch)
            self.wake()
        elif last > handed:
            self._hand(batch)
        if self.pending:
            self._hand(self.pending)
        if not self.readers:
            self.trim(last)
        if self.flushed is not None:
            resolve(self.flushed)

    def _hand(self, batch: list[GenerationEvent]) -> None:
        """Hand the followers here the events of ``batch`` they were not handed yet (the
        store's order is the seq's, so those are its last ones); before they are stored
        only as far as ``MAX_UNSTORED`` allows."""
        handed = self.base + len(self.events)
        new = batch[-1].seq - handed
        if new <= 0 or new > len(batch):
            return  # nothing new, or not the next ones (held back: handed once stored)
        start = len(batch) - new
        if batch[-1].seq > self.stored_seq:
            new = min(new, MAX_UNSTORED - (handed - self.stored_seq))
            if new <= 0:
                return
        self.events += batch[start : start + new]
        self.wake()

    def trim(self, seq: int) -> None:
        """Nobody here needs the events up to ``seq`` again: drop those that are stored
        (a follower that comes later reads them from the store)."""
        upto = min(seq, self.stored_seq)
        if upto > self.base:
            del self.events[: upto - self.base]
            self.base = upto

    def fail(self, exc: BaseException) -> None:
        if self.failure is not None:
            return
        if not isinstance(exc, StreamError):
            logger.error("Generation %s: the event store failed", self.generation_id, exc_info=exc)
        self.failure = store_failure(exc)
        self.pending, self.text = [], []
        self.on_failure()
        self.wake()
        for future in (self.going_out, self.flushed):
            if future is not None:
                resolve(future)

    def wake(self) -> None:
        # In place: ``set_result`` only schedules the waiters, so none is added meanwhile.
        for future in self.waiters:
            if not future.done():
                future.set_result(None)
        self.waiters.clear()

    def waiting(self) -> asyncio.Future[None]:
        """A future done once something is handed over, the log ends or a write fails.
        The follower awaits it itself, not through a coroutine of ours (one fewer object
        per token and per keep-alive), and calls ``stop_waiting`` when it stops waiting."""
        future = asyncio.get_running_loop().create_future()
        self.waiters.append(future)
        return future

    def stop_waiting(self, future: asyncio.Future[None]) -> None:
        """``future`` from ``waiting`` is no longer awaited (its follower was closed or
        cancelled): drop it, so a reply whose model stalls keeps no waiters of followers
        gone, however many come and go."""
        future.cancel()
        with contextlib.suppress(ValueError):
            self.waiters.remove(future)

    def hand_end(self, terminal: Callable[[int], GenerationEvent]) -> None:
        """Number the terminal event ``terminal(seq)`` now and hand it to the followers
        here after everything added so far, before any of it is stored (as far as
        ``MAX_UNSTORED`` allows): a store that hangs keeps them from their end no longer.
        ``close`` then stores it."""
        if self.failure is not None:
            return
        self._close_text()
        self.seq += 1
        self.ending = terminal(self.seq)
        self._hand([*self.pending, self.ending])

    async def close(self, terminal: Callable[[int], GenerationEvent]) -> None:
        """Write everything added so far, then the terminal event ``terminal(seq)`` (or
        the one ``hand_end`` numbered), and finish the log. A failed write raises the
        store's error."""
        self._close_text()
        while self.writing and self.failure is None:
            self.flushed = asyncio.get_running_loop().create_future()
            try:
                await self.flushed
            finally:
                self.flushed = None
        if self.failure is not None:
            raise self.failure
        if self.ending is None:
            self.seq += 1
            self.ending = terminal(self.seq)
        batch = [*self.pending, self.ending]
        self.pending = []
        self.writing = True
        # With the other replies' writes (one round trip, never waiting for Redis's pool).
        records = {self.generation_id: [to_record(e) for e in batch]}
        last = (await self.store.append_batches(records, finish=records))[self.generation_id]
        if isinstance(last, StreamError):
            raise last
        self.stored(batch, last)
        if self.failure is not None:
            raise self.failure

    def end(self) -> None:
        """The generation is over: followers here stop once they have read everything."""
        if self.sealing is not None:
            self.sealing.cancel()
            self.sealing = None
        self.ended = True
        self.wake()


class StoreFlusher:
    """Writes the new events of every reply of this process whose store must wait (Redis):
    one task, one ``append_batches`` call (one round trip) for all of them at a time,
    gathering for ``STORE_BATCH_MS`` what the other replies add before it writes."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.window = float(setting("STORE_BATCH_MS") or 0) / 1000
        self.dirty: dict[str, EventWriter] = {}
        self.task: asyncio.Task[None] | None = None
        self.wakeup: asyncio.Future[None] | None = None

    def mark(self, writer: EventWriter) -> None:
        self.dirty[writer.generation_id] = writer
        if self.wakeup is not None and not self.wakeup.done():
            self.wakeup.set_result(None)
        elif self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self.dirty:
                # Stay a moment for the next events (no task per write), then go.
                self.wakeup = loop.create_future()
                loop.call_later(FLUSHER_LINGER, resolve, self.wakeup)
                await self.wakeup
                self.wakeup = None
                if not self.dirty:
                    return
            if self.window and not any(w.fresh for w in self.dirty.values()):
                # (A reply's first events go at once: they are what its client waits for.)
                await asyncio.sleep(self.window)
            writers = [w for w in self.dirty.values() if w.pending and not w.writing]
            self.dirty = {}
            if not writers:
                continue
            batches = {w.generation_id: w.pending for w in writers}
            for writer in writers:
                writer.pending = []
                writer.writing = True
            results: Mapping[str, int | BaseException]
            try:
                results = await self.store.append_batches(
                    {key: [to_record(e) for e in batch] for key, batch in batches.items()}
                )
            except Exception as exc:
                results = {key: exc for key in batches}
            except asyncio.CancelledError:
                # The loop is closing: no writer may wait for this write any longer.
                stopped = StreamError(
                    StreamErrorCode.STORE_UNAVAILABLE, "The write to the event store was stopped"
                )
                for writer in writers:
                    writer.writing = False
                    writer.fail(stopped)
                raise
            for writer in writers:
                writer.writing = False
                result = results[writer.generation_id]
                if isinstance(result, BaseException):
                    writer.fail(result)
                else:
                    writer.stored(batches[writer.generation_id], result)
                    if writer.pending:
                        self.dirty[writer.generation_id] = writer


def _ignore() -> None:
    """What a writer calls on a failed write until its generation says otherwise."""


def resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
