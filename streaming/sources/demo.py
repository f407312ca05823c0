"""The built-in demo model: a deterministic local "model" for trying the page without a key.

It says what it is, echoes the prompt, refers to the previous one when the conversation has
one, and explains what the page shows in Markdown (a list, a table, a code block), streamed
token by token with a model's pacing. With ``xml=True`` (what the ``xml``, ``response`` and
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
    'To talk to a real model, set STREAMING["MODEL"] in the settings, or OPENAI_API_KEY '
    "(and OPENAI_MODEL, gpt-4o-mini by default) before you start the server. Add "
    "OPENAI_BASE_URL to use any OpenAI-compatible server instead, such as a local Ollama "
    "or vLLM."
)

_PAGE_XML = (
    "**What this page shows**\n\n"
    "- My raw reply is XML: a thought, the actions (REPLY) and this text. The extractor "
    "pipeline filters it while it streams: the thought is shown apart as reasoning, the "
    "tags never reach the page.\n"
    "- The text arrives token by token, about {ms} ms apart, split anywhere, even in the "
    "middle of a tag, as a real model's chunks are.\n"
    "- It is Markdown, rendered while it streams: this list, the table and the code below."
)

_PAGE_PLAIN = (
    "**What this page shows**\n\n"
    "- This reply streams as it is, token by token, about {ms} ms apart, with nothing "
    "filtered: the passthrough pipeline asks me for plain text.\n"
    "- With the xml, response or action pipelines I answer in XML with a thought, the "
    "actions and a text, and the extractors keep only the text while it streams.\n"
    "- It is Markdown, rendered while it streams: this list, the table and the code below."
)

_TABLE = (
    "| pipeline | what reaches the page |\n"
    "|---|---|\n"
    "| response | the text, when the action is REPLY |\n"
    "| xml | the content of the text element |\n"
    "| action | the text of XML, plain text as it is, nothing of JSON |\n"
    "| passthrough | everything, unfiltered |"
)

_CODE = (
    "Your own view streams a real model in a few lines:\n\n"
    "```python\n"
    "class Chat(SSEView):\n"
    "    extractors = [ResponseStreamExtractor]\n"
    "\n"
    "    def stream(self, prompt, **params):\n"
    '        return openai_chat(chat_messages(prompt, pipeline="response"))\n'
    "```"
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
        """The whole answer to ``prompt`` (after the conversation's ``history``), as it
        will be streamed: Markdown with a list, a table and a code block."""
        echo = _echo(prompt, xml=self.xml)
        previous = _previous_prompt(history)
        turn = 1 + sum(1 for message in history or () if message.get("role") == "user")
        memory = (
            f"Before that you wrote {_echo(previous, xml=self.xml)}: this is message {turn} "
            "of our conversation, and the server sent me the earlier turns it stored."
            if previous is not None
            else "This is the first message of our conversation."
        )
        ms = f"{self.token_delay * 1000:g}"
        page = (_PAGE_XML if self.xml else _PAGE_PLAIN).format(ms=ms)
        text = (
            f"{_WHO}\n\nYou wrote: {echo}. {memory}\n\n{page}\n\n{_TABLE}\n\n"
            f"{_CODE}\n\n{_REAL_MODEL}"
        )
        if not self.xml:
            return text
        thought = (
            f"The user wrote {echo}"
            + (f", after {_echo(previous, xml=True)}" if previous is not None else "")
            + ". I am the demo model, so I explain the page with a list, a table and a "
            "code block. This thought is part of my raw reply; the page shows it apart."
        )
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


def _previous_prompt(history: Sequence[Message] | None) -> str | None:
    """The user's last prompt before this one, if the conversation has one."""
    for message in reversed(history or ()):
        if message.get("role") == "user":
            return message.get("content", "")
    return None


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
