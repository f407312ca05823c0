"""``Stream``: turn iterables, awaitables, upstream responses or ``send()`` calls into SSE.

Two modes, as in the Elysia Stream plugin:

* automatic: ``Stream(value)`` where ``value`` is a sync or async iterable, an awaitable
  resolving to one, an ``httpx`` streaming response, or a ``str``/``bytes``;
* manual: ``Stream()`` or ``Stream(callback)``; the code calls ``send()``, ``close()``
  and ``await wait(ms)``.

The body is consumed by one transport (``sse_response``). It writes every event that is
ready in one body chunk and never holds back one that is ready, sends an opening comment
at once (daphne sends the headers only with the first body bytes) and a keep-alive
comment after ``STREAMING["KEEPALIVE"]`` seconds of silence. On client disconnect the
producer is cancelled and its source closed.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx

from .conf import setting
from .errors import StreamError, StreamErrorCode
from .sse import (
    ServerSentEvent,
    SSEParser,
    encode_comment,
    encode_fields,
    serialize_data,
    validate_event,
    validate_retry,
)

logger = logging.getLogger("streaming")

OPENING_COMMENT = encode_comment("stream open")
KEEPALIVE_COMMENT = encode_comment("ping")

Callback = Callable[["Stream"], Any]

_INLINE_ITERABLES = (list, tuple, range, dict, set, frozenset)


def _is_automatic_source(value: object) -> bool:
    return (
        isinstance(value, str | bytes | bytearray | httpx.Response)
        or hasattr(value, "__aiter__")
        or hasattr(value, "__iter__")
        or inspect.isawaitable(value)
        or hasattr(value, "__aenter__")
    )


class Stream:
    """A Server-Sent Events stream; see the module docstring for the two modes.

    ``event`` and ``retry`` are written on every message (change them at any time
    through the attributes of the same name). Every data message gets an id, increasing
    within the stream, so a reconnecting client's ``Last-Event-ID`` names a position.
    """

    def __init__(
        self,
        value: Any = None,
        *,
        event: str | None = None,
        retry: int | None = None,
    ) -> None:
        self._event = validate_event(event)
        self._retry = validate_retry(retry)
        self._label_text = self._make_label()
        if value is None or (callable(value) and not _is_automatic_source(value)):
            self._callback: Callback | None = value
            self._source: Any = None
            self.manual = True
        elif _is_automatic_source(value):
            self._callback = None
            self._source = value
            self.manual = False
        else:
            raise TypeError(
                f"Stream() takes an iterable, an async iterable, an awaitable, an httpx "
                f"response, str, bytes, a callback or nothing; got {type(value).__name__}"
            )
        self._ids = itertools.count(1)
        self._max_batch: int = setting("MAX_BATCH")
        self._max_queue: int = setting("MAX_QUEUE")
        self._buffer: list[bytes] = []
        self._closed = False
        self._started = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._wakeup: asyncio.Event | None = None
        self._space: asyncio.Event | None = None
        self._consumer_waiting = False
        self._room = threading.Event()
        self._condition: threading.Condition | None = None
        self._producer: asyncio.Task[None] | None = None

    # ----------------------------------------------------------------- options
    @property
    def event(self) -> str | None:
        """The event name written on every following message (``None``: no name)."""
        return self._event

    @event.setter
    def event(self, value: str | None) -> None:
        self._event = validate_event(value)
        self._label_text = self._make_label()

    @property
    def retry(self) -> int | None:
        """The reconnection time (ms) written on every following message."""
        return self._retry

    @retry.setter
    def retry(self, value: int | None) -> None:
        self._retry = validate_retry(value)
        self._label_text = self._make_label()

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called, the source ended or the client went away."""
        return self._closed

    # ------------------------------------------------------------- manual API
    def send(self, data: Any) -> None:
        """Queue one message: text, JSON-able data, a ``ServerSentEvent`` or raw bytes.

        Raises ``StreamError`` (``STREAM_CLOSED``) after ``close()`` or a disconnect, and
        (``QUEUE_FULL``) when ``STREAMING["MAX_QUEUE"]`` messages wait for a slow client.
        Safe to call from another thread.
        """
        if self._closed:
            raise StreamError(StreamErrorCode.STREAM_CLOSED, "Cannot send(): the stream is closed")
        if isinstance(data, bytes | bytearray | memoryview):
            chunk: bytes | None = self._label_text.encode() + bytes(data)
        else:
            chunk = self._encode(data)
        if chunk is None:
            return
        limit = self._max_queue
        if len(self._buffer) >= limit:
            raise StreamError(
                StreamErrorCode.QUEUE_FULL,
                f"Cannot send(): {limit} messages already wait for a slow client",
                {"max_queue": limit},
            )
        self._buffer.append(chunk)
        self._notify()

    def close(self) -> None:
        """End the stream once the queued messages are written. Idempotent."""
        if not self._closed:
            self._closed = True
            self._notify()

    async def wait(self, ms: float) -> None:
        """Sleep ``ms`` milliseconds; the stream is untouched."""
        await asyncio.sleep(ms / 1000)

    @property
    def value(self) -> AsyncIterator[bytes]:
        """The encoded body, as an async iterator of bytes (consumed once)."""
        return self.__aiter__()

    # ---------------------------------------------------------------- encoding
    def _make_label(self) -> str:
        """The ``event``/``retry`` lines every message carries, built once per change."""
        label = ""
        if self._event is not None:
            label += f"event: {self._event}\n"
        if self._retry is not None:
            label += f"retry: {self._retry}\n"
        return label

    def _encode(self, item: Any) -> bytes | None:
        if type(item) is str and item and "\n" not in item and "\r" not in item:
            # The hot path (one line of model text), framed without the general encoder.
            return f"id: {next(self._ids)}\n{self._label_text}data: {item}\n\n".encode()
        if isinstance(item, ServerSentEvent):
            text = serialize_data(item.data)
            if text is None and item.comment is None:
                return None
            return encode_fields(
                text,
                event_id=(item.id if item.id is not None else str(next(self._ids)))
                if text is not None
                else None,
                event=validate_event(item.event) or self._event,
                retry=item.retry if item.retry is not None else self._retry,
                comment=item.comment,
            )
        if isinstance(item, bytes | bytearray | memoryview):
            return bytes(item)
        text = serialize_data(item)
        if text is None:
            return None
        return encode_fields(
            text, event_id=str(next(self._ids)), event=self._event, retry=self._retry
        )

    def _error_message(self, exc: BaseException) -> bytes:
        if isinstance(exc, StreamError):
            logger.warning("Stream ended with %r", exc)
            payload = exc.as_dict()
        else:
            logger.exception("Stream source failed", exc_info=exc)
            payload = {"message": "The stream failed", "code": str(StreamErrorCode.INTERNAL_ERROR)}
        return encode_fields(serialize_data(payload), event_id=str(next(self._ids)), event="error")

    # ----------------------------------------------------------- wake-ups
    def _notify(self) -> None:
        if self._condition is not None:
            with self._condition:
                self._condition.notify_all()
            return
        loop, wakeup = self._loop, self._wakeup
        if loop is None or wakeup is None or not self._consumer_waiting:
            return
        self._consumer_waiting = False
        if threading.get_ident() == self._loop_thread:
            wakeup.set()
        elif not loop.is_closed():
            loop.call_soon_threadsafe(wakeup.set)

    def _take(self) -> bytes:
        buffer = self._buffer
        chunk = buffer[0] if len(buffer) == 1 else b"".join(buffer)
        buffer.clear()
        self._room.set()
        if self._space is not None:
            self._space.set()
        return chunk

    async def _put(self, item: Any) -> None:
        """Queue one produced item; pause the producer while a full batch waits."""
        if self._closed:
            raise StreamError(StreamErrorCode.STREAM_CLOSED, "The client went away")
        chunk = self._encode(item)
        if chunk is None:
            return
        buffer = self._buffer
        buffer.append(chunk)
        if self._consumer_waiting:
            self._notify()
        if len(buffer) >= self._max_batch and self._space is not None:
            self._space.clear()
            await self._space.wait()

    # ---------------------------------------------------------------- async body
    def __aiter__(self) -> AsyncIterator[bytes]:
        if self._started:
            raise StreamError(StreamErrorCode.STREAM_CLOSED, "A Stream can be consumed only once")
        self._started = True
        return self._body()

    async def _body(self) -> AsyncIterator[bytes]:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._wakeup = asyncio.Event()
        self._space = asyncio.Event()
        self._producer = asyncio.create_task(self._produce())
        keepalive = float(setting("KEEPALIVE"))
        # The opening comment goes out at once; one scheduler turn first lets events that
        # are ready right away share its write.
        self._buffer.insert(0, OPENING_COMMENT)
        try:
            await asyncio.sleep(0)
            while True:
                if self._buffer:
                    yield self._take()
                    continue
                if self._closed:
                    break
                self._wakeup.clear()
                self._consumer_waiting = True
                if self._buffer or self._closed:
                    self._consumer_waiting = False
                    continue
                try:
                    async with asyncio.timeout(keepalive):
                        await self._wakeup.wait()
                except TimeoutError:
                    yield KEEPALIVE_COMMENT
                finally:
                    self._consumer_waiting = False
        finally:
            await self._shutdown()

    async def _shutdown(self) -> None:
        """Mark closed and stop the producer (its ``finally`` and ``aclose()`` run)."""
        self._closed = True
        self._room.set()
        if self._space is not None:
            self._space.set()
        producer = self._producer
        if producer is not None and not producer.done():
            producer.cancel()
            await asyncio.wait({producer}, timeout=setting("CLEANUP_TIMEOUT"))

    def abort(self) -> None:
        """Stop from any thread (the response was closed): no more sends, producer cancelled."""
        self._closed = True
        self._room.set()
        loop, producer = self._loop, self._producer
        if loop is not None and producer is not None and not loop.is_closed():
            loop.call_soon_threadsafe(producer.cancel)

    async def _produce(self) -> None:
        try:
            if self.manual:
                await self._run_callback()
            else:
                await self._pump(self._source)
                self.close()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not self._closed:
                self._buffer.append(self._error_message(exc))
            self.close()

    async def _run_callback(self) -> None:
        if self._callback is None:
            return
        result = self._callback(self)
        if inspect.isawaitable(result):
            await result

    async def _pump(self, value: Any) -> None:
        """Feed every item of an automatic-mode source to ``_put``."""
        if inspect.isawaitable(value):
            value = await value
        if isinstance(value, httpx.Response):
            await self._pump_response(value)
        elif hasattr(value, "__aenter__") and not hasattr(value, "__aiter__"):
            async with value as entered:
                await self._pump(entered)
        elif isinstance(value, str | bytes | bytearray):
            await self._put(value)
        elif hasattr(value, "__aiter__"):
            await self._pump_async(value)
        elif isinstance(value, _INLINE_ITERABLES):
            for item in value:
                await self._put(item)
        elif hasattr(value, "__iter__"):
            await asyncio.to_thread(self._pump_sync_thread, iter(value))
        else:
            raise TypeError(f"Cannot stream a {type(value).__name__}")

    async def _pump_async(self, iterable: Any) -> None:
        iterator = aiter(iterable)
        try:
            async for item in iterator:
                await self._put(item)
        finally:
            close = getattr(iterator, "aclose", None) or getattr(iterator, "close", None)
            if close is not None:
                result = close()
                if inspect.isawaitable(result):
                    await result

    def _pump_sync_thread(self, iterator: Iterator[Any]) -> None:
        """Iterate a sync iterator in a worker thread, so a blocking one streams too."""
        limit = self._max_batch
        try:
            for item in iterator:
                if self._closed:
                    return
                chunk = self._encode(item)
                if chunk is None:
                    continue
                self._buffer.append(chunk)
                self._notify()
                if len(self._buffer) >= limit:
                    self._room.clear()
                    while self._buffer and not self._closed:
                        self._room.wait(0.5)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    async def _pump_response(self, response: httpx.Response) -> None:
        """Forward an upstream HTTP body: SSE event by event, anything else as text."""
        try:
            if response.status_code >= 400:
                raise StreamError(
                    StreamErrorCode.UPSTREAM_ERROR,
                    f"Upstream answered HTTP {response.status_code}",
                    {"status": response.status_code},
                )
            content_type = response.headers.get("content-type", "")
            if content_type.split(";")[0].strip().lower() == "text/event-stream":
                parser = SSEParser()
                async for raw in response.aiter_bytes():
                    for parsed in parser.feed(raw):
                        await self._put(
                            ServerSentEvent(
                                data=parsed.data,
                                event=None if parsed.event == "message" else parsed.event,
                                retry=parsed.retry,
                            )
                        )
            else:
                async for text in response.aiter_text():
                    await self._put(text)
        except httpx.HTTPError as exc:
            raise StreamError(
                StreamErrorCode.UPSTREAM_ERROR, f"Upstream connection failed: {exc!r}"
            ) from exc
        finally:
            await response.aclose()

    # ----------------------------------------------------------------- sync body
    def __iter__(self) -> Iterator[bytes]:
        """The body for WSGI servers: sync sources and manual ``send()`` from threads."""
        if self._started:
            raise StreamError(StreamErrorCode.STREAM_CLOSED, "A Stream can be consumed only once")
        self._started = True
        return self._sync_body()

    def _sync_body(self) -> Iterator[bytes]:
        yield OPENING_COMMENT
        if not self.manual:
            yield from self._sync_automatic()
            return
        self._condition = threading.Condition()
        worker = threading.Thread(target=self._sync_callback, daemon=True)
        worker.start()
        keepalive = float(setting("KEEPALIVE"))
        try:
            while True:
                with self._condition:
                    if not self._buffer and not self._closed:
                        self._condition.wait(keepalive)
                    if self._buffer:
                        chunk = self._take()
                    elif self._closed:
                        return
                    else:
                        chunk = KEEPALIVE_COMMENT
                yield chunk
        finally:
            self._closed = True

    def _sync_callback(self) -> None:
        try:
            if self._callback is not None:
                result = self._callback(self)
                if inspect.isawaitable(result):
                    close = getattr(result, "close", None)
                    if close is not None:
                        close()
                    raise StreamError(
                        StreamErrorCode.INTERNAL_ERROR,
                        "An async callback needs an ASGI server (daphne or uvicorn)",
                    )
        except Exception as exc:
            if not self._closed:
                self._buffer.append(self._error_message(exc))
            self.close()

    def _sync_automatic(self) -> Iterator[bytes]:
        value = self._source
        try:
            if isinstance(value, str | bytes | bytearray):
                items: Any = [value]
            elif hasattr(value, "__iter__") and not isinstance(value, httpx.Response):
                items = value
            else:
                raise StreamError(
                    StreamErrorCode.INTERNAL_ERROR,
                    f"Streaming a {type(value).__name__} needs an ASGI server "
                    "(daphne or uvicorn); under WSGI only sync iterables stream",
                )
            for item in items:
                chunk = self._encode(item)
                if chunk is not None:
                    yield chunk
        except Exception as exc:
            yield self._error_message(exc)
        finally:
            self._closed = True
