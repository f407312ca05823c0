"""``ReasoningExtractor``: the model's ``<thought>`` as ``reasoning`` events, while it arrives.

It passes every chunk on unchanged (the next extractor, such as
``ResponseStreamExtractor``, still sees the whole XML reply) and emits the content of the
first ``<thought>…</thought>`` as named events ``reasoning`` with data ``{"text": piece}``
(``EmitsEvents``), holding back a safe margin so a split ``</thought>`` never shows. The
chat puts it first in its XML pipelines, so a page can show the thought apart from the
answer, and stores ``reasoning`` with the reply.

The same channel takes the reasoning of a model that reasons apart from its text: a source
yields it as ``streaming.sources.Reasoning`` pieces (``openai_chat``: a provider's
``reasoning_content`` or ``reasoning``), which a generation hands to its pipeline's
``push_reasoning`` instead of ``push``; the pipeline's ``ReasoningExtractor`` emits them
(``add``) as it emits the thought, and keeps them in ``reasoning``.

Its events are pieces (``ExtractorEvent.piece``): a generation merges those that come
together as it merges the reply's text, one ``reasoning`` event per flush, not one per
token; their texts joined are the reasoning all the same.
"""

from __future__ import annotations

from .base import ExtractorEvent, chunk_too_large, max_chunk_size
from .tag import TagScanner


class ReasoningExtractor:
    """Emits the first ``<tag>`` element's content as ``event`` events; passes text through."""

    def __init__(self, tag: str = "thought", event: str = "reasoning") -> None:
        self.tag = tag
        self.event = event
        self._scanner = TagScanner(tag)
        self._max_chunk_size = max_chunk_size()
        self._pieces: list[str] = []
        self._events: list[ExtractorEvent] = []

    @property
    def done(self) -> bool:
        """Never: the text after the thought still passes through."""
        return False

    @property
    def reasoning(self) -> str:
        """Everything emitted so far: the thought (its held-back tail after ``flush``)."""
        return "".join(self._pieces)

    def push(self, chunk: str) -> str:
        if len(chunk) > self._max_chunk_size:
            raise chunk_too_large(len(chunk), self._max_chunk_size)
        if not self._scanner.closed:
            self._emit(self._scanner.feed(chunk))
        return chunk

    def add(self, text: str) -> None:
        """Reasoning the source sent apart from its text (``Reasoning``): emitted as it
        is, with no tag to look for, in order with the thought's pieces."""
        if len(text) > self._max_chunk_size:
            raise chunk_too_large(len(text), self._max_chunk_size)
        self._emit(text)

    def flush(self) -> str:
        """An unclosed thought: emit what was held back."""
        self._emit(self._scanner.take_held_back())
        return ""

    def drain_events(self) -> list[ExtractorEvent]:
        events, self._events = self._events, []
        return events

    def reset(self) -> None:
        self._scanner.reset()
        self._pieces = []
        self._events = []

    def _emit(self, piece: str) -> None:
        if piece:
            self._pieces.append(piece)
            self._events.append(ExtractorEvent(self.event, {"text": piece}, piece=True))
