"""A local OpenAI-compatible model for the browser tests, recording what it is sent.

The chat page's server (a ``DemoServer`` subprocess) reaches it through ``OPENAI_BASE_URL``;
it runs the scripted ``Upstream`` of the source tests on an event loop of its own thread,
because the browser tests are synchronous (Playwright's sync API). What it answers depends
on the last user message, so each test asks for the reply it needs:

* a prompt containing ``slowly``: a long reply, 30 ms a token (stop it, reload during it);
* ``late``: the first token after 2 s (leave a chat before it comes);
* ``hostile``: Markdown and HTML that would run script if a page trusted it;
* ``markdown``: a list, a table and a code block;
* ``think``: the ElizaOS XML shape with a ``<thought>`` (for the ``response`` pipeline);
* anything else: ``Answer N to “<prompt>”.`` (N counts the requests), quickly.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Self

from ..sources.upstream import Reply, Request, Script, Upstream

HOSTILE = (
    "Careful now.\n\n"
    '<img src=x onerror="window.__pwned = 1; alert(1)">\n\n'
    "<script>window.__pwned = 2; alert(2)</script>\n\n"
    "[click me](javascript:alert(3)) and [data](data:text/html,<script>alert(4)</script>)\n\n"
    '<a href="#" onclick="alert(5)">raw link</a> <b onmouseover="alert(6)">bold</b>\n\n'
    "![pixel](https://example.invalid/track.png)\n\n"
    '<iframe src="javascript:alert(7)"></iframe><svg onload="alert(8)"></svg>\n\n'
    "[safe](https://example.com/docs) stays a link."
)

MARKDOWN = (
    "Here is what you asked for:\n\n"
    "- first point\n- second point\n\n"
    "| Transport | Reads with |\n|---|---|\n| SSE | `fetch` |\n| WebSocket | frames |\n\n"
    "```python\ndef hello():\n    return 'world'\n```\n\n"
    "That is all."
)

THOUGHT = "The user wants a short answer; I will keep it brief."

#: The slow reply: 90 words in paragraphs of ten, about five seconds.
SLOW = (
    "A slow answer:\n\n"
    + "\n\n".join(
        " ".join(f"word{n}" for n in range(start, start + 10)) for start in range(1, 91, 10)
    )
    + "\n\nThe end."
)


def answer(prompt: str, number: int) -> tuple[str, float]:
    """The reply to ``prompt`` (the ``number``-th request) and the pause before each token."""
    if "slowly" in prompt:
        return SLOW, 0.03
    if "hostile" in prompt:
        return HOSTILE, 0.002
    if "markdown" in prompt:
        return MARKDOWN, 0.002
    if "think" in prompt:
        return (
            f"<response><thought>{THOUGHT}</thought><actions>REPLY</actions>"
            f"<text>Here is the **short** answer.</text></response>",
            0.01,
        )
    return f"Answer {number} to “{prompt}”.", 0.002


def tokens(text: str) -> list[str]:
    """Cut ``text`` in pieces of four characters, as a model's chunks split words and tags."""
    return [text[i : i + 4] for i in range(0, len(text), 4)]


def chunk(content: str | None = None, *, finish: str | None = None) -> dict[str, Any]:
    """One ``chat.completion.chunk`` as OpenAI streams it."""
    return {
        "id": "chatcmpl-browser",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "browser-test-model",
        "choices": [
            {"index": 0, "delta": {"content": content} if content else {}, "finish_reason": finish}
        ],
    }


class ThreadedUpstream:
    """A scripted ``Upstream`` on an event loop of its own thread (Playwright's sync API
    holds this thread's loop), started and stopped as a context manager."""

    def __init__(self, script: Script) -> None:
        self.upstream = Upstream(script)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.upstream.__aenter__(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.upstream.__aexit__(), self.loop).result(20)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class Model(ThreadedUpstream):
    """The recording model: ``url`` for ``OPENAI_BASE_URL``, ``requests`` it was sent."""

    def __init__(self) -> None:
        super().__init__(self._script)

    @property
    def url(self) -> str:
        return f"{self.upstream.url}/v1"

    @property
    def requests(self) -> list[Request]:
        return [r for r in self.upstream.requests if r.path.endswith("/chat/completions")]

    def messages(self, index: int = -1) -> list[dict[str, str]]:
        """The chat messages of one request (the last by default)."""
        return list(self.requests[index].json()["messages"])

    async def _script(self, request: Request, reply: Reply) -> None:
        messages = request.json()["messages"]
        prompt = next(m["content"] for m in reversed(messages) if m["role"] == "user")
        text, pause = answer(prompt, len(self.requests))
        await reply.head()
        if "late" in prompt:
            await asyncio.sleep(2)
        for piece in tokens(text):
            await asyncio.sleep(pause)
            await reply.event(chunk(piece))
        await reply.event(chunk(finish="stop"))
        await reply.event("[DONE]")
        await reply.end()
