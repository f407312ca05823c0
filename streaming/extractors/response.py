"""``ResponseStreamExtractor``: stream ``<text>`` only when the reply's only action is REPLY."""

from __future__ import annotations

from enum import Enum

from .base import MAX_BUFFER, SAFE_MARGIN, TRIM_KEEP, check_chunk_size, js_trim

ACTIONS_OPEN, ACTIONS_CLOSE = "<actions>", "</actions>"
TEXT_OPEN, TEXT_CLOSE = "<text>", "</text>"


class Strategy(Enum):
    PENDING = "pending"  # <actions> not seen whole yet
    DIRECT = "direct"  # the only action is REPLY: stream <text>
    DELEGATED = "delegated"  # other actions speak for the agent: stream nothing


def is_direct_reply(actions: str) -> bool:
    """True iff the comma-separated action list is exactly ``REPLY`` (any case, spaces)."""
    items = [js_trim(item).upper() for item in actions.split(",")]
    return [item for item in items if item] == ["REPLY"]


class _Finder:
    """Finds the first occurrence of a pattern in a growing buffer, scanning each
    character about once: a failed search resumes where it could still match."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.start = 0

    def find(self, buffer: str, minimum: int = 0) -> int:
        index = buffer.find(self.pattern, max(self.start, minimum))
        if index < 0:
            self.start = max(self.start, len(buffer) - len(self.pattern) + 1, 0)
        return index

    def dropped(self, count: int) -> None:
        """The buffer lost its first ``count`` characters."""
        self.start = max(0, self.start - count)


class ResponseStreamExtractor:
    """The ElizaOS agent reply filter: ``<response><thought/><actions/><text/></response>``.

    The strategy is decided once, when the first ``<actions>…</actions>`` is complete.
    Directly replying, it streams the ``<text>`` content with the safe margin; otherwise
    it streams nothing (the actions answer instead) and is never done.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._buffer = ""
        self._inside = False
        self._finished = False
        self.strategy = Strategy.PENDING
        self._actions_open = _Finder(ACTIONS_OPEN)
        self._actions_close = _Finder(ACTIONS_CLOSE)
        self._text_open = _Finder(TEXT_OPEN)
        self._text_close = _Finder(TEXT_CLOSE)

    @property
    def done(self) -> bool:
        return self._finished

    def _drop(self, count: int) -> None:
        self._buffer = self._buffer[count:]
        for finder in (self._actions_open, self._actions_close, self._text_open, self._text_close):
            finder.dropped(count)

    def push(self, chunk: str) -> str:
        if self._finished:
            return ""
        check_chunk_size(chunk)
        self._buffer += chunk
        if self.strategy is Strategy.PENDING:
            self._detect_strategy()
        if not self._inside:
            self._enter_text()
        if not self._inside:
            if len(self._buffer) > MAX_BUFFER:
                self._drop(len(self._buffer) - TRIM_KEEP)
            return ""
        return self._release()

    def _detect_strategy(self) -> None:
        start = self._actions_open.find(self._buffer)
        if start < 0:
            return
        content_start = start + len(ACTIONS_OPEN)
        end = self._actions_close.find(self._buffer, content_start)
        if end < 0:
            return
        direct = is_direct_reply(self._buffer[content_start:end])
        self.strategy = Strategy.DIRECT if direct else Strategy.DELEGATED

    def _enter_text(self) -> None:
        start = self._text_open.find(self._buffer)
        if start < 0:
            return
        if self.strategy is Strategy.DIRECT:
            self._drop(start + len(TEXT_OPEN))
            self._inside = True
            self._text_close.start = 0
            return
        # Not (yet) replying directly: a text that closes before the decision is skipped.
        end = self._text_close.find(self._buffer)
        if end >= 0:
            self._drop(end + len(TEXT_CLOSE))
            self._text_open.start = 0
            self._text_close.start = 0

    def _release(self) -> str:
        end = self._text_close.find(self._buffer)
        if end >= 0:
            text = self._buffer[:end]
            self._buffer = self._buffer[end + len(TEXT_CLOSE) :]
            self._inside = False
            self._finished = True
            return text
        if len(self._buffer) > SAFE_MARGIN:
            text = self._buffer[:-SAFE_MARGIN]
            self._drop(len(text))
            return text
        return ""

    def flush(self) -> str:
        if not self._inside or not self._buffer:
            return ""
        held, self._buffer = self._buffer, ""
        self._text_close.start = 0
        return held
