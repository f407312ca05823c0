"""The typed events of a generation: what it produces, what followers read, what each
protocol (``streaming.protocols``) writes on the wire.

A reply is numbered per generation (``seq`` 1, 2, 3 … without gaps): text (``Chunk``),
named extractor events (``Event``), then exactly one terminal event (``Complete``,
``Error`` or ``Cancelled``). The event store keeps plain dicts; ``to_record`` and
``from_record`` are the one place where the two meet.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .errors import StreamError, StreamErrorCode


@dataclass(frozen=True, slots=True)
class Chunk:
    """Streamable text of the reply."""

    seq: int
    text: str


@dataclass(frozen=True, slots=True)
class Event:
    """A named event of an extractor (``ValidationStreamExtractor``'s ``field_validated`` …)."""

    seq: int
    name: str
    data: Any


@dataclass(frozen=True, slots=True)
class Complete:
    """The reply ended normally. The store does not keep its text a second time: a
    follower that needs all of it (the WebSocket's ``fullResponse``) fills in ``text``
    from the chunks it read."""

    seq: int
    text: str = ""


@dataclass(frozen=True, slots=True)
class Error:
    """The reply failed: a ``StreamErrorCode`` value and a client-safe message."""

    seq: int
    code: str
    message: str

    def as_error(self) -> StreamError:
        return StreamError(self.code, self.message)


@dataclass(frozen=True, slots=True)
class Cancelled:
    """The reply was stopped (a cancel request, its client gone, its store failing)."""

    seq: int

    def as_error(self) -> StreamError:
        return StreamError(StreamErrorCode.ABORTED, "The reply was cancelled")


GenerationEvent = Chunk | Event | Complete | Error | Cancelled
#: The events that end a generation (for ``isinstance``).
TERMINAL = (Complete, Error, Cancelled)


def to_record(event: GenerationEvent) -> dict[str, Any]:
    """The dict the event store keeps (its ``seq`` is the store's position)."""
    if isinstance(event, Chunk):
        return {"type": "chunk", "text": event.text}
    if isinstance(event, Event):
        return {"type": "event", "name": event.name, "data": event.data}
    if isinstance(event, Complete):
        return {"type": "complete"}
    if isinstance(event, Error):
        return {"type": "error", "code": event.code, "message": event.message}
    return {"type": "cancelled"}


def from_record(seq: int, data: dict[str, Any]) -> GenerationEvent:
    """The typed event of a stored dict (the inverse of ``to_record``)."""
    kind = data["type"]
    if kind == "chunk":
        return Chunk(seq, data["text"])
    if kind == "event":
        return Event(seq, data["name"], data["data"])
    if kind == "complete":
        return Complete(seq, data.get("text", ""))
    if kind == "error":
        return Error(seq, data["code"], data["message"])
    if kind == "cancelled":
        return Cancelled(seq)
    raise ValueError(f"not a generation event: {data!r}")


def characters_of(events: Iterable[GenerationEvent]) -> int:
    """The characters of text ``events`` send a client: their chunks', and those of the
    events that carry text (``text_carried``). A resume counts them against
    ``MAX_REPLY_CHARS``; a reply that is mostly reasoning is resent as costly as text."""
    count = 0
    for event in events:
        if isinstance(event, Chunk):
            count += len(event.text)
        elif isinstance(event, Event):
            count += text_carried(event)
    return count


def text_carried(event: Event) -> int:
    """The characters of text an event carries (``{"text": ...}``: reasoning), else 0."""
    text = event.data.get("text") if isinstance(event.data, dict) else None
    return len(text) if isinstance(text, str) else 0


def merge_chunks(events: Iterable[GenerationEvent]) -> list[GenerationEvent]:
    """``events`` with each run of ``Chunk``s merged into one, numbered as its last: the
    protocols are about text, so a client resuming after that number misses nothing."""
    if isinstance(events, list) and len(events) == 1:
        return events  # one event, the usual case of a paced reply: nothing to merge
    merged: list[GenerationEvent] = []
    text: list[str] = []
    last = 0
    for event in events:
        if isinstance(event, Chunk):
            text.append(event.text)
            last = event.seq
            continue
        if text:
            merged.append(Chunk(last, "".join(text)))
            text = []
        merged.append(event)
    if text:
        merged.append(Chunk(last, "".join(text)))
    return merged
