"""``Stream``: turn iterables, awaitables, upstream responses or ``send()`` calls into SSE.

Two modes, as in the Elysia Stream plugin:

* automatic: ``Stream(value)`` where ``value`` is anything ``sources.iterables.iterate``
  reads (a sync or async iterable, an awaitable resolving to one, an ``httpx``
  streaming response, a ``str``/``bytes``);
* manual: ``Stream()`` or ``Stream(callback)``; the code calls ``send()`` (from any
  thread), ``close()`` and ``await wait(ms)``.

A ``Stream`` only puts the pieces together: ``sse.py`` frames each message,
``iterate`` reads the input, one ``MessageQueue`` hands the framed messages from any
thread to the body. The body is consumed by one transport (``sse_response``): under ASGI
it writes every message that is ready in one body chunk (at most ``MAX_BATCH``) and never
holds back one that is ready, sends an opening comment at once (daphne sends the headers
only with the first body bytes) and a keep-alive comment after ``STREAMING["KEEPALIVE"]``
seconds of silence. On client disconnect the producer is cancelled and its source closed.
Under WSGI the same queue feeds the sync body (manual mode; sync iterables are read
inline).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import aclosing
from typing import Any

import httpx

from .conf import setting
from .errors import StreamError, StreamErrorCode
from .keepalive import KeepAlive
from .queue import MessageQueue
from .sources.iterables import is_iterable_input, iterate
from .sources.reasoning import REASONING_EVENT, Reasoning
from .sse import (
    KEEPALIVE_COMMENT,
    OPENING_COMMENT,
    ParsedEvent,
    ServerSentEvent,
    encode_fields,
    failure_event,
    serialize_data,
    validate_event,
    validate_retry,
)

Callback = Callable[["Stream"], Any]


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
        if value is None or (callable(value) and not is_iterable_input(value)):
            self._callback: Callback | None = value
            self._source: Any = None
            self.manual = True
        elif is_iterable_input(value):
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
        self._queue: MessageQueue[bytes] = MessageQueue(
            high_water=self._max_batch, max_queue=setting("MAX_QUEUE")
        )
        # send() from several threads: one message is numbered and queued at a time.
        self._send_lock = threading.Lock()
        self._started = False
        self._loop: asyncio.AbstractEventLoop | None = None
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
        return self._queue.closed

    # ------------------------------------------------------------- manual API
    def send(self, data: Any) -> None:
        """Queue one message: text, JSON-able data, a ``ServerSentEvent`` or raw bytes.

        Raises ``StreamError`` (``STREAM_CLOSED``) after ``close()`` or a disconnect, and
        (``QUEUE_FULL``) when ``STREAMING["MAX_QUEUE"]`` messages wait for a slow client.
        Safe to call from any thread: messages keep the order of the calls.
        """
        if self._queue.closed:
            raise StreamError(StreamErrorCode.STREAM_CLOSED, "Cannot send(): the stream is closed")
        with self._send_lock:
            if isinstance(data, bytes | bytearray | memoryview):
                chunk: bytes | None = self._label_text.encode() + bytes(data)
            else:
                chunk = self._encode(data)
            if chunk is not None:
                self._queue.put_nowait(chunk)

    def close(self) -> None:
        """End the stream once the queued messages are written. Idempotent."""
        self._queue.close()

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
        if isinstance(item, ParsedEvent):
            # An upstream's event: forwarded with its name and retry, under our own id.
            item = ServerSentEvent(
                data=item.data,
                event=None if item.event == "message" else item.event,
                retry=item.retry,
            )
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
        if isinstance(item, Reasoning):
            # A source's reasoning (``openai_chat``'s): its own event, never the text.
            if not item:
                return None
            return encode_fields(
                serialize_data({"text": str(item)}),
                event_id=str(next(self._ids)),
                event=REASONING_EVENT,
                retry=self._retry,
            )
        text = serialize_data(item)
        if text is None:
            return None
        return encode_fields(
            text, event_id=str(next(self._ids)), event=self._event, retry=self._retry
        )

    def _error_message(self, exc: BaseException) -> bytes:
        return failure_event(_known_failure(exc), str(next(self._ids)))

    def _fail(self, exc: BaseException) -> None:
        """End the stream with an error message (unless the client already went away)."""
        if not self._queue.aborted:
            self._queue.close(self._error_message(exc))

    # ---------------------------------------------------------------- async body
    def __aiter__(self) -> AsyncIterator[bytes]:
        if self._started:
            raise StreamError(StreamErrorCode.STREAM_CLOSED, "A Stream can be consumed only once")
        self._started = True
        return self._body()

    async def _body(self) -> AsyncIterator[bytes]:
        self._loop = asyncio.get_running_loop()
        self._producer = asyncio.create_task(self._produce())
        queue, limit = self._queue, self._max_batch
        # A keep-alive comment is queued after KEEPALIVE seconds without a write.
        keepalive = KeepAlive(float(setting("KEEPALIVE")), self._queue_keepalive)
        try:
            # The opening comment goes out at once; one scheduler turn first lets events
            # that are ready right away share its write.
            await asyncio.sleep(0)
            yield OPENING_COMMENT + b"".join(queue.take(limit))
            while (batch := await queue.get(limit)) is not None:
                keepalive.sent()
                yield b"".join(batch)
        finally:
            keepalive.cancel()
            await self._shutdown()

    def _queue_keepalive(self) -> None:
        if not self._queue.closed:
            with contextlib.suppress(StreamError):
                self._queue.put_nowait(KEEPALIVE_COMMENT)

    async def _shutdown(self) -> None:
        """Mark closed and stop the producer (its ``finally`` and ``aclose()`` run)."""
        self._queue.abort()
        producer = self._producer
        if producer is not None and not producer.done():
            producer.cancel()
            await asyncio.wait({producer}, timeout=setting("CLEANUP_TIMEOUT"))

    def abort(self) -> None:
        """Stop from any thread (the response was closed): no more sends, producer cancelled."""
        self._queue.abort()
        loop, producer = self._loop, self._producer
        if loop is not None and producer is not None and not loop.is_closed():
            loop.call_soon_threadsafe(producer.cancel)

    async def _produce(self) -> None:
        try:
            if self.manual:
                await self._run_callback()
            else:
                await self._pump()
                self.close()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail(exc)

    async def _run_callback(self) -> None:
        if self._callback is None:
            return
        result = self._callback(self)
        if inspect.isawaitable(result):
            await result

    async def _pump(self) -> None:
        """Frame every item of the automatic-mode source into the queue."""
        queue, encode = self._queue, self._encode
        async with aclosing(iterate(self._source)) as items:
            async for item in items:
                chunk = encode(item)
                if chunk is not None:
                    await queue.put(chunk)

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
        worker = threading.Thread(target=self._sync_callback, daemon=True)
        worker.start()
        queue, limit = self._queue, self._max_batch
        keepalive = float(setting("KEEPALIVE"))
        try:
            while (batch := queue.get_blocking(limit, keepalive)) is not None:
                yield b"".join(batch) if batch else KEEPALIVE_COMMENT
        finally:
            queue.abort()

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
            self._fail(exc)

    def _sync_automatic(self) -> Iterator[bytes]:
        """Under WSGI the source is read in the server's own thread: sync iterables only."""
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
            self._queue.abort()


def _known_failure(exc: BaseException) -> BaseException:
    """An ``openai`` SDK failure (a stream the SDK made) as the ``StreamError`` that
    ``openai_chat`` raises, not a bare ``INTERNAL_ERROR``; anything else as it is. The
    SDK is imported only when the failure is its own."""
    if type(exc).__module__.partition(".")[0] != "openai":
        return exc
    from .sources.openai import sdk_failure

    return sdk_failure(exc) or exc
