"""``Pipeline``: extractors in a chain, each one's output the next one's input."""

from __future__ import annotations

from .base import StreamExtractor
from .passthrough import PassthroughExtractor


class Pipeline:
    """Chains extractors; ``flush()`` cascades; done when the last one is done.

    An empty pipeline passes text through unchanged.
    """

    def __init__(self, *extractors: StreamExtractor) -> None:
        self.extractors: tuple[StreamExtractor, ...] = extractors or (PassthroughExtractor(),)

    @property
    def done(self) -> bool:
        return self.extractors[-1].done

    def push(self, chunk: str) -> str:
        for extractor in self.extractors:
            if not chunk:
                return ""
            chunk = extractor.push(chunk)
        return chunk

    def flush(self) -> str:
        text = ""
        for extractor in self.extractors:
            if text:
                text = extractor.push(text)
            text += extractor.flush()
        return text

    def reset(self) -> None:
        for extractor in self.extractors:
            extractor.reset()

    def __repr__(self) -> str:
        return f"Pipeline({', '.join(type(e).__name__ for e in self.extractors)})"
