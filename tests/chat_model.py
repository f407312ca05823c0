"""The chat's model in the test settings (``STREAMING["MODEL"]``): the default one (the
``OPENAI_*`` environment, else the demo model), except for prompts that ask for a slow
reply (``slow: ...``, for stopping one midway), one that fails after some text
(``fail: ...``) or one with a NUL character (``nul: ...``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from streaming.errors import StreamError, StreamErrorCode
from streaming.sources import expects_xml
from streaming.sources.model import environment_model
from streaming.sources.prompts import Message

#: Seconds between two words of a slow reply (it has ``SLOW_WORDS`` of them).
SLOW_DELAY = 0.05
SLOW_WORDS = 400


async def model(
    prompt: str, *, pipeline: str | None, history: Sequence[Message]
) -> AsyncIterator[str]:
    xml = expects_xml(pipeline)
    if prompt.startswith("nul:"):
        yield "before\x00after"
        return
    if prompt.startswith(("slow:", "fail:")):
        if xml:
            yield "<response><thought>Thinking.</thought><actions>REPLY</actions><text>"
        words = SLOW_WORDS if prompt.startswith("slow:") else 30
        for n in range(words):
            yield f"word{n} "
            await asyncio.sleep(SLOW_DELAY if prompt.startswith("slow:") else 0)
        if prompt.startswith("fail:"):
            raise StreamError(StreamErrorCode.UPSTREAM_ERROR, "The model server failed")
        if xml:
            yield "</text></response>"
        return
    async for token in environment_model(prompt, pipeline=pipeline, history=history):
        yield token
