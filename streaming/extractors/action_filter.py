"""``ActionStreamFilter``: what an action handler's model output streams, by its shape."""

from __future__ import annotations

from enum import Enum

from ..conf import setting
from .base import chunk_too_large, js_trim_start, max_chunk_size, trim_buffer
from .tag import TagScanner


class ContentType(Enum):
    """The shape of the output, fixed by its first non-whitespace character."""

    JSON = "json"  # structured data: nothing is streamed
    XML = "xml"  # stream the <text> element
    TEXT = "text"  # plain text: stream everything


class ActionStreamFilter:
    """The first non-whitespace character decides: ``{``/``[`` JSON, ``<`` XML, else text.

    Leading whitespace is held until then and streamed with plain text; past
    ``MAX_BUFFER`` characters it is trimmed as held text is (to its last 1024), so a
    model that writes only whitespace holds a bounded amount. JSON output is not kept at
    all (it never streams), XML output is scanned for ``<text>``.
    """

    def __init__(self) -> None:
        self._max_chunk_size = max_chunk_size()
        self._max_buffer = int(setting("MAX_BUFFER"))
        self.reset()

    def reset(self) -> None:
        """Start over: type undecided, nothing held."""
        self._whitespace: list[str] = []
        self._held = 0
        self.content_type: ContentType | None = None
        self._scanner = TagScanner("text")

    @property
    def done(self) -> bool:
        return self._scanner.closed

    def push(self, chunk: str) -> str:
        if self._scanner.closed:
            return ""
        if len(chunk) > self._max_chunk_size:
            raise chunk_too_large(len(chunk), self._max_chunk_size)
        content_type = self.content_type
        if content_type is None:
            start = js_trim_start(chunk)
            if not start:
                self._whitespace.append(chunk)
                self._held += len(chunk)
                if self._held > self._max_buffer:
                    kept = trim_buffer("".join(self._whitespace), self._max_buffer)
                    self._whitespace[:] = [kept]
                    self._held = len(kept)
                return ""
            first = start[0]
            if first in "{[":
                content_type = ContentType.JSON
            elif first == "<":
                content_type = ContentType.XML
            else:
                content_type = ContentType.TEXT
            self.content_type = content_type
            if self._whitespace:
                chunk = "".join(self._whitespace) + chunk
                self._whitespace.clear()
                self._held = 0
        if content_type is ContentType.TEXT:
            return chunk
        if content_type is ContentType.XML:
            return self._scanner.feed(chunk)
        return ""

    def flush(self) -> str:
        return self._scanner.take_held_back()
