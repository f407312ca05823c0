"""``ActionStreamFilter``: what an action handler's model output streams, by its shape."""

from __future__ import annotations

from enum import Enum

from .base import check_chunk_size, js_trim_start
from .tag import TagScanner


class ContentType(Enum):
    JSON = "json"  # structured data: nothing is streamed
    XML = "xml"  # stream the <text> element
    TEXT = "text"  # plain text: stream everything


class ActionStreamFilter:
    """The first non-whitespace character decides: ``{``/``[`` JSON, ``<`` XML, else text."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._pending = ""
        self.content_type: ContentType | None = None
        self._scanner = TagScanner("text")

    @property
    def done(self) -> bool:
        return self._scanner.closed

    def push(self, chunk: str) -> str:
        if self.done:
            return ""
        check_chunk_size(chunk)
        if self.content_type is None:
            self._pending += chunk
            start = js_trim_start(self._pending)
            if not start:
                return ""
            first = start[0]
            if first in "{[":
                self.content_type = ContentType.JSON
            elif first == "<":
                self.content_type = ContentType.XML
            else:
                self.content_type = ContentType.TEXT
            chunk, self._pending = self._pending, ""
        if self.content_type is ContentType.TEXT:
            return chunk
        if self.content_type is ContentType.XML:
            return self._scanner.feed(chunk)
        return ""

    def flush(self) -> str:
        if self.content_type is ContentType.XML:
            return self._scanner.take_held_back()
        return ""
