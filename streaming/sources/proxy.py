"""The upstream proxy source: any HTTP endpoint that streams text, read with ``httpx``.

An event-stream upstream (``Content-Type: text/event-stream``) is parsed event by event;
each event's text is its data, or one field of its JSON data (``text_field``: a dotted
path such as ``"response"`` for Cloudflare Workers AI or ``"choices.0.delta.content"``
for an OpenAI-compatible server). ``data: [DONE]`` ends the stream. Any other upstream
streams its body as UTF-8 text. Closing or cancelling the iterator closes the upstream
connection at once. The answer is read by ``read_upstream`` (``sources/upstream.py``).
"""

from __future__ import annotations

import json as jsonlib
from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing
from typing import Any

import httpx

from ..conf import setting
from ..errors import StreamError, StreamErrorCode
from ..sse import ParsedEvent
from .http import timeouts, tls_context, transport_error
from .upstream import ERROR_BODY_LIMIT, read_upstream

#: The data of the event that ends an OpenAI-style (and Cloudflare) event stream.
DONE = "[DONE]"


async def proxy(
    url: str,
    method: str = "POST",
    *,
    headers: Mapping[str, str] | None = None,
    json: Any = None,
    content: str | bytes | None = None,
    text_field: str | None = None,
    client: httpx.AsyncClient | None = None,
    connect_timeout: float | None = None,
    read_timeout: float | None = None,
    max_line: int | None = None,
) -> AsyncIterator[str]:
    """Stream the text of the upstream answer to one request.

    ``text_field`` ``None`` takes each event's data as it is. Without ``client`` one is
    made for this request and closed with it. Timeouts default to
    ``STREAMING["UPSTREAM_CONNECT_TIMEOUT"]`` and ``["UPSTREAM_READ_TIMEOUT"]`` (the
    longest silence between two chunks), ``max_line`` to ``["UPSTREAM_MAX_LINE"]``.

    Failures are a ``StreamError``: TIMEOUT; UPSTREAM_ERROR for a non-2xx status (in
    ``details``), a broken connection or an ``error`` the upstream sent; PARSE_ERROR for
    invalid UTF-8, an SSE line over ``max_line`` or event data that is not the JSON
    ``text_field`` expects.
    """
    connect, read = timeouts(connect_timeout, read_timeout)
    limit = int(setting("UPSTREAM_MAX_LINE") if max_line is None else max_line)
    owned = client is None
    http = client or httpx.AsyncClient(verify=tls_context())
    try:
        request = http.build_request(
            method,
            url,
            headers=headers,
            json=json,
            content=content,
            timeout=httpx.Timeout(read, connect=connect),
        )
        try:
            response = await http.send(request, stream=True)
            try:
                async with aclosing(read_upstream(response, max_line=limit)) as items:
                    async for item in items:
                        if isinstance(item, str):
                            yield item
                            continue
                        if item.data == DONE:
                            return
                        piece = _event_text(item, text_field)
                        if piece:
                            yield piece
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            raise transport_error(exc, connect, read) from exc
    finally:
        if owned:
            await http.aclose()


def _event_text(event: ParsedEvent, text_field: str | None) -> str | None:
    """The text one event carries (``None``: none, e.g. a role-only or usage chunk)."""
    if event.event == "error":
        raise StreamError(
            StreamErrorCode.UPSTREAM_ERROR,
            "The upstream server sent an error event",
            {"data": event.data[:ERROR_BODY_LIMIT]},
        )
    if text_field is None:
        return event.data
    try:
        payload = jsonlib.loads(event.data)
    except ValueError as exc:
        raise StreamError(
            StreamErrorCode.UPSTREAM_ERROR,
            f"The upstream server sent an event that is not JSON, so it has no "
            f"{text_field!r} field",
            {"data": event.data[:ERROR_BODY_LIMIT]},
        ) from exc
    value = _lookup(payload, text_field)
    if value is None:
        if isinstance(payload, dict) and "error" in payload:
            raise StreamError(
                StreamErrorCode.UPSTREAM_ERROR,
                "The upstream server sent an error",
                {"error": payload["error"]},
            )
        return None
    if not isinstance(value, str):
        raise StreamError(
            StreamErrorCode.UPSTREAM_ERROR,
            f"The upstream field {text_field!r} holds {type(value).__name__}, not text",
        )
    return value


def _lookup(payload: Any, path: str) -> Any:
    """Follow a dotted path through objects and lists (``"choices.0.delta.content"``)."""
    value = payload
    for key in path.split("."):
        if isinstance(value, dict):
            value = value.get(key)
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return None
    return value
