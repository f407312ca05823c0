"""Helpers for testing your own streaming views and consumers.

``parse_sse`` turns a body into events as a browser dispatches them; ``read_sse`` reads a
streaming response of Django's test client (sync or ``AsyncClient``) to the end;
``ws_reply`` sends a prompt through a ``WebsocketCommunicator`` and collects the frames of
the reply::

    response = await async_client.get("/chat/stream", {"prompt": "Hi"})
    events = await read_sse(response)
    assert json.loads(events[-1].data) == {"done": True}
"""

from __future__ import annotations

from typing import Any

from .sse import ParsedEvent, SSEParser

#: Seconds ``ws_reply`` waits for each frame.
FRAME_TIMEOUT = 10.0
#: The frames that end a reply (extractor ``event`` frames and chunks come before).
END_FRAMES = frozenset({"complete", "error", "cancelled"})


def parse_sse(body: bytes | str) -> list[ParsedEvent]:
    """Every event of a complete SSE body, parsed by the WHATWG rules."""
    parser = SSEParser()
    return parser.feed(body) + parser.close()


async def read_sse(response: Any) -> list[ParsedEvent]:
    """Read a (streaming) test-client response to its end and parse its events.

    A 204 (a finished reply's reconnect) has none. Any other answer that is not a 200
    ``text/event-stream`` raises ``AssertionError`` with its status and body, not an empty
    list: an ``SSEView`` under the sync ``Client`` answers 500 (it needs ``AsyncClient``).
    """
    if response.status_code == 204:
        return []
    content_type = response.get("Content-Type", "")
    if response.status_code != 200 or not content_type.startswith("text/event-stream"):
        body = b"(streaming)" if getattr(response, "streaming", False) else response.content
        raise AssertionError(
            f"Not an event stream: {response.status_code} {content_type!r}: {body[:300]!r}"
        )
    parser = SSEParser()
    events: list[ParsedEvent] = []
    if not getattr(response, "streaming", False):
        return parse_sse(response.content)
    content = response.streaming_content
    if hasattr(content, "__aiter__"):
        async for chunk in content:
            events += parser.feed(chunk)
    else:
        for chunk in content:
            events += parser.feed(chunk)
    return events + parser.close()


async def ws_reply(communicator: Any, prompt: str, **params: Any) -> list[dict[str, Any]]:
    """Send a prompt to a connected ``StreamConsumer``; return its frames up to the end
    (``complete``, ``error`` or ``cancelled``)."""
    await communicator.send_json_to({"type": "prompt", "prompt": prompt, **params})
    frames = [await communicator.receive_json_from(timeout=FRAME_TIMEOUT)]
    while frames[-1]["type"] not in END_FRAMES:
        frames.append(await communicator.receive_json_from(timeout=FRAME_TIMEOUT))
    return frames
