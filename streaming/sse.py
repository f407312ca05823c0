"""The Server-Sent Events wire format: encoding events and parsing them back.

Encoding follows the WHATWG rules so that no value can inject a field: ``data`` is
split into one ``data:`` line per line, ``event`` and ``id`` may not contain line
breaks, ``id`` may not contain NUL and ``retry`` is a non-negative integer.
The parser is incremental: feed it bytes split anywhere (even inside a UTF-8
character) and it returns the events completed so far.
"""

from __future__ import annotations

import codecs
import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from .errors import StreamError, StreamErrorCode
from .flat_json import compact_json

logger = logging.getLogger("streaming")

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _check_line(name: str, value: str) -> str:
    if "\r" in value or "\n" in value:
        raise StreamError(
            StreamErrorCode.INVALID_FIELD,
            f"SSE field {name!r} must not contain a line break: {value!r}",
        )
    return value


def validate_event(event: str | None) -> str | None:
    """Return a valid event name, or ``None`` for no name (``""`` means none too)."""
    if event is None or event == "":
        return None
    if not isinstance(event, str):
        raise TypeError(f"SSE event name must be a str, not {type(event).__name__}")
    return _check_line("event", event)


def validate_id(event_id: str | None) -> str | None:
    """Return a valid event id, rejecting line breaks and NUL (browsers ignore those)."""
    if event_id is None:
        return None
    event_id = str(event_id)
    if "\0" in event_id:
        raise StreamError(
            StreamErrorCode.INVALID_FIELD, f"SSE field 'id' must not contain NUL: {event_id!r}"
        )
    return _check_line("id", event_id)


def validate_retry(retry: int | None) -> int | None:
    """Return a valid reconnection time in milliseconds (0 included)."""
    if retry is None:
        return None
    if isinstance(retry, bool) or not isinstance(retry, int) or retry < 0:
        raise StreamError(
            StreamErrorCode.INVALID_FIELD,
            f"SSE field 'retry' must be a non-negative int (milliseconds), not {retry!r}",
        )
    return retry


def serialize_data(data: Any) -> str | None:
    """Turn a message payload into the text of its ``data`` field (``None``: send nothing).

    ``str`` is sent as is; ``None`` and ``""`` send nothing; objects with
    ``model_dump_json()`` (pydantic, so OpenAI SDK chunks) use it; anything else is
    compact JSON with non-ASCII characters kept.
    """
    if data is None:
        return None
    if isinstance(data, str):
        return data or None
    if type(data) is dict:
        return compact_json(data)
    dump = getattr(data, "model_dump_json", None)
    if callable(dump):
        return str(dump(exclude_unset=True))
    return compact_json(data)


def encode_fields(
    data: str | None,
    *,
    event_id: str | None = None,
    event: str | None = None,
    retry: int | None = None,
    comment: str | None = None,
) -> bytes:
    """Frame already-validated fields as one event, in the order id, event, retry, data."""
    if (
        comment is None
        and retry is None
        and event is None
        and data is not None
        and "\n" not in data
        and "\r" not in data
    ):
        # The usual message, one per token: (an id and) one line of data.
        if event_id is None:
            return f"data: {data}\n\n".encode()
        return f"id: {event_id}\ndata: {data}\n\n".encode()
    parts: list[str] = []
    if comment is not None:
        parts.extend(f": {line}\n" for line in _LINE_BREAK.split(comment))
    if event_id is not None:
        parts.append(f"id: {event_id}\n")
    if event is not None:
        parts.append(f"event: {event}\n")
    if retry is not None:
        parts.append(f"retry: {retry}\n")
    if data is not None:
        if "\n" in data or "\r" in data:
            parts.extend(f"data: {line}\n" for line in _LINE_BREAK.split(data))
        else:
            parts.append(f"data: {data}\n")
    parts.append("\n")
    return "".join(parts).encode("utf-8")


def encode_comment(text: str = "") -> bytes:
    """A comment block (``: text``); clients ignore it, proxies see traffic."""
    return (
        "".join(f":{' ' if line else ''}{line}\n" for line in _LINE_BREAK.split(text)).encode(
            "utf-8"
        )
        + b"\n"
    )


#: The comment a stream opens with (daphne sends the headers only with the first body
#: bytes) and the one it sends after a silence, so that proxies keep the connection.
OPENING_COMMENT = encode_comment("stream open")
KEEPALIVE_COMMENT = encode_comment("ping")


def failure_event(exc: BaseException, event_id: str | None = None) -> bytes:
    """The ``error`` event a stream ends with when its source fails: a ``StreamError``'s
    own message and code, anything else only ``INTERNAL_ERROR`` (logged in full)."""
    if isinstance(exc, StreamError):
        logger.warning("Stream ended with %r", exc)
        payload = exc.as_dict()
    else:
        logger.error("Stream source failed", exc_info=exc)
        payload = {"message": "The stream failed", "code": str(StreamErrorCode.INTERNAL_ERROR)}
    return encode_fields(serialize_data(payload), event_id=event_id, event="error")


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One event with explicit fields; any field may be left out.

    Send it with ``Stream.send`` or yield it from a source to set ``event``, ``id``,
    ``retry`` or a ``comment`` per message. An ``id`` given here replaces the
    stream's own increasing id for this message.
    """

    data: Any = None
    event: str | None = None
    id: str | None = None
    retry: int | None = None
    comment: str | None = None

    def __post_init__(self) -> None:
        if self.event is not None:
            validate_event(self.event)
        if self.id is not None:
            validate_id(self.id)
        if self.retry is not None:
            validate_retry(self.retry)

    def encode(self, *, default_id: str | None = None) -> bytes:
        """The wire bytes of this event, ending with the blank line that dispatches it."""
        return encode_fields(
            serialize_data(self.data),
            event_id=self.id if self.id is not None else default_id,
            event=validate_event(self.event),
            retry=self.retry,
            comment=self.comment,
        )


_new = object.__new__
_set = object.__setattr__


def message_with_id(data: Any, event_id: str) -> ServerSentEvent:
    """``ServerSentEvent(data, id=event_id)`` for an id the caller has made valid (a
    reply's ``<generation>:<seq>``, whose generation id its response checked once): built
    without checking the fields again, since it runs once per token."""
    message = _new(ServerSentEvent)
    _set(message, "data", data)
    _set(message, "event", None)
    _set(message, "id", event_id)
    _set(message, "retry", None)
    _set(message, "comment", None)
    return message


@dataclass(slots=True)
class ParsedEvent:
    """An event as a WHATWG client dispatches it."""

    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None

    def json(self) -> Any:
        """The data parsed as JSON."""
        return json.loads(self.data)


class SSEParser:
    """Incremental WHATWG event-stream parser.

    ``feed(chunk)`` takes bytes or text split anywhere and returns the events
    completed by it. ``last_event_id`` follows the spec (it persists across events);
    ``comments`` counts comment lines seen, so tests can watch keep-alives.
    """

    def __init__(self, max_line: int | None = None) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self._retry: int | None = None
        self._first = True
        self._max_line = max_line
        self.last_event_id: str | None = None
        self.comments: list[str] = []

    def feed(self, chunk: bytes | str) -> list[ParsedEvent]:
        text = self._decoder.decode(chunk) if isinstance(chunk, bytes) else chunk
        if self._first and text:
            self._first = False
            if text.startswith("\ufeff"):
                text = text[1:]
        buffer = self._pending + text
        events: list[ParsedEvent] = []
        start = 0
        length = len(buffer)
        while start < length:
            match = _LINE_BREAK.search(buffer, start)
            if match is None:
                break
            # A lone CR at the very end may be the first half of CRLF: wait for more.
            if match.group() == "\r" and match.end() == length:
                break
            self._line(buffer[start : match.start()], events)
            start = match.end()
        self._pending = buffer[start:]
        if self._max_line is not None and len(self._pending) > self._max_line:
            raise StreamError(
                StreamErrorCode.PARSE_ERROR,
                f"SSE line longer than {self._max_line} characters",
                {"max_line": self._max_line},
            )
        return events

    def close(self) -> list[ParsedEvent]:
        """End of stream: a trailing line is processed; an undispatched event is dropped."""
        tail = self._pending + self._decoder.decode(b"", final=True)
        self._pending = ""
        events: list[ParsedEvent] = []
        if tail.endswith("\r"):
            self._line(tail[:-1], events)
        return events

    def _line(self, line: str, events: list[ParsedEvent]) -> None:
        if not line:
            self._dispatch(events)
            return
        if line.startswith(":"):
            self.comments.append(line[1:].removeprefix(" "))
            return
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._id = value
                self.last_event_id = value
        elif name == "retry" and value.isascii() and value.isdigit() and len(value) <= 15:
            self._retry = int(value)  # (longer: past any delay, and past int's digit limit)

    def _dispatch(self, events: list[ParsedEvent]) -> None:
        if self._data:
            events.append(
                ParsedEvent(
                    data="\n".join(self._data),
                    event=self._event or "message",
                    id=self.last_event_id,
                    retry=self._retry,
                )
            )
        self._data = []
        self._event = ""
        self._retry = None
