"""``ReplyBody``: a followed reply's events as an SSE response body, framed in the
response's own task.

``Stream`` reads its source in a producer task and hands the framed messages to the body
through a queue, since its ``send()`` may come from any thread. A reply's events need
none of that: ``Generations.follow`` already waits without polling, so the body reads it
inline and frames each batch where the server asks for the next bytes: no queue, and no
generator of ours between the follower and the server, which resumes the body once per
token. Keep-alives come from the follower's heartbeat (an empty batch after
``STREAMING["KEEPALIVE"]`` seconds of silence), so no timer runs per wait. How a batch is
written is a ``ReplyFrames``: our SSE messages (``SSEFrames``) or another protocol's.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from contextlib import aclosing
from typing import TYPE_CHECKING

from .conf import setting
from .errors import StreamError, StreamErrorCode
from .events import TERMINAL, Chunk, GenerationEvent
from .protocols import SSEMessages, WireProtocol
from .protocols.sse import chunk_json
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

if TYPE_CHECKING:
    from .generations import Generations


def needs_asgi() -> StreamError:
    """The error of a reply asked for under WSGI: it runs on the server's event loop."""
    return StreamError(
        StreamErrorCode.INTERNAL_ERROR, "Following a reply needs an ASGI server (daphne or uvicorn)"
    )


class ReplyFrames(abc.ABC):
    """The bytes of a followed reply: those of each batch of its events, and of a
    failure outside them."""

    __slots__ = ()

    @abc.abstractmethod
    def batch(self, events: list[GenerationEvent]) -> bytes:
        """The messages of ``events`` (never empty), framed."""

    @abc.abstractmethod
    def failure(self, error: StreamError, last: int) -> bytes:
        """The message of a failure after the client's event ``last`` (a lost store, a
        cursor the store no longer has)."""


class SSEFrames(ReplyFrames):
    """The SSE messages of ``protocol`` for the reply ``generation_id``, with ``event``
    and ``retry`` as defaults of every message (as ``Stream`` has them)."""

    __slots__ = ("_token_prefix", "event", "generation_id", "protocol", "retry")

    def __init__(
        self,
        protocol: WireProtocol[ServerSentEvent],
        generation_id: str,
        *,
        event: str | None = None,
        retry: int | None = None,
    ) -> None:
        self.protocol = protocol
        self.generation_id = generation_id
        self.event = validate_event(event)
        self.retry = validate_retry(retry)
        #: Our own messages with no defaults: a paced token (one chunk) is framed here,
        #: the same bytes as through the protocol, without a message object per token.
        self._token_prefix: str | None = None
        if (
            type(protocol) is SSEMessages
            and protocol.chunk_message is chunk_json
            and event is None
            and retry is None
        ):
            self._token_prefix = f"id: {validate_id(generation_id)}:"

    def batch(self, events: list[GenerationEvent]) -> bytes:
        if self._token_prefix is not None and len(events) == 1 and type(events[0]) is Chunk:
            token = events[0]
            return f"{self._token_prefix}{token.seq}\ndata: {chunk_json(token.text)}\n\n".encode()
        messages = self.protocol.messages(self.generation_id, events)
        return b"".join([self.encode(message) for message in messages])

    def failure(self, error: StreamError, last: int) -> bytes:
        return self.encode(self.protocol.failure(error, self.generation_id, last))

    def encode(self, message: ServerSentEvent) -> bytes:
        """The wire bytes of ``message`` (validated when it was built); nothing for a
        message without data or comment."""
        data = serialize_data(message.data)
        if data is None and message.comment is None:
            return b""
        return encode_fields(
            data,
            event_id=message.id,
            event=message.event or self.event,
            retry=message.retry if message.retry is not None else self.retry,
            comment=message.comment,
        )


class ReplyBody:
    """The SSE body of a followed reply: ``events`` (``Generations.follow``, after the
    client's event ``after``) written by ``frames``. Consumed once, under ASGI.

    ``opening_id`` goes out with the opening comment as an event with an id and no data:
    a client dispatches nothing, but its last event id is set at once, so a reconnect
    before the first message (a slow model's first token) sends it as ``Last-Event-ID``
    and resumes the reply instead of starting another one.

    ``on_cut`` is awaited when the body stops before the reply's end (its client went
    away): ``SSEView`` cancels the reply there, unless its policy keeps it. ``on_close``
    is called once, when the response is closed (Django closes every response it
    returned, also after a disconnect) or, failing that, when the body is
    garbage-collected unread.
    """

    __slots__ = ("_after", "_events", "_frames", "_on_close", "_on_cut", "_opening", "_started")

    def __init__(
        self,
        events: AsyncGenerator[list[GenerationEvent]],
        frames: ReplyFrames,
        *,
        after: int = 0,
        opening_id: str | None = None,
        on_cut: Callable[[], Awaitable[object]] | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self._on_close = on_close  # first: a refused argument below still releases it
        self._events = events
        self._frames = frames
        self._after = after
        self._on_cut = on_cut
        self._opening = OPENING_COMMENT
        if opening_id is not None:
            self._opening += encode_fields(None, event_id=validate_id(opening_id))
        self._started = False

    @classmethod
    def following(
        cls,
        generations: Generations,
        generation_id: str,
        owner: str,
        frames: ReplyFrames,
        *,
        after: int = 0,
        opening_id: str | None = None,
        on_cut: Callable[[], Awaitable[object]] | None = None,
    ) -> ReplyBody:
        """The body of ``owner``'s reply ``generation_id`` after ``after``: a keep-alive
        after ``STREAMING["KEEPALIVE"]`` seconds of silence, and its follower counted from
        now (``Generations.expect_follower``), so that the reply is not taken for unwatched
        before the server starts reading."""
        heartbeat = float(setting("KEEPALIVE"))
        return cls(
            generations.follow(generation_id, owner, after, heartbeat=heartbeat),
            frames,
            after=after,
            opening_id=opening_id,
            on_cut=on_cut,
            on_close=generations.expect_follower(generation_id),
        )

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
        frames = self._frames
        last, ended = self._after, False
        try:
            async with aclosing(self._events) as batches:
                async for events in batches:
                    if not events:
                        yield KEEPALIVE_COMMENT
                        continue
                    last = events[-1].seq
                    ended = isinstance(events[-1], TERMINAL)
                    yield frames.batch(events)
        except StreamError as exc:
            ended = True  # the client may resume (elsewhere): not a reason to cancel
            yield frames.failure(exc, last)
        except Exception as exc:
            yield failure_event(exc)
        finally:
            if not ended and self._on_cut is not None:
                await self._on_cut()
