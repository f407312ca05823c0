"""The chat's model in the test settings (``STREAMING["MODEL"]``): the default one (the
``OPENAI_*`` environment, else the demo model), except for prompts that ask for a slow
reply (``slow: ...``, for stopping one midway), one that fails after some text
(``fail: ...``), one with a NUL character (``nul: ...``), plain text whatever the
pipeline asks for (``plain: ...``), a source that cannot be made
(``broken: ...``: the factory raises when called), a reply that is mostly reasoning
(``think: ...``: ``THINK_PIECES`` pieces of its ``<thought>``, then "Ok.") or ``openai_chat``
against the OpenAI-compatible server a test started (``openai:<base URL> prompt``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from streaming.errors import StreamError, StreamErrorCode
from streaming.sources import chat_messages, expects_xml
from streaming.sources.model import environment_model
from streaming.sources.prompts import Message

#: Seconds between two words of a slow reply (it has ``SLOW_WORDS`` of them).
SLOW_DELAY = 0.05
SLOW_WORDS = 400
#: The pieces of a ``think:`` reply's reasoning (each "Hmm. ", ``THINK_DELAY`` s apart).
THINK_PIECES = 60
THINK_DELAY = 0.02


def model(prompt: str, *, pipeline: str | None, history: Sequence[Message]) -> AsyncIterator[str]:
    if prompt.startswith("broken:"):
        raise RuntimeError("The model source could not be made")
    return reply(prompt, pipeline=pipeline, history=history)


async def reply(
    prompt: str, *, pipeline: str | None, history: Sequence[Message]
) -> AsyncIterator[str]:
    xml = expects_xml(pipeline)
    if prompt.startswith("plain:"):  # a model that ignores the XML it is asked for
        for word in prompt.removeprefix("plain:").split():
            yield f"{word} "
        return
    if prompt.startswith("openai:"):
        from streaming.sources import openai_chat  # the SDK is slow to import: when used

        base_url, _, asked = prompt.removeprefix("openai:").partition(" ")
        messages = chat_messages(asked, pipeline=pipeline, history=history)
        async for piece in openai_chat(messages, model="m", base_url=base_url, api_key="k"):
            yield piece
        return
    if prompt.startswith("think:"):
        yield "<response><thought>"
        for _ in range(THINK_PIECES):
            yield "Hmm. "
            await asyncio.sleep(THINK_DELAY)
        yield "</thought><actions>REPLY</actions><text>Ok.</text></response>"
        return
    if prompt.startswith("nul:"):
        yield "before\x00after"
        return
    if prompt.startswith(("slow:", "fail:")):
        if xml:
            yield "<response><thought>Thinking.</thought><actions>REPLY</actions><text>"
        words = SLOW_WORDS if prompt.startswith("slow:") else 30
        emoji = "🙂" if "emoji" in prompt else ""  # a character of two UTF-16 units
        for n in range(words):
            yield f"word{n}{emoji} "
            await asyncio.sleep(SLOW_DELAY if prompt.startswith("slow:") else 0)
        if prompt.startswith("fail:"):
            raise StreamError(StreamErrorCode.UPSTREAM_ERROR, "The model server failed")
        if xml:
            yield "</text></response>"
        return
    async for token in environment_model(prompt, pipeline=pipeline, history=history):
        yield token
