"""The upstream proxy source: any HTTP endpoint that streams text, read with ``httpx``.

An event-stream upstream (``Content-Type: text/event-stream``) is parsed event by event;
each event's text is its data, or one field of its JSON data (``text_field``: a dotted
path such as ``"response"`` for Cloudflare Workers AI or ``"choices.0.delta.content"``
for an OpenAI-compatible server). ``data: [DONE]`` ends the stream. Any other upstream
streams its body as UTF-8 text. Closing or cancelling the iterator closes the upstream
connection at once.
"""

from __future__ import annotations

import codecs
import json as jsonlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx

from ..conf import setting
from ..errors import StreamError, StreamErrorCode
from ..sse import ParsedEvent, SSEParser
from .http import timeouts, tls_context, transport_error

#: The data of the event that ends an OpenAI-style (and Cloudflare) event stream.
DONE = "[DONE]"
#: Bytes of a non-2xx upstream body kept in the error's ``details``.
ERROR_BODY_LIMIT = 1024


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
                if not response.is_success:
                    raise await _status_error(response)
                reader = _BodyReader(_is_event_stream(response), text_field, limit)
                async for raw in response.aiter_bytes():
                    for piece in reader.feed(raw):
                        yield piece
                    if reader.done:
                        return
                for piece in reader.feed(b"", final=True):
                    yield piece
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            raise transport_error(exc, connect, read) from exc
    finally:
        if owned:
            await http.aclose()


def _is_event_stream(response: httpx.Response) -> bool:
    content_type = response.headers.get("content-type", "")
    return content_type.split(";")[0].strip().lower() == "text/event-stream"


async def _status_error(response: httpx.Response) -> StreamError:
    """UPSTREAM_ERROR for a non-2xx answer, with the start of its body in ``details``."""
    body = b""
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) >= ERROR_BODY_LIMIT:
            break
    return StreamError(
        StreamErrorCode.UPSTREAM_ERROR,
        f"The upstream server answered HTTP {response.status_code} {response.reason_phrase}",
        {
            "status": response.status_code,
            "body": body[:ERROR_BODY_LIMIT].decode("utf-8", errors="replace"),
        },
    )


class _BodyReader:
    """Upstream body bytes in, text pieces out: plain text as it is, or the events' texts.

    Bytes are decoded incrementally (a character may be split across chunks); ``done``
    turns true at ``data: [DONE]``.
    """

    def __init__(self, event_stream: bool, text_field: str | None, max_line: int) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._parser = SSEParser(max_line=max_line) if event_stream else None
        self._text_field = text_field
        self.done = False

    def feed(self, raw: bytes, final: bool = False) -> list[str]:
        """The text pieces completed by ``raw``; ``final`` marks the end of the body."""
        try:
            text = self._decoder.decode(raw, final)
        except UnicodeDecodeError as exc:
            raise StreamError(
                StreamErrorCode.PARSE_ERROR,
                "The upstream server sent invalid UTF-8",
                {"reason": str(exc)},
            ) from exc
        if self._parser is None:
            return [text] if text else []
        events = self._parser.feed(text) if text else []
        if final:
            events += self._parser.close()
        pieces: list[str] = []
        for event in events:
            if event.data == DONE:
                self.done = True
                break
            piece = _event_text(event, self._text_field)
            if piece:
                pieces.append(piece)
        return pieces


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
            StreamErrorCode.PARSE_ERROR,
            f"An upstream event is not JSON, so it has no {text_field!r} field",
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
            StreamErrorCode.PARSE_ERROR,
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
