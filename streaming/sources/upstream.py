"""``read_upstream``: the one reader of an upstream HTTP answer, for every source that
forwards one (``proxy()`` and ``Stream(httpx_response)``).

An event-stream answer (``Content-Type: text/event-stream``) becomes its events as a
WHATWG client dispatches them; any other answer becomes its text, as it arrives. What
each caller does with them (forward events as they are, pick a JSON field, stop at
``[DONE]``) is its own business.
"""

from __future__ import annotations

import codecs
from collections.abc import AsyncGenerator

import httpx

from ..errors import StreamError, StreamErrorCode
from ..sse import ParsedEvent, SSEParser
from .http import transport_error

#: Bytes of a non-2xx upstream body kept in the error's ``details``.
ERROR_BODY_LIMIT = 1024


async def read_upstream(
    response: httpx.Response, *, max_line: int | None = None
) -> AsyncGenerator[ParsedEvent | str, None]:
    """The events (event stream) or text pieces (anything else) of an opened ``response``.

    Failures are a ``StreamError``: UPSTREAM_ERROR for a non-2xx status (``details``:
    ``status`` and the start of the ``body``) or a broken connection, TIMEOUT for a read
    timeout or invalid UTF-8 (the upstream's fault, as a broken connection is), PARSE_ERROR
    for an SSE line over ``max_line`` characters.
    The response is closed whatever ends the reading.
    """
    try:
        if not response.is_success:
            raise await _status_error(response)
        decoder = codecs.getincrementaldecoder("utf-8")()
        parser = SSEParser(max_line=max_line) if _is_event_stream(response) else None
        async for raw in response.aiter_bytes():
            text = _decode(decoder, raw)
            if parser is None:
                if text:
                    yield text
                continue
            for event in parser.feed(text):
                yield event
        tail = _decode(decoder, b"", final=True)
        if parser is None:
            if tail:
                yield tail
        else:
            for event in parser.feed(tail) + parser.close():
                yield event
    except httpx.HTTPError as exc:
        timeout = response.request.extensions.get("timeout", {})
        raise transport_error(
            exc, timeout.get("connect") or 0.0, timeout.get("read") or 0.0
        ) from exc
    finally:
        await response.aclose()


def _is_event_stream(response: httpx.Response) -> bool:
    content_type = response.headers.get("content-type", "")
    return content_type.split(";")[0].strip().lower() == "text/event-stream"


def _decode(decoder: codecs.IncrementalDecoder, raw: bytes, final: bool = False) -> str:
    try:
        return decoder.decode(raw, final)
    except UnicodeDecodeError as exc:
        raise StreamError(
            StreamErrorCode.UPSTREAM_ERROR,
            "The upstream server sent invalid UTF-8",
            {"reason": str(exc)},
        ) from exc


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
