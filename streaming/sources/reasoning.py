"""``Reasoning``: a piece of a model's reasoning that a source yields apart from its text.

Models that reason send it apart from the answer (a provider's ``reasoning_content`` or
``reasoning``, which ``openai_chat`` reads). A source yields it as ``Reasoning`` pieces
among its text, and every reader of sources in the package keeps the two apart:

* a generation (``SSEView``, ``StreamConsumer``, the chat) hands it to its pipeline's
  ``push_reasoning``, never to its extractors: ``reasoning`` events (as a
  ``ReasoningExtractor``'s for a ``<thought>``), stored as the chat message's
  ``reasoning``, counted in ``MAX_REPLY_CHARS``;
* ``Stream`` / ``sse_response`` send it as an SSE event ``reasoning``, data
  ``{"text": piece}``;
* ``use_model`` leaves it out of the raw reply and of its streaming context.

A ``Reasoning`` is a ``str``, so a source stays an iterator of text; code of your own
that reads a source tells the two apart with ``isinstance(piece, Reasoning)``.
"""

from __future__ import annotations

#: The name of the event that carries reasoning (``ReasoningExtractor``'s default too).
REASONING_EVENT = "reasoning"


class Reasoning(str):
    """A piece of the model's reasoning, yielded by a source apart from its text."""

    __slots__ = ()
