"""``MessageQueue``: the one hand-over from producers to a stream's reader, safe across threads.

Producers put from anywhere: ``put_nowait`` from any thread (``Stream.send``; past
``max_queue`` waiting items it raises QUEUE_FULL), ``await put`` from a coroutine and
``put_blocking`` from a worker thread (both wait while ``high_water`` items are queued:
that is the back-pressure a slow client puts on a fast source). One reader takes up to
``limit`` items at a time: ``await get`` in an event loop (the ASGI body),
``get_blocking`` in a thread (the WSGI body).

Items live in a deque (atomic appends and pops); every wait is registered under one lock
and the condition is checked again after registering, while a producer checks for
waiters after appending, so neither an item nor a wake-up can be lost between threads.
A waiter in an event loop is woken through its own future (from another thread with
``call_soon_threadsafe``), a waiter in a thread through a condition variable.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from typing import Generic, TypeVar

from .errors import StreamError, StreamErrorCode

T = TypeVar("T")


class _Waiters:
    """The coroutines and threads waiting for one condition of a queue (under its lock)."""

    def __init__(self, lock: threading.Lock) -> None:
        self.condition = threading.Condition(lock)
        self.futures: list[asyncio.Future[None]] = []
        self.threads = 0

    def wake(self) -> None:
        """Wake every waiter; the caller holds the queue's lock."""
        if self.futures:
            running = asyncio._get_running_loop()
            for future in self.futures:
                loop = future.get_loop()
                if loop is running:
                    if not future.done():
                        future.set_result(None)
                elif not loop.is_closed():
                    # RuntimeError: the loop closed meanwhile, so nobody waits there.
                    with contextlib.suppress(RuntimeError):
                        loop.call_soon_threadsafe(_resolve, future)
            self.futures.clear()
        if self.threads:
            self.condition.notify_all()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class MessageQueue(Generic[T]):
    """Items from any number of producers, in order, to one reader; see the module docstring.

    ``close()`` ends the queue once the reader has taken what is queued (optionally
    with a last item, or an error the reader raises after the items); ``abort()`` ends
    it at once (the reader went away): queued items are dropped and producers get
    STREAM_CLOSED.
    """

    def __init__(self, *, high_water: int, max_queue: int | None = None) -> None:
        self.high_water = high_water
        self.max_queue = max_queue
        self._lock = threading.Lock()
        self._items: deque[T] = deque()
        self._closed = False
        self._aborted = False
        self._error: BaseException | None = None
        self._readable = _Waiters(self._lock)
        self._writable = _Waiters(self._lock)

    @property
    def closed(self) -> bool:
        """True once ``close()`` or ``abort()`` was called: no more puts."""
        return self._closed

    @property
    def aborted(self) -> bool:
        """True once ``abort()`` was called: the reader is gone."""
        return self._aborted

    # ------------------------------------------------------------------ producers
    def put_nowait(self, item: T) -> None:
        """Queue ``item`` without waiting (from any thread); QUEUE_FULL past ``max_queue``."""
        with self._lock:
            self._check_open()
            limit = self.max_queue
            if limit is not None and len(self._items) >= limit:
                raise StreamError(
                    StreamErrorCode.QUEUE_FULL,
                    f"{limit} messages already wait for a slow client",
                    {"max_queue": limit},
                )
            self._items.append(item)
            self._readable.wake()

    async def put(self, item: T) -> None:
        """Queue ``item``, then wait while ``high_water`` items are queued (a coroutine)."""
        # The hot path takes no lock: a deque's append is atomic, and a reader registers
        # its wait before it looks at the items again, so either it sees this item or
        # this check sees its wait.
        if self._closed:
            self._check_open()
        items = self._items
        items.append(item)
        readable = self._readable
        if readable.futures or readable.threads:
            with self._lock:
                readable.wake()
        if len(items) < self.high_water:
            return
        while True:
            with self._lock:
                if self._aborted or len(self._items) < self.high_water:
                    return
                future = asyncio.get_running_loop().create_future()
                self._writable.futures.append(future)
            await self._wait(future, self._writable, None)

    def put_blocking(self, item: T) -> None:
        """Queue ``item``, then wait while ``high_water`` items are queued (a thread).

        Raises STREAM_CLOSED on a closed queue, and when it is aborted while waiting.
        """
        with self._lock:
            self._check_open()
            self._items.append(item)
            self._readable.wake()
            waiters = self._writable
            while len(self._items) >= self.high_water and not self._aborted:
                waiters.threads += 1
                try:
                    waiters.condition.wait()
                finally:
                    waiters.threads -= 1
            self._check_open(allow_closed=True)

    def close(self, last: T | None = None, *, error: BaseException | None = None) -> None:
        """No more items after ``last`` (if given); the reader then raises ``error``, if any.

        Idempotent; ignored after ``abort()``.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if last is not None:
                self._items.append(last)
            self._error = error
            self._readable.wake()
            self._writable.wake()

    def abort(self) -> None:
        """The reader is gone: drop the items, refuse puts, wake every producer."""
        with self._lock:
            self._closed = self._aborted = True
            self._items.clear()
            self._readable.wake()
            self._writable.wake()

    def _check_open(self, *, allow_closed: bool = False) -> None:
        if self._aborted or (self._closed and not allow_closed):
            raise StreamError(StreamErrorCode.STREAM_CLOSED, "The stream is closed")

    # --------------------------------------------------------------------- reader
    def take(self, limit: int) -> list[T]:
        """Up to ``limit`` queued items, without waiting (maybe none)."""
        with self._lock:
            return self._take(limit)

    async def get(self, limit: int, timeout: float | None = None) -> list[T] | None:
        """Up to ``limit`` items; ``[]`` after ``timeout`` seconds with none; ``None`` at
        the end (after ``close()`` and the last item, or after ``abort()``)."""
        while True:
            with self._lock:
                if self._items:
                    return self._take(limit)
                if self._closed:
                    self._raise_error()
                    return None
                future = asyncio.get_running_loop().create_future()
                self._readable.futures.append(future)
                if self._items:  # put() appended while the wait was being registered
                    self._readable.futures.remove(future)
                    return self._take(limit)
            if not await self._wait(future, self._readable, timeout):
                return []

    def get_blocking(self, limit: int, timeout: float | None = None) -> list[T] | None:
        """``get`` for a reader in a thread."""
        with self._lock:
            if not self._items and not self._closed:
                waiters = self._readable
                waiters.threads += 1
                try:
                    if not self._items:  # see get()
                        waiters.condition.wait(timeout)
                finally:
                    waiters.threads -= 1
            if self._items:
                return self._take(limit)
            if self._closed:
                self._raise_error()
                return None
            return []

    def _take(self, limit: int) -> list[T]:
        # One item at a time: an append without the lock may happen meanwhile.
        items = self._items
        popleft = items.popleft
        batch = [popleft() for _ in range(min(limit, len(items)))]
        writable = self._writable
        if batch and (writable.futures or writable.threads):
            writable.wake()
        return batch

    def _raise_error(self) -> None:
        """At the end: raise the error ``close()`` was given, once (not after abort)."""
        error, self._error = self._error, None
        if error is not None and not self._aborted:
            raise error

    async def _wait(
        self, future: asyncio.Future[None], waiters: _Waiters, timeout: float | None
    ) -> bool:
        """Await a registered ``future``; False on timeout. Unregisters it on the way out."""
        try:
            if timeout is None:
                await future
            else:
                async with asyncio.timeout(timeout):
                    await future
            return True
        except TimeoutError:
            return False
        finally:
            if not future.done():
                with self._lock:
                    if future in waiters.futures:
                        waiters.futures.remove(future)
                future.cancel()
