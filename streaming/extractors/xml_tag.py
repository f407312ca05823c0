"""``XmlTagExtractor``: stream the content of the first ``<tag>…</tag>``."""

from __future__ import annotations

from .base import chunk_too_large, max_chunk_size
from .tag import TagScanner


class XmlTagExtractor:
    """Streams the first ``<tag_name>`` element's content; done at its closing tag.

    Matching is exact and case-sensitive (no attributes, no entity decoding), as in the
    reference. ``flush()`` returns the held-back margin of an unclosed element.
    """

    def __init__(self, tag_name: str) -> None:
        self.tag_name = tag_name
        self._scanner = TagScanner(tag_name)
        self._max_chunk_size = max_chunk_size()

    @property
    def done(self) -> bool:
        return self._scanner.closed

    def push(self, chunk: str) -> str:
        scanner = self._scanner
        if scanner.closed:
            return ""
        if len(chunk) > self._max_chunk_size:
            raise chunk_too_large(len(chunk), self._max_chunk_size)
        return scanner.feed(chunk)

    def flush(self) -> str:
        return self._scanner.take_held_back()

    def reset(self) -> None:
        self._scanner.reset()
