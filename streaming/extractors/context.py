"""The streaming context and retry state: an extractor wired to a chunk callback.

``StreamingContext(extractor, on_chunk, message_id)`` is a context whose
``await push(chunk)`` drops chunks once the extractor is done, pushes, and forwards
non-empty text to ``on_chunk(text, message_id)`` (sync or async). The model runtime feeds
it raw chunks; ``get_streamed_text()`` flushes the extractor once and returns all text.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

from .base import StreamExtractor

OnChunk = Callable[[str, "str | None"], Awaitable[None] | None]


class StreamingRetryState:
    """What was streamed so far through ``extractor``, for deciding how to retry."""

    def __init__(self, extractor: StreamExtractor) -> None:
        self.extractor = extractor
        self._streamed: list[str] = []

    def append_text(self, text: str) -> None:
        """Record text that reached the user."""
        self._streamed.append(text)

    def get_streamed_text(self) -> str:
        """All text so far, including the extractor's held-back tail (flushed once).

        Synchronous: async callbacks the flush calls wait for ``await extractor.drain()``.
        """
        tail = self.extractor.flush()
        if tail:
            self._streamed.append(tail)
        return "".join(self._streamed)

    def is_complete(self) -> bool:
        """True once the extractor is done: the reply's streamable part is complete."""
        return self.extractor.done

    def reset(self) -> None:
        """Start a new attempt: reset the extractor, forget the streamed text."""
        self.extractor.reset()
        self._streamed.clear()


class StreamingContext(StreamingRetryState):
    """A retry state that also receives raw chunks and forwards the extracted text."""

    def __init__(
        self, extractor: StreamExtractor, on_chunk: OnChunk, message_id: str | None = None
    ) -> None:
        super().__init__(extractor)
        self.on_chunk = on_chunk
        self.message_id = message_id

    async def push(self, chunk: str) -> None:
        """Feed one raw chunk; dropped once the extractor is done.

        A ``StreamError`` from the extractor propagates; async callbacks of the extractor
        (``drain()``) are awaited before the text is forwarded.
        """
        if self.extractor.done:
            return
        text = self.extractor.push(chunk)
        drain = getattr(self.extractor, "drain", None)
        if drain is not None:
            await drain()
        if text:
            self.append_text(text)
            result = self.on_chunk(text, self.message_id)
            if inspect.isawaitable(result):
                await result


__all__ = ["StreamingContext", "StreamingRetryState"]
