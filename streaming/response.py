"""``SSEResponse`` and ``sse_response``: a ``Stream`` (or a followed reply's
``ReplyBody``) as a Django streaming response; ``NoContent``, the 204 of a reply that has
nothing (more) to send and of a done ``DELETE``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from django.http import HttpResponse, StreamingHttpResponse

from .reply_body import ReplyBody
from .request_thread import release_request_thread
from .stream import Stream

SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


class NoContent(HttpResponse):
    """``204 No Content`` without the ``Content-Type`` Django gives every response: there
    is no body to type."""

    def __init__(self) -> None:
        super().__init__(status=204)
        del self["Content-Type"]


class SSEResponse(StreamingHttpResponse):
    """A ``text/event-stream`` response whose body is a ``Stream`` or a ``ReplyBody``.

    Under ASGI the server reads the body's async bytes directly (so Django's
    ``aclosing`` closes our generator, not a wrapper of it), and lets the request's own
    sync thread go meanwhile (``streaming.request_thread``); under WSGI it reads a
    ``Stream``'s sync body. ``close()`` (Django calls it when the response ends, also
    after a disconnect) stops a stream's producer, or closes a reply body.
    """

    def __init__(
        self,
        stream: Stream | ReplyBody,
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.stream = stream
        merged = dict(SSE_HEADERS)
        merged.update(headers or {})
        super().__init__(stream, status=status, headers=merged)
        self._resource_closers.append(stream.abort if isinstance(stream, Stream) else stream.close)

    def _set_streaming_content(self, value: Any) -> None:
        if isinstance(value, Stream | ReplyBody):
            # Which body (async or sync) is chosen when the server starts reading.
            self._iterator = value
            self.is_async = True
        else:
            super()._set_streaming_content(value)

    def __aiter__(self) -> AsyncIterator[bytes]:
        # The server starts reading: the request's sync work is done, its thread can go.
        release_request_thread()
        if self._iterator is self.stream:
            return aiter(self.stream)
        return super().__aiter__()

    def __iter__(self) -> Iterator[bytes]:
        if self._iterator is self.stream:
            return iter(self.stream)
        return super().__iter__()


def sse_response(
    value: Any = None,
    *,
    event: str | None = None,
    retry: int | None = None,
    headers: Mapping[str, str] | None = None,
    status: int = 200,
) -> SSEResponse:
    """Stream ``value`` (anything ``Stream`` accepts, or a ``Stream``) as Server-Sent Events."""
    stream = value if isinstance(value, Stream) else Stream(value, event=event, retry=retry)
    return SSEResponse(stream, status=status, headers=headers)
