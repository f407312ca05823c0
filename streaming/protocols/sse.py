"""Our SSE messages: ``{"chunk": text}``, ``{"done": true}``, ``{"error", "code"}``, and
extractor events as named SSE events, each with the id ``<generation>:<seq>`` that a
reconnect sends back as ``Last-Event-ID``."""

from __future__ import annotations

from collections.abc import Callable
from json.encoder import encode_basestring
from typing import Any

from ..errors import StreamError, StreamErrorCode
from ..events import Cancelled, Chunk, Complete, Error, Event
from ..shutdown import SHUTDOWN_RETRY_MS
from ..sse import ServerSentEvent, message_with_id, validate_id
from .base import WireProtocol


def chunk_data(text: str) -> Any:
    return {"chunk": text}


def chunk_json(text: str) -> str:
    """``chunk_data(text)`` already as its compact JSON (the ``data`` line of one message
    a token), written directly instead of through the JSON encoder's per-key checks."""
    return '{"chunk":' + encode_basestring(text) + "}"


def done_data() -> Any:
    return {"done": True}


def error_data(error: StreamError) -> Any:
    return {"error": error.message, "code": str(error.code)}


class SSEMessages(WireProtocol[ServerSentEvent]):
    """Our SSE messages; the three data builders are ``SSEView``'s message hooks."""

    def __init__(
        self,
        chunk_message: Callable[[str], Any] = chunk_data,
        done_message: Callable[[], Any] = done_data,
        error_message: Callable[[StreamError], Any] = error_data,
    ) -> None:
        # The usual shape goes out pre-encoded: a str is sent as is.
        self.chunk_message = chunk_json if chunk_message is chunk_data else chunk_message
        self.done_message = done_message
        self.error_message = error_message
        #: The generation id last checked as a valid SSE id (its messages then skip it).
        self._checked: str | None = None

    def chunk(self, generation_id: str, event: Chunk) -> list[ServerSentEvent]:
        if generation_id is not self._checked:  # once per reply, not per token
            validate_id(generation_id)
            self._checked = generation_id
        return [message_with_id(self.chunk_message(event.text), f"{generation_id}:{event.seq}")]

    def event(self, generation_id: str, event: Event) -> list[ServerSentEvent]:
        return [ServerSentEvent(event.data, event=event.name, id=f"{generation_id}:{event.seq}")]

    def complete(self, generation_id: str, event: Complete) -> list[ServerSentEvent]:
        return [ServerSentEvent(self.done_message(), id=f"{generation_id}:{event.seq}")]

    def error(self, generation_id: str, event: Error) -> list[ServerSentEvent]:
        return [self._end(generation_id, event.seq, event.as_error())]

    def cancelled(self, generation_id: str, event: Cancelled) -> list[ServerSentEvent]:
        return [self._end(generation_id, event.seq, event.as_error())]

    def _end(self, generation_id: str, seq: int, error: StreamError) -> ServerSentEvent:
        return ServerSentEvent(
            self.error_message(error), id=f"{generation_id}:{seq}", retry=_retry(error)
        )

    def failure(
        self, error: StreamError, generation_id: str | None = None, seq: int | None = None
    ) -> ServerSentEvent:
        retry = _retry(error)
        if generation_id is None or seq is None:
            return ServerSentEvent(self.error_message(error), retry=retry)
        return ServerSentEvent(self.error_message(error), id=f"{generation_id}:{seq}", retry=retry)


def _retry(error: StreamError) -> int | None:
    """A ``retry:`` hint when the server is restarting: reconnect (to another process) soon."""
    return SHUTDOWN_RETRY_MS if error.code == StreamErrorCode.SHUTTING_DOWN else None
