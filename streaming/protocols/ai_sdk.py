"""The AI SDK's chat protocols (npm ``ai``: ``useChat`` and its transports).

``UIMessageChunks`` maps one reply's typed events to *UI message chunks*, the JSON objects
both transports carry: ``start`` (with the message id), ``text-start`` / ``text-delta`` /
``text-end``, ``reasoning-start`` / ``reasoning-delta`` / ``reasoning-end`` for the text an
extractor separates as thought (the ``reasoning`` extractor event), then ``finish`` (the
reply completed), ``error`` (it failed) or ``abort`` (it was stopped).

* Over HTTP (``DefaultChatTransport``): each chunk is one SSE ``data:`` line
  (``sse_messages``), the stream ends with ``data: [DONE]``, and the response carries
  ``UI_MESSAGE_STREAM_HEADERS``.
* Over a WebSocket (``WebSocketChatTransport``): ``ChatTransportFrames`` wraps the chunks
  of one request in ``start``, ``chunk`` (``sequence`` 0, 1, 2 …), ``end`` and ``error``
  frames, and answers a resume with nothing running with ``no-active``.

Chunks are never merged across events: a reply's chunks, and so the WebSocket sequence
numbers, are the same however its events are batched, so a replay from the start renumbers
nothing and a resume after ``lastSequence`` continues exactly where the client stopped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Literal

from ..errors import StreamError
from ..events import Cancelled, Chunk, Complete, Error, Event, GenerationEvent
from ..sse import ServerSentEvent
from .base import WireProtocol

UIChunk = dict[str, Any]
Frame = dict[str, Any]

#: Response headers of the UI message stream, as the AI SDK's own servers send them
#: (``Content-Type`` comes with every SSE response; ``Connection`` is the server's).
UI_MESSAGE_STREAM_HEADERS = {
    "x-vercel-ai-ui-message-stream": "v1",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}
#: The last ``data:`` of a UI message stream.
DONE = "[DONE]"
#: The extractor event whose text becomes the message's reasoning part.
REASONING_EVENT = "reasoning"

PartKind = Literal["text", "reasoning"]


def reasoning_text(data: Any) -> str:
    """The text a ``reasoning`` event carries: a string, or ``{"text": ...}`` /
    ``{"delta": ...}``."""
    if isinstance(data, str):
        return data
    if isinstance(data, Mapping):
        for key in ("delta", "text"):
            value = data.get(key)
            if isinstance(value, str):
                return value
    return ""


class UIMessageChunks(WireProtocol[UIChunk]):
    """One reply's events, read from its first, as UI message chunks.

    It keeps the state of the message being written (started, the open part), so use one
    instance per reply and feed it every event in order from the start.
    """

    def __init__(self, message_id: str, *, reasoning_event: str = REASONING_EVENT) -> None:
        self.message_id = message_id
        self.reasoning_event = reasoning_event
        self.started = False
        self.open: PartKind | None = None
        self.part_id = ""
        self.parts = 0

    def messages(self, generation_id: str, events: Iterable[GenerationEvent]) -> list[UIChunk]:
        out: list[UIChunk] = []
        if not self.started:
            self.started = True
            out.append({"type": "start", "messageId": self.message_id})
        for event in events:  # not merged: see the module's docstring
            out.extend(self.messages_of(generation_id, event))
        return out

    def chunk(self, generation_id: str, event: Chunk) -> list[UIChunk]:
        return self._delta("text", event.text)

    def event(self, generation_id: str, event: Event) -> list[UIChunk]:
        """``reasoning`` becomes reasoning text; other extractor events become transient
        data chunks (``data-<name>``, for ``useChat``'s ``onData``)."""
        if event.name == self.reasoning_event:
            return self._delta("reasoning", reasoning_text(event.data))
        return [{"type": f"data-{event.name}", "data": event.data, "transient": True}]

    def complete(self, generation_id: str, event: Complete) -> list[UIChunk]:
        return [*self._close(), {"type": "finish", "finishReason": "stop"}]

    def error(self, generation_id: str, event: Error) -> list[UIChunk]:
        return [*self._close(), self.failure(event.as_error())]

    def cancelled(self, generation_id: str, event: Cancelled) -> list[UIChunk]:
        return [*self._close(), {"type": "abort", "reason": event.as_error().message}]

    def failure(
        self, error: StreamError, generation_id: str | None = None, seq: int | None = None
    ) -> UIChunk:
        return {"type": "error", "errorText": error.message}

    def _delta(self, kind: PartKind, text: str) -> list[UIChunk]:
        if not text:
            return []
        out: list[UIChunk] = []
        if self.open != kind:
            out.extend(self._close())
            self.parts += 1
            self.open, self.part_id = kind, f"{kind}-{self.parts}"
            out.append({"type": f"{kind}-start", "id": self.part_id})
        out.append({"type": f"{kind}-delta", "id": self.part_id, "delta": text})
        return out

    def _close(self) -> list[UIChunk]:
        if self.open is None:
            return []
        chunk = {"type": f"{self.open}-end", "id": self.part_id}
        self.open = None
        return [chunk]


def sse_messages(chunks: Iterable[UIChunk], *, done: bool) -> Iterator[ServerSentEvent]:
    """Chunks as SSE messages (one ``data:`` line each), and ``[DONE]`` when ``done``."""
    for chunk in chunks:
        yield ServerSentEvent(chunk)
    if done:
        yield ServerSentEvent(DONE)


class ChatTransportFrames:
    """The frames of one ``WebSocketChatTransport`` request (``requestId``).

    ``frames`` numbers the reply's chunks from 0 and leaves out those up to
    ``last_sequence`` (a resume that has them already); give it the reply's events from
    its first.
    """

    def __init__(self, request_id: str, message_id: str, last_sequence: int | None = None) -> None:
        self.request_id = request_id
        self.chunks = UIMessageChunks(message_id)
        self.sequence = 0
        self.skip_through = -1 if last_sequence is None else last_sequence

    def start(self) -> Frame:
        return {"type": "start", "requestId": self.request_id}

    def frames(self, generation_id: str, events: Iterable[GenerationEvent]) -> list[Frame]:
        out: list[Frame] = []
        for chunk in self.chunks.messages(generation_id, events):
            sequence, self.sequence = self.sequence, self.sequence + 1
            if sequence > self.skip_through:
                out.append(
                    {
                        "type": "chunk",
                        "requestId": self.request_id,
                        "sequence": sequence,
                        "chunk": chunk,
                    }
                )
        return out

    def end(self) -> Frame:
        return {"type": "end", "requestId": self.request_id}

    def error(self, error: StreamError) -> Frame:
        return error_frame(self.request_id, error)


def error_frame(request_id: str, error: StreamError) -> Frame:
    """A request that failed outside its reply: refused, unknown chat, store lost."""
    return {"type": "error", "requestId": request_id, "errorText": error.message}


def no_active_frame(request_id: str) -> Frame:
    """The answer to a ``resume`` when the chat has no reply running."""
    return {"type": "no-active", "requestId": request_id}
