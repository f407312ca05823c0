"""The built-in demo model: a deterministic local "model" for trying the page without a key.

It says what it is, explains what the page shows and echoes the prompt, streamed token by
token with a model's pacing. With ``xml=True`` (what the ``xml``, ``response`` and
``action`` pipelines ask for) it answers in the ElizaOS XML shape
``<response><thought>…</thought><actions>REPLY</actions><text>…</text></response>``, so
the extractors have a thought to filter out; with ``xml=False`` (``passthrough``) it answers
in plain text, as a real model does when its system prompt asks for plain text. Tokens are
words, sub-words and pieces of tags, split differently for every prompt but always the same
way for the same prompt.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
from collections.abc import AsyncIterator, Sequence

from ..conf import setting
from .prompts import Message

#: Characters of the prompt echoed back at most.
ECHO_LIMIT = 300

#: Angle brackets of an echoed prompt become look-alikes that cannot open or close a tag.
_HARMLESS_BRACKETS = str.maketrans(
    {
        "<": "\N{SINGLE LEFT-POINTING ANGLE QUOTATION MARK}",
        ">": "\N{SINGLE RIGHT-POINTING ANGLE QUOTATION MARK}",
    }
)

_PIECES = re.compile(r"<[^<>]*>|\s*[^\s<]+|\s+(?=<)|<|\s+")

_WHO = (
    "Hello! I am the built-in demo model, not a real language model: a few lines of Python "
    "in this Django process that answer every message in the same way, so you can try "
    "this page without an API key."
)

_REAL_MODEL = (
    "To talk to a real model, set OPENAI_API_KEY (and OPENAI_MODEL, gpt-4o-mini by "
    "default) before you start the server. Add OPENAI_BASE_URL to use any "
    "OpenAI-compatible server instead, such as a local Ollama or vLLM."
)

_XML_PAGE = (
    "What this page shows:\n"
    "- My raw reply is XML with three parts: a thought, the actions (REPLY) and this text. "
    "The extractor pipeline filters it while it streams, so the thought and the tags never "
    "reach the page; only this text does.\n"
    "- The text arrives token by token, about {ms} ms apart. Tokens are split anywhere, "
    "even in the middle of a tag, as a real model's chunks are.\n"
    "- Pick the passthrough pipeline to see a reply streamed as it is, with nothing "
    "filtered."
)

_PLAIN_PAGE = (
    "What this page shows: this reply streams to the page as it is, token by token, about "
    "{ms} ms apart, with nothing filtered, because I was asked for plain text as the "
    "passthrough pipeline asks. With the xml, response or action pipelines I answer in XML "
    "with a thought, the actions and a text, and the extractors keep only the text while "
    "it streams."
)


class DemoModel:
    """A deterministic stand-in for a chat model (it never pretends to be a real one).

    ``token_delay`` is the average pause before each token in seconds (default
    ``STREAMING["DEMO_TOKEN_DELAY"]``); each pause varies between half and one and a half
    times it, as a real model's do.
    """

    def __init__(self, *, token_delay: float | None = None, xml: bool = True) -> None:
        delay = float(setting("DEMO_TOKEN_DELAY") if token_delay is None else token_delay)
        if delay < 0:
            raise ValueError(f"token_delay must not be negative, not {delay!r}")
        self.token_delay = delay
        self.xml = xml

    def reply(self, prompt: str, history: Sequence[Message] | None = None) -> str:
        """The whole answer to ``prompt``, as it will be streamed."""
        echo = _echo(prompt, xml=self.xml)
        earlier = len(history or ())
        memory = (
            f"\n\nEarlier messages in this conversation: {earlier}. I do not read them; "
            "a real model gets them all."
            if earlier
            else ""
        )
        ms = f"{self.token_delay * 1000:g}"
        if not self.xml:
            page = _PLAIN_PAGE.format(ms=ms)
            return f"{_WHO}\n\nYou wrote: {echo}{memory}\n\n{page}\n\n{_REAL_MODEL}"
        thought = (
            f"The user wrote {echo}. I am the demo model, so I explain the page and echo "
            "the message. This thought is part of my raw reply and is filtered out."
        )
        text = f"{_WHO}\n\nYou wrote: {echo}{memory}\n\n{_XML_PAGE.format(ms=ms)}\n\n{_REAL_MODEL}"
        return (
            f"<response>\n<thought>{thought}</thought>\n<actions>REPLY</actions>\n"
            f"<text>{text}</text>\n</response>"
        )

    def tokens(self, prompt: str, history: Sequence[Message] | None = None) -> list[str]:
        """The answer cut into the tokens it streams as (the same for the same prompt)."""
        return _tokenize(self.reply(prompt, history), _rng(prompt))

    async def stream(
        self, prompt: str, history: Sequence[Message] | None = None
    ) -> AsyncIterator[str]:
        """Yield the answer token by token, pausing about ``token_delay`` before each."""
        pacing = _rng(prompt)
        for token in self.tokens(prompt, history):
            await asyncio.sleep(self.token_delay * (0.5 + pacing.random()))
            yield token


def _rng(prompt: str) -> random.Random:
    """A random generator seeded by the prompt, so the same prompt streams the same way."""
    return random.Random(hashlib.sha256(prompt.encode("utf-8", "replace")).digest())


def _echo(prompt: str, *, xml: bool) -> str:
    """The prompt quoted back, shortened; in XML, angle brackets cannot close a tag."""
    text = " ".join(prompt.split())
    if len(text) > ECHO_LIMIT:
        text = text[:ECHO_LIMIT] + "…"
    if xml:
        text = text.translate(_HARMLESS_BRACKETS)
    return f"“{text}”" if text else "an empty message"


def _tokenize(text: str, rng: random.Random) -> list[str]:
    """Cut ``text`` into model-like tokens: words with their leading space, long words in
    sub-words, tags sometimes split in two, and now and then two tokens merged."""
    tokens: list[str] = []
    for piece in _PIECES.findall(text):
        if piece.startswith("<") and piece.endswith(">"):
            if rng.random() < 0.5:
                cut = rng.randint(1, len(piece) - 1)
                tokens += [piece[:cut], piece[cut:]]
            else:
                tokens.append(piece)
            continue
        while len(piece) > 7:
            cut = rng.randint(3, 5) + (len(piece) - len(piece.lstrip()))
            tokens.append(piece[:cut])
            piece = piece[cut:]
        tokens.append(piece)
    merged: list[str] = []
    for token in tokens:
        if merged and rng.random() < 0.1:
            merged[-1] += token
        else:
            merged.append(token)
    return merged
