"""``iterate(value)``: anything a stream or a model run is given, as one async iterator.

The one input normaliser of the package: ``Stream`` and the model runtime both read
their input through it (the runtime adds its text-only check on top). It accepts

* an async iterable (closed with ``aclose()`` however the reading ends);
* a sync iterable: lists, tuples and the like inline, any other iterator (a generator
  that may block) in a worker thread, handed over through a ``MessageQueue`` with
  back-pressure, so a blocking generator never stalls the event loop;
* an awaitable resolving to any of these, and an async context manager (entered for
  as long as its value is read, like the un-entered ``client.stream(...)`` of httpx);
* ``str`` and ``bytes``: one item;
* an ``httpx.Response``: its events or text pieces, through ``read_upstream``.
"""

from __future__ import annotations

import contextvars
import inspect
import threading
import types
from collections.abc import AsyncGenerator, Iterator
from contextlib import aclosing
from typing import Any

import httpx

from ..conf import setting
from ..queue import MessageQueue
from .upstream import read_upstream

#: Iterables read inline: they hold their items already, so reading them cannot block.
INLINE_ITERABLES = (list, tuple, range, dict, set, frozenset)


def is_iterable_input(value: object) -> bool:
    """True for every kind of value ``iterate`` accepts."""
    return (
        isinstance(value, str | bytes | bytearray | httpx.Response)
        or hasattr(value, "__aiter__")
        or hasattr(value, "__iter__")
        or inspect.isawaitable(value)
        or hasattr(value, "__aenter__")
    )


def iterate(value: Any) -> AsyncGenerator[Any, None]:
    """The items of ``value`` (see the module docstring); ``TypeError`` for anything else.

    Closing this iterator closes the underlying one (for a worker thread: at its next
    item, as a blocking call cannot be interrupted). An async generator is returned as
    it is: it already is one, and its items then pass through no extra layer.
    """
    if isinstance(value, types.AsyncGeneratorType):
        return value
    return _iterate(value)


async def _iterate(value: Any) -> AsyncGenerator[Any, None]:
    if inspect.isawaitable(value):
        value = await value
    if isinstance(value, httpx.Response):
        async with aclosing(read_upstream(value)) as events:
            async for event in events:
                yield event
    elif hasattr(value, "__aenter__") and not hasattr(value, "__aiter__"):
        async with value as entered, aclosing(iterate(entered)) as items:
            async for item in items:
                yield item
    elif isinstance(value, str | bytes | bytearray):
        yield value
    elif hasattr(value, "__aiter__"):
        iterator = aiter(value)
        try:
            async for item in iterator:
                yield item
        finally:
            close = getattr(iterator, "aclose", None) or getattr(iterator, "close", None)
            if close is not None:
                result = close()
                if inspect.isawaitable(result):
                    await result
    elif isinstance(value, INLINE_ITERABLES):
        for item in value:
            yield item
    elif hasattr(value, "__iter__"):
        async with aclosing(_in_worker_thread(iter(value))) as items:
            async for item in items:
                yield item
    else:
        raise TypeError(f"Cannot stream a {type(value).__name__}")


async def _in_worker_thread(iterator: Iterator[Any]) -> AsyncGenerator[Any, None]:
    """Iterate ``iterator`` in its own thread; its items arrive here in batches.

    The thread waits while ``STREAMING["MAX_BATCH"]`` items are unread, and stops (closing
    the iterator) once this generator is closed.
    """
    batch: int = setting("MAX_BATCH")
    queue: MessageQueue[Any] = MessageQueue(high_water=batch)

    def work() -> None:
        try:
            for item in iterator:
                queue.put_blocking(item)
        except BaseException as exc:
            # After abort() the put raised STREAM_CLOSED: nobody reads any more.
            if not queue.aborted:
                queue.close(error=exc)
        finally:
            queue.close()
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    context = contextvars.copy_context()
    threading.Thread(target=context.run, args=(work,), daemon=True).start()
    try:
        while (items := await queue.get(batch)) is not None:
            for item in items:
                yield item
    finally:
        queue.abort()
