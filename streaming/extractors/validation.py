"""``ValidationStreamExtractor``: structured fields of an XML reply, validated while they
stream, with retry and error signals.

Output goes through callbacks only (``push`` returns ``""``): ``on_chunk(chunk, field,
accumulated)`` for field text and ``on_event(event)`` for the event dicts
``{"event_type", "field", "chunk", "error", "retry_count", "timestamp"}`` (absent keys
omitted). Levels: 0 streams a field as it grows, 1 streams a field once it is complete and
its codes match, 2 and 3 emit on ``flush()`` only. A field with an expected code is always
handled as at level 1. Each thing is emitted once: deltas that join to exactly the final
content, one ``field_validated`` per field, one ``error`` per bad field, one ``complete``
per attempt.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .base import Callbacks, check_chunk_size, js_trim

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
    return str(row["field"] if isinstance(row, Mapping) else row)


class ValidationStreamExtractor:
    """Streams the ``stream_fields`` of ``schema`` from an XML reply, with validation codes.

    ``expected_codes[field]`` is the code the model must write in
    ``<code_FIELD_start>CODE</code_FIELD_start>`` before the field and
    ``<code_FIELD_end>CODE</code_FIELD_end>`` after it. A missing code means "wait"; a wrong
    one makes the field invalid (one ``error`` event) until ``reset()``.
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
        self.schema = [_field_name(row) for row in schema]
        self.stream_fields = list(stream_fields)
        self.expected_codes = dict(expected_codes or {})
        self.on_chunk = on_chunk
        self.on_event = on_event
        self.abort = abort
        self.callbacks = Callbacks()
        self.field_states: dict[str, str] = {}
        self._state = STREAMING
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """A new attempt: buffer, contents and emissions cleared; stream fields pending."""
        self._buffer = ""
        self._contents: dict[str, str] = {}
        self._validated: dict[str, str] = {}
        self._emitted: dict[str, str] = {}
        self._reported: set[str] = set()
        self._complete_sent = False
        for field in self.stream_fields:
            self.field_states[field] = PENDING
        self._state = STREAMING

    @property
    def done(self) -> bool:
        return self._state in (COMPLETE, FAILED)

    def get_state(self) -> str:
        return self._state

    def get_validated_fields(self) -> dict[str, str]:
        return {field: text for field, text in self._validated.items() if text}

    def diagnose(self) -> dict[str, list[str]]:
        """Schema fields that are missing, invalid or incomplete, for a retry prompt."""
        report: dict[str, list[str]] = {
            "missing_fields": [],
            "invalid_fields": [],
            "incomplete_fields": [],
        }
        for field in self.schema:
            state = self.field_states.get(field)
            if state == PENDING:
                report["missing_fields"].append(field)
            elif state == INVALID:
                report["invalid_fields"].append(field)
            elif state == PARTIAL:
                report["incomplete_fields"].append(field)
        return report

    async def drain(self) -> None:
        """Await the results of async callbacks, in order."""
        await self.callbacks.drain()

    # ---------------------------------------------------------------- signals
    def signal_retry(self, retry_count: int) -> dict[str, Any]:
        self._state = RETRYING
        self._emit_event("retry_start", retry_count=retry_count)
        return {"validated_fields": list(self._validated)}

    def signal_error(self, message: str) -> None:
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
        check_chunk_size(chunk)
        self._buffer += chunk
        self._extract()
        if self.level <= 1:
            for field in self.stream_fields:
                self._stream_field(field)
        return ""

    def flush(self) -> str:
        if self._state == FAILED:
            return ""
        if self.level >= 2:
            for field in self.stream_fields:
                content = self._contents.get(field, "")
                if content and self.field_states.get(field) != INVALID:
                    self._emit_content(field, content)
        self._state = COMPLETE
        if not self._complete_sent:
            self._complete_sent = True
            self._emit_event("complete")
        return ""

    # --------------------------------------------------------------- parsing
    def _extract(self) -> None:
        buffer = self._buffer
        for field in self.schema:
            open_tag = f"<{field}>"
            start = buffer.find(open_tag)
            if start < 0:
                continue
            start += len(open_tag)
            close_tag = f"</{field}>"
            end = buffer.find(close_tag, start)
            if end >= 0:
                self._contents[field] = buffer[start:end]
                if self.field_states.get(field) != INVALID:
                    self.field_states[field] = FIELD_COMPLETE
                continue
            if self.field_states.get(field) in (FIELD_COMPLETE, INVALID):
                continue
            self.field_states[field] = PARTIAL
            stop = len(buffer)
            for other in self.schema:
                if other != field:
                    found = buffer.find(f"<{other}>", start)
                    if 0 <= found < stop:
                        stop = found
            # Hold back what could be a half-arrived closing or next tag, so that the deltas
            # streamed now are always a prefix of the final content.
            content = buffer[start:stop]
            if stop == len(buffer):
                content = content[: len(content) - self._tag_prefix_length(content, field)]
            self._contents[field] = content

    def _tag_prefix_length(self, content: str, field: str) -> int:
        """Length of the end of ``content`` that may be the start of a closing or next tag."""
        cut = content.rfind("<")
        if cut < 0:
            return 0
        tail = content[cut:]
        tags = [f"</{field}>", *(f"<{other}>" for other in self.schema if other != field)]
        return len(tail) if any(tag.startswith(tail) for tag in tags) else 0

    def _code(self, field: str, which: str) -> str | None:
        tag = f"code_{field}_{which}"
        start = self._buffer.find(f"<{tag}>")
        if start < 0:
            return None
        start += len(tag) + 2
        end = self._buffer.find(f"</{tag}>", start)
        return None if end < 0 else js_trim(self._buffer[start:end])

    def _stream_field(self, field: str) -> None:
        state = self.field_states.get(field)
        content = self._contents.get(field, "")
        if state == INVALID or not content:
            return
        code = self.expected_codes.get(field)
        if code:
            if state != FIELD_COMPLETE or field in self._validated:
                return
            start, end = self._code(field, "start"), self._code(field, "end")
            if start is not None and start != code:
                self._invalidate(field, f"Invalid start code for {field}")
            elif end is not None and end != code:
                self._invalidate(field, f"Invalid end code for {field}")
            elif start is not None and end is not None:
                self._validated[field] = content
                self._emit_content(field, content)
                self._emit_event("field_validated", field=field)
            return
        if self.level == 0 or state == FIELD_COMPLETE:
            self._emit_content(field, content)
            if state == FIELD_COMPLETE and field not in self._validated:
                self._validated[field] = content

    def _invalidate(self, field: str, message: str) -> None:
        self.field_states[field] = INVALID
        if field not in self._reported:
            self._reported.add(field)
            self._emit_event("error", field=field, error=message)

    # -------------------------------------------------------------- emitting
    def _emit_content(self, field: str, content: str) -> None:
        previous = self._emitted.get(field, "")
        delta = content[len(previous) :] if content.startswith(previous) else ""
        if not delta:
            return
        self._emitted[field] = content
        self.callbacks.call(self.on_chunk, delta, field, content)
        self._emit_event("chunk", field=field, chunk=delta)

    def _emit_event(self, event_type: str, **fields: Any) -> None:
        event: dict[str, Any] = {"event_type": event_type}
        event.update({key: value for key, value in fields.items() if value is not None})
        event["timestamp"] = int(time.time() * 1000)
        self.callbacks.call(self.on_event, event)
