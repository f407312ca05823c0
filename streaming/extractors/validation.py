"""``ValidationStreamExtractor``: structured fields of an XML reply, validated while they
stream, with retry and error signals.

Field text goes to ``on_chunk(chunk, field, accumulated)`` when it is given (``push``
then returns ``""``), else ``push``/``flush`` return it like any extractor. The event dicts
``{"event_type", "field", "chunk", "error", "retry_count", "timestamp"}`` (absent keys
omitted) go to ``on_event(event)`` when it is given, else they are kept for
``drain_events()`` (``EmitsEvents``), which a ``Pipeline`` forwards.

Levels: 0 streams a field as it grows, 1 streams a field once it is complete and its
codes match, 2 and 3 emit on ``flush()`` only. A field with an expected code is always
handled as at level 1. Each thing is emitted once: deltas that join to exactly the final
content, one ``field_validated`` per field, one ``error`` per bad field, one ``complete``
per attempt.

The reply is read once, tag by tag (``TagFinder``), and only the content of the streamed
fields and of their codes is kept, so the cost is linear in the reply.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .base import (
    Callbacks,
    ExtractorEvent,
    TagFinder,
    check_tag_name,
    chunk_too_large,
    js_trim,
    max_chunk_size,
)

OnChunk = Callable[[str, str, str], Any]
OnEvent = Callable[[dict[str, Any]], Any]

STREAMING, RETRYING, COMPLETE, FAILED = "streaming", "retrying", "complete", "failed"
PENDING, PARTIAL, FIELD_COMPLETE, INVALID = "pending", "partial", "complete", "invalid"


def _is_aborted(abort: Any) -> bool:
    """``abort`` may be a callable, an ``asyncio.Event``/``threading.Event`` or an object
    with an ``aborted`` attribute (as an AbortSignal)."""
    if abort is None:
        return False
    if hasattr(abort, "is_set"):
        return bool(abort.is_set())
    if hasattr(abort, "aborted"):
        return bool(abort.aborted)
    return bool(abort())


def _field_name(row: Any) -> str:
    """A schema row is a field name or a mapping with a ``field`` key (as ``SchemaRow``)."""
    if isinstance(row, Mapping):
        if "field" not in row:
            raise ValueError(f"a schema row needs a 'field' key: {row!r}")
        row = row["field"]
    return check_tag_name(str(row))


class _Element:
    """The first ``<name>…</name>`` of the reply: where its content starts and ends.

    With ``keep``, the content not yet emitted is kept in ``parts`` (from absolute
    position ``start + emitted`` to ``received``).
    """

    def __init__(self, name: str, keep: bool) -> None:
        self.name = name
        self.open_tag = f"<{name}>"
        self.close_tag = f"</{name}>"
        self.keep = keep
        self.start: int | None = None  # absolute position after the open tag
        self.close: int | None = None  # absolute position of the close tag
        self.parts: list[str] = []
        self.received = 0
        self.emitted = 0

    def capture(self, chunk: str, chunk_start: int) -> None:
        """Keep this chunk's share of the content (and drop a close tag begun earlier)."""
        if self.start is None or not self.keep:
            return
        limit = self.close if self.close is not None else chunk_start + len(chunk)
        if limit > self.received:
            self.parts.append(chunk[self.received - chunk_start : limit - chunk_start])
        elif limit < self.received:
            text = "".join(self.parts)
            self.parts = [text[: len(text) - (self.received - limit)]]
        self.received = limit

    def take(self, count: int) -> str:
        """Remove and return the first ``count`` kept characters."""
        text = "".join(self.parts)
        rest = text[count:]
        self.parts = [rest] if rest else []
        self.emitted += count
        return text[:count]

    def text(self) -> str:
        """The kept content, without consuming it."""
        text = "".join(self.parts)
        self.parts = [text] if text else []
        return text


class _Field(_Element):
    """A schema field: its element, where another field's open tag cuts it, its state."""

    def __init__(self, name: str, keep: bool) -> None:
        super().__init__(name, keep)
        self.stop: int | None = None  # first other field's open tag after ``start``
        self.state: str | None = PENDING if keep else None
        self.accumulated = ""
        self.validated = False


class ValidationStreamExtractor:
    """Streams the ``stream_fields`` of ``schema`` from an XML reply, with validation codes.

    ``expected_codes[field]`` is the code the model must write in
    ``<code_FIELD_start>CODE</code_FIELD_start>`` before the field and
    ``<code_FIELD_end>CODE</code_FIELD_end>`` after it. A missing code means "wait"; a wrong
    one makes the field invalid (one ``error`` event) until ``reset()``. Field names may not
    contain ``<`` or ``>``; a stream field that is not in the schema is never streamed.
    """

    def __init__(
        self,
        *,
        level: int = 0,
        schema: Iterable[Any] = (),
        stream_fields: Iterable[str] = (),
        expected_codes: Mapping[str, str] | None = None,
        on_chunk: OnChunk | None = None,
        on_event: OnEvent | None = None,
        abort: Any = None,
    ) -> None:
        if level not in (0, 1, 2, 3):
            raise ValueError(f"level must be 0, 1, 2 or 3, not {level!r}")
        self.level = level
        self.schema = list(dict.fromkeys(_field_name(row) for row in schema))
        self.stream_fields = [check_tag_name(field) for field in stream_fields]
        # Compared with the model's code trimmed: a code given with spaces (or as a
        # number) would otherwise never match. None, as "", means no code.
        self.expected_codes = {
            field: js_trim(str(code))
            for field, code in (expected_codes or {}).items()
            if code is not None
        }
        self.on_chunk = on_chunk
        self.on_event = on_event
        self.abort = abort
        self.callbacks = Callbacks()
        self._max_chunk_size = max_chunk_size()
        #: Field text and events not yet returned or drained (when there is no callback).
        self._text: list[str] = []
        self._events: list[ExtractorEvent] = []
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """A new attempt: nothing read, nothing emitted, stream fields pending."""
        self._state = STREAMING
        self._complete_sent = False
        streamed = set(self.stream_fields)
        self._fields = {name: _Field(name, name in streamed) for name in self.schema}
        self._streamed = [self._fields[name] for name in _streamed_in_order(self)]
        self._codes: dict[str, tuple[_Element, _Element]] = {
            field.name: (
                _Element(f"code_{field.name}_start", True),
                _Element(f"code_{field.name}_end", True),
            )
            for field in self._streamed
            if self.expected_codes.get(field.name)
        }
        self._elements: list[_Element] = [*self._fields.values()]
        for pair in self._codes.values():
            self._elements.extend(pair)
        # What each tag means: (element, is_open), for every element with that tag.
        self._roles: dict[str, list[tuple[_Element, bool]]] = {}
        for element in self._elements:
            self._roles.setdefault(element.open_tag, []).append((element, True))
            self._roles.setdefault(element.close_tag, []).append((element, False))
        self._finder = TagFinder(self._roles)
        # Tags whose proper prefix may end a partial field (its close or another field's open).
        self._longest_tag = max((len(tag) for tag in self._roles), default=0)

    @property
    def done(self) -> bool:
        return self._state in (COMPLETE, FAILED)

    def get_state(self) -> str:
        """``streaming``, ``retrying``, ``complete`` or ``failed``."""
        return self._state

    def get_validated_fields(self) -> dict[str, str]:
        """Fields whose codes matched, with their (non-empty) content."""
        return {
            field.name: field.accumulated
            for field in self._streamed
            if field.validated and field.accumulated
        }

    def diagnose(self) -> dict[str, list[str]]:
        """Schema fields that are missing, invalid or incomplete, for a retry prompt."""
        report: dict[str, list[str]] = {
            "missing_fields": [],
            "invalid_fields": [],
            "incomplete_fields": [],
        }
        keys = {PENDING: "missing_fields", INVALID: "invalid_fields", PARTIAL: "incomplete_fields"}
        for field in self._fields.values():
            key = keys.get(field.state or "")
            if key is not None:
                report[key].append(field.name)
        return report

    async def drain(self) -> None:
        """Await the results of async callbacks, in order."""
        await self.callbacks.drain()

    def drain_events(self) -> list[ExtractorEvent]:
        """The events emitted since the last call when there is no ``on_event``."""
        events, self._events = self._events, []
        return events

    def _take_text(self) -> str:
        if not self._text:
            return ""
        text = "".join(self._text)
        self._text = []
        return text

    # ---------------------------------------------------------------- signals
    def signal_retry(self, retry_count: int) -> dict[str, Any]:
        """The caller retries: ignore pushes until ``reset()``; say so with ``retry_start``."""
        self._state = RETRYING
        self._emit_event("retry_start", retry_count=retry_count)
        return {"validated_fields": [field.name for field in self._streamed if field.validated]}

    def signal_error(self, message: str) -> None:
        """The caller gives up: ``failed`` until ``reset()``, with one ``error`` event."""
        self._state = FAILED
        self._emit_event("error", error=message)

    # ------------------------------------------------------------------ input
    def push(self, chunk: str) -> str:
        if _is_aborted(self.abort):
            if not self.done:
                self.signal_error("Cancelled by user")
            return ""
        if self._state != STREAMING:
            return ""
        if len(chunk) > self._max_chunk_size:
            raise chunk_too_large(len(chunk), self._max_chunk_size)
        chunk_start = self._finder.position
        for position, tag in self._finder.feed(chunk):
            self._on_tag(position, tag)
        for element in self._elements:
            element.capture(chunk, chunk_start)
        for field in self._fields.values():
            if field.start is not None and field.state != INVALID:
                field.state = FIELD_COMPLETE if field.close is not None else PARTIAL
        if self.level <= 1:
            for field in self._streamed:
                self._stream_field(field)
        return self._take_text()

    def flush(self) -> str:
        """End of the attempt: at levels 2-3 emit the fields, at level 0 the held-back ends
        of unclosed fields; then ``complete`` (once)."""
        if self._state == FAILED:
            return self._take_text()
        for field in self._streamed:
            if field.start is None or field.state == INVALID:
                continue
            if self.level >= 2 or (self.level == 0 and not self._code_of(field)):
                self._emit_upto(field, self._limit(field))
        self._state = COMPLETE
        if not self._complete_sent:
            self._complete_sent = True
            self._emit_event("complete")
        return self._take_text()

    # --------------------------------------------------------------- parsing
    def _on_tag(self, position: int, tag: str) -> None:
        """Record one tag occurrence: a first open, a first close, or a cut of a field."""
        for element, is_open in self._roles[tag]:
            if not is_open:
                if element.start is not None and element.close is None:
                    element.close = position
                continue
            if element.start is None:
                element.start = element.received = position + len(tag)
            if isinstance(element, _Field):
                for field in self._fields.values():
                    if (
                        field is not element
                        and field.start is not None
                        and field.close is None
                        and field.stop is None
                    ):
                        field.stop = position

    def _limit(self, field: _Field) -> int:
        """Where the field's content ends for now: its close, a cut, or what has arrived."""
        if field.close is not None:
            return field.close
        if field.stop is not None:
            return field.stop
        return field.received

    def _code_of(self, field: _Field) -> str:
        return self.expected_codes.get(field.name) or ""

    @staticmethod
    def _code_value(element: _Element) -> str | None:
        """The trimmed code, or ``None`` while it has not arrived whole."""
        if element.close is None:
            return None
        return js_trim(element.text())

    def _stream_field(self, field: _Field) -> None:
        if field.start is None or field.state == INVALID:
            return
        code = self._code_of(field)
        if code:
            if field.close is None or field.validated:
                return
            start_element, end_element = self._codes[field.name]
            start, end = self._code_value(start_element), self._code_value(end_element)
            if start is not None and start != code:
                self._invalidate(
                    field, f"Validation codes mismatch for {field.name}: wrong start code"
                )
            elif end is not None and end != code:
                self._invalidate(
                    field, f"End validation code mismatch for {field.name}: wrong end code"
                )
            elif start is not None and end is not None:
                field.validated = True
                self._emit_upto(field, field.close)
                self._emit_event("field_validated", field=field.name)
            return
        if field.close is not None:
            self._emit_upto(field, field.close)
        elif self.level == 0:
            limit = self._limit(field)
            if field.stop is None:
                limit -= self._tag_prefix_length(field)
            self._emit_upto(field, limit)

    def _tag_prefix_length(self, field: _Field) -> int:
        """Length of the end of the kept content that may be the start of a closing or next
        tag, held back so that what is streamed is always a prefix of the final content."""
        tail = field.text()[-(self._longest_tag - 1) :] if self._longest_tag > 1 else ""
        cut = tail.rfind("<")
        if cut < 0:
            return 0
        tail = tail[cut:]
        if field.close_tag.startswith(tail):
            return len(tail)
        for other in self._fields.values():
            if other is not field and other.open_tag.startswith(tail):
                return len(tail)
        return 0

    def _invalidate(self, field: _Field, message: str) -> None:
        field.state = INVALID
        self._emit_event("error", field=field.name, error=message)

    # -------------------------------------------------------------- emitting
    def _emit_upto(self, field: _Field, limit: int) -> None:
        """Emit the field's content up to absolute ``limit`` that was not emitted yet."""
        assert field.start is not None
        count = limit - field.start - field.emitted
        if count <= 0:
            return
        delta = field.take(count)
        accumulated = field.accumulated
        field.accumulated = ""  # one reference left: ``+=`` can extend it in place
        accumulated += delta
        field.accumulated = accumulated
        if self.on_chunk is None:
            self._text.append(delta)
        else:
            self.callbacks.call(self.on_chunk, delta, field.name, accumulated)
        self._emit_event("chunk", field=field.name, chunk=delta)

    def _emit_event(self, event_type: str, **fields: Any) -> None:
        event: dict[str, Any] = {"event_type": event_type}
        event.update({key: value for key, value in fields.items() if value is not None})
        event["timestamp"] = int(time.time() * 1000)
        if self.on_event is None:
            self._events.append(ExtractorEvent(event_type, event))
        else:
            self.callbacks.call(self.on_event, event)


def _streamed_in_order(extractor: ValidationStreamExtractor) -> list[str]:
    """The stream fields that are in the schema, in ``stream_fields`` order, once each."""
    schema = set(extractor.schema)
    return [name for name in dict.fromkeys(extractor.stream_fields) if name in schema]
