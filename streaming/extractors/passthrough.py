"""``PassthroughExtractor`` and ``MarkableExtractor``: the text as it comes."""

from __future__ import annotations

from .base import chunk_too_large, max_chunk_size


class PassthroughExtractor:
    """Streams every chunk unchanged; never done (plain-text models)."""

    def __init__(self) -> None:
        self._max_chunk_size = max_chunk_size()

    @property
    def done(self) -> bool:
        return False

    def push(self, chunk: str) -> str:
        if len(chunk) > self._max_chunk_size:
            raise chunk_too_large(len(chunk), self._max_chunk_size)
        return chunk

    def flush(self) -> str:
        return ""

    def reset(self) -> None:
        """Nothing to forget."""


class MarkableExtractor(PassthroughExtractor):
    """Pass-through that the caller marks complete (structured replies decided elsewhere).

    Once marked, pushes return ``""`` until ``reset()``.
    """

    def __init__(self) -> None:
        super().__init__()
        self._done = False

    @property
    def done(self) -> bool:
        return self._done

    def push(self, chunk: str) -> str:
        if self._done:
            return ""
        return super().push(chunk)

    def mark_complete(self) -> None:
        """Nothing more will be streamed (until ``reset()``)."""
        self._done = True

    def reset(self) -> None:
        self._done = False
