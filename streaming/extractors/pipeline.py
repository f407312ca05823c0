"""``Pipeline``: extractors in a chain, each one's output the next one's input, and the
named events any of them emits (``EmitsEvents``), collected in order; and the reasoning a
source sends apart from its text (``push_reasoning``)."""

from __future__ import annotations

from .base import EmitsEvents, ExtractorEvent, StreamExtractor, max_chunk_size
from .passthrough import PassthroughExtractor
from .reasoning import ReasoningExtractor


class Pipeline:
    """Chains extractors; ``flush()`` cascades; done when the last one is done.

    An empty pipeline passes text through unchanged. Build one per request: extractors
    keep state. Text an extractor releases goes to the next one in pieces within
    ``MAX_CHUNK_SIZE``: it is not a model's chunk, and a limit meant for those must not
    refuse it (a reply held back, then released at once, may be longer).
    """

    def __init__(self, *extractors: StreamExtractor) -> None:
        self.extractors: tuple[StreamExtractor, ...] = extractors or (PassthroughExtractor(),)
        self._emitters: list[EmitsEvents] = [
            e for e in self.extractors if isinstance(e, EmitsEvents)
        ]
        #: Whether any extractor emits events (``drain_events``), so that a generation
        #: asks for none per chunk when none does.
        self.emits = bool(self._emitters)
        self._first, *self._rest = self.extractors
        #: Whether any extractor has async callbacks to await (``drain``), so that a
        #: generation awaits nothing per chunk when none has.
        self.drains = any(getattr(e, "drain", None) is not None for e in self.extractors)
        self._max_chunk_size = max_chunk_size()
        #: Where ``push_reasoning`` sends a source's reasoning: the first
        #: ``ReasoningExtractor`` in the chain, else one of its own made on first use.
        self._reasoner: ReasoningExtractor | None = next(
            (e for e in self.extractors if isinstance(e, ReasoningExtractor)), None
        )

    @property
    def done(self) -> bool:
        return self.extractors[-1].done

    def push(self, chunk: str) -> str:
        text = self._first.push(chunk)
        for extractor in self._rest:
            if not text:
                return ""
            if len(text) > self._max_chunk_size:
                text = self._pass(extractor, text)
            else:
                text = extractor.push(text)
        return text

    def flush(self) -> str:
        """Flush each extractor in turn, pushing what the previous ones released first."""
        text = ""
        for extractor in self.extractors:
            if text:
                text = self._pass(extractor, text)
            text += extractor.flush()
        return text

    def _pass(self, extractor: StreamExtractor, text: str) -> str:
        """Push released ``text`` to ``extractor`` in pieces within ``MAX_CHUNK_SIZE``."""
        size = self._max_chunk_size
        return "".join([extractor.push(text[i : i + size]) for i in range(0, len(text), size)])

    def push_reasoning(self, text: str) -> None:
        """Reasoning the source sent apart from its text (``Reasoning`` pieces): emitted as
        ``reasoning`` events by the pipeline's first ``ReasoningExtractor``, in order with
        the ``<thought>`` it reads, and kept in ``reasoning``. A pipeline without one makes
        one of its own for it (outside the chain: it is pushed no text), so a source's
        reasoning is never passed to the extractors as if it were the reply."""
        reasoner = self._reasoner
        if reasoner is None:
            reasoner = self._reasoner = ReasoningExtractor()
            self._emitters.append(reasoner)
            self.emits = True
        reasoner.add(text)

    @property
    def reasoning(self) -> str:
        """The reasoning so far: every ``ReasoningExtractor``'s, the one that takes the
        source's reasoning included."""
        reasoners = [e for e in self.extractors if isinstance(e, ReasoningExtractor)]
        if self._reasoner is not None and self._reasoner not in reasoners:
            reasoners.append(self._reasoner)
        return "".join(e.reasoning for e in reasoners)

    def drain_events(self) -> list[ExtractorEvent]:
        """The events the extractors emitted since the last call (``EmitsEvents``), in
        pipeline order; a pipeline is itself an extractor that emits events."""
        if not self._emitters:
            return []
        events: list[ExtractorEvent] = []
        for extractor in self._emitters:
            events += extractor.drain_events()
        return events

    def reset(self) -> None:
        for extractor in self.extractors:
            extractor.reset()
        if self._reasoner is not None and self._reasoner not in self.extractors:
            self._reasoner.reset()

    async def drain(self) -> None:
        """Await the async callbacks of the extractors that have them (validation)."""
        for extractor in self.extractors:
            drain = getattr(extractor, "drain", None)
            if drain is not None:
                await drain()

    def __repr__(self) -> str:
        return f"Pipeline({', '.join(type(e).__name__ for e in self.extractors)})"
