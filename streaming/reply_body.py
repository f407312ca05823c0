"""``ReplyBody``: a followed reply's SSE messages as a response body, encoded in the
response's own task.

``Stream`` reads its source in a producer task and hands the framed messages to the body
through a queue, since its ``send()`` may come from any thread. A reply's events need
none of that: ``Generations.follow`` already waits without polling, so the body reads it
inline and frames each batch where the server asks for the next bytes: one task wake-up
per event fewer, no queue. Keep-alives come from the follower's heartbeat (an empty
batch after ``STREAMING["KEEPALIVE"]`` seconds of silence), so no timer runs per wait.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Sequence
from contextlib import aclosing

from .errors import StreamError, StreamErrorCode
from .sse import (
    KEEPALIVE_COMMENT,
    OPENING_COMMENT,
    ServerSentEvent,
    encode_fields,
    failure_event,
    serialize_data,
    validate_event,
    validate_id,
    validate_retry,
)

#: What a reply body reads: each item the messages of one batch of events; an empty one
#: is a heartbeat (nothing new for a while: a keep-alive comment goes out).
MessageBatches = AsyncGenerator[Sequence[ServerSentEvent]]


def needs_asgi() -> StreamError:
    """The error of a reply asked for under WSGI: it runs on the server's event loop."""
    return StreamError(
        StreamErrorCode.INTERNAL_ERROR, "Following a reply needs an ASGI server (daphne or uvicorn)"
    )


class ReplyBody:
    """The SSE body of ``batches``, with ``event`` and ``retry`` as defaults of every
    message (as ``Stream`` has them). Consumed once, under ASGI.

    ``opening_id`` goes out with the opening comment as an event with an id and no data:
    a client dispatches nothing, but its last event id is set at once, so a reconnect
    before the first message (a slow model's first token) sends it as ``Last-Event-ID``
    and resumes the reply instead of starting another one.

    ``on_close`` is called once, when the response is closed (Django closes every
    response it returned, also after a disconnect) or, failing that, when the body is
    garbage-collected unread.
    """

    __slots__ = ("_batches", "_event", "_on_close", "_opening", "_retry", "_started")

    def __init__(
        self,
        batches: MessageBatches,
        *,
        event: str | None = None,
        retry: int | None = None,
        opening_id: str | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self._on_close = on_close  # first: a refused argument below still releases it
        self._batches = batches
        self._opening = OPENING_COMMENT
        if opening_id is not None:
            self._opening += encode_fields(None, event_id=validate_id(opening_id))
        self._event = validate_event(event)
        self._retry = validate_retry(retry)
        self._started = False

    def close(self) -> None:
        """The response is over: call ``on_close`` (once)."""
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close()

    def __del__(self) -> None:
        # Collected unread and never closed: ``on_close`` all the same (a method, not a
        # ``weakref.finalize`` per body: that took a quarter of a KiB per open reply).
        self.close()

    def __aiter__(self) -> AsyncIterator[bytes]:
        if self._started:
            raise StreamError(StreamErrorCode.STREAM_CLOSED, "A reply body is read only once")
        self._started = True
        return self._body()

    def __iter__(self) -> Iterator[bytes]:
        """Under WSGI: the generation runs on an event loop, so say what is needed."""
        return iter([OPENING_COMMENT, failure_event(needs_asgi())])

    async def _body(self) -> AsyncIterator[bytes]:
        # Daphne sends the headers only with the first body bytes: send them at once.
        yield self._opening
        try:
            async with aclosing(self._batches) as batches:
                async for messages in batches:
                    if not messages:
                        yield KEEPALIVE_COMMENT
                    elif len(messages) == 1:
                        yield self.encode(messages[0])
                    else:
                        yield b"".join(self.encode(message) for message in messages)
        except Exception as exc:
            yield failure_event(exc)

    def encode(self, message: ServerSentEvent) -> bytes:
        """The wire bytes of ``message`` (validated when it was built); nothing for a
        message without data or comment."""
        data = serialize_data(message.data)
        if data is None and message.comment is None:
            return b""
        return encode_fields(
            data,
            event_id=message.id,
            event=message.event or self._event,
            retry=message.retry if message.retry is not None else self._retry,
            comment=message.comment,
        )
