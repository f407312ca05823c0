"""Reading a streaming SSE response over a real socket (httpx) in the tests."""

from __future__ import annotations

import httpx

from streaming.sse import ParsedEvent, SSEParser


def events_until(response: httpx.Response, count: int) -> list[ParsedEvent]:
    """Read ``count`` events of a streaming response (then the caller drops it)."""
    parser = SSEParser()
    events: list[ParsedEvent] = []
    for chunk in response.iter_raw():
        events += parser.feed(chunk)
        if len(events) >= count:
            break
    return events
