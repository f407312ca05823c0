"""Our WebSocket frames (JSON objects): ``chunk`` (``content``, ``message_id``, ``seq``),
``event`` (an extractor event: ``name``, ``data``, ``message_id``, ``seq``), ``complete``
(``fullResponse``, ``message_id``), ``error`` (``code``, ``message``; ``message_id`` and
``seq`` when a reply failed, ``retry_after`` seconds when a limit refused a prompt) and
``cancelled`` (``message_id``)."""

from __future__ import annotations

from typing import Any

from ..errors import StreamError
from ..events import Cancelled, Chunk, Complete, Error, Event
from ..limits import retry_after
from .base import WireProtocol

Frame = dict[str, Any]


class WebSocketFrames(WireProtocol[Frame]):
    """Our frames; extractor events are sent when the generation keeps them
    (``send_extractor_events``)."""

    def chunk(self, generation_id: str, event: Chunk) -> list[Frame]:
        return [
            {"type": "chunk", "content": event.text, "message_id": generation_id, "seq": event.seq}
        ]

    def event(self, generation_id: str, event: Event) -> list[Frame]:
        return [
            {
                "type": "event",
                "name": event.name,
                "data": event.data,
                "message_id": generation_id,
                "seq": event.seq,
            }
        ]

    def complete(self, generation_id: str, event: Complete) -> list[Frame]:
        return [{"type": "complete", "fullResponse": event.text, "message_id": generation_id}]

    def error(self, generation_id: str, event: Error) -> list[Frame]:
        return [self.failure(event.as_error(), generation_id, event.seq)]

    def cancelled(self, generation_id: str, event: Cancelled) -> list[Frame]:
        return [{"type": "cancelled", "message_id": generation_id}]

    def failure(
        self, error: StreamError, generation_id: str | None = None, seq: int | None = None
    ) -> Frame:
        frame: Frame = {"type": "error", "code": str(error.code), "message": error.message}
        if generation_id is not None:
            frame["message_id"] = generation_id
            if seq is not None:
                frame["seq"] = seq
        seconds = retry_after(error)
        if seconds is not None:
            frame["retry_after"] = seconds
        return frame
