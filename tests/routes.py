"""Test-only views: one per reference case, plus probes the tests read from outside.

``/probe/<key>`` (GET) returns what the server recorded under ``key``; POST opens the
gate of that key, so a test can hold a producer at a point without sleeping.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt, ensure_csrf_cookie

from streaming import ServerSentEvent, Stream, StreamError, sse_response
from streaming.owners import owner_of

PROBES: defaultdict[str, list[str]] = defaultdict(list)
GATES: defaultdict[str, threading.Event] = defaultdict(threading.Event)


def record(key: str, what: str) -> None:
    PROBES[key].append(what)


@csrf_exempt
def probe(request: HttpRequest, key: str) -> HttpResponse:
    if request.method == "POST":
        GATES[key].set()
    return JsonResponse(PROBES[key], safe=False)


def _key(request: HttpRequest) -> str:
    return request.GET.get("key", "default")


# ----------------------------------------------------------------- manual mode
def send_string(request: HttpRequest) -> HttpResponse:
    def callback(stream: Stream) -> None:
        stream.send("hello")
        stream.send("world")
        stream.close()

    return sse_response(callback)


def send_object(request: HttpRequest) -> HttpResponse:
    def callback(stream: Stream) -> None:
        stream.send({"a": 1, "b": "two", "c": [1, 2]})
        stream.send([1, "x", None])
        stream.close()

    return sse_response(callback)


def send_multiline(request: HttpRequest) -> HttpResponse:
    def callback(stream: Stream) -> None:
        stream.send("line1\nline2\nline3")
        stream.send("crlf1\r\ncrlf2")
        stream.close()

    return sse_response(callback)


def send_scalars(request: HttpRequest) -> HttpResponse:
    def callback(stream: Stream) -> None:
        for value in (42, 0, 3.5, True, False, None, "", " "):
            stream.send(value)
        stream.close()

    return sse_response(callback)


def _send_two(first: Any, second: Any) -> Callable[[Stream], None]:
    def callback(stream: Stream) -> None:
        stream.send(first)
        stream.send(second)
        stream.close()

    return callback


def event_option(request: HttpRequest) -> HttpResponse:
    return sse_response(_send_two("first", {"n": 2}), event="greeting")


def retry_option(request: HttpRequest) -> HttpResponse:
    return sse_response(_send_two("first", "second"), retry=3000)


def event_retry_option(request: HttpRequest) -> HttpResponse:
    return sse_response(_send_two("first", "second"), event="update", retry=1500)


def retry_zero(request: HttpRequest) -> HttpResponse:
    def callback(stream: Stream) -> None:
        stream.send("x")
        stream.close()

    return sse_response(callback, retry=0, event="")


def setters(request: HttpRequest) -> HttpResponse:
    def callback(stream: Stream) -> None:
        stream.send("before")
        stream.event = "changed"
        stream.retry = 500
        stream.send("after")
        stream.event = None
        stream.send("event-cleared")
        stream.close()

    return sse_response(callback)


def send_preformatted_id(request: HttpRequest) -> HttpResponse:
    def callback(stream: Stream) -> None:
        stream.send("id: 7\ndata: custom\n\n")
        stream.send("id: 8\nevent: own\ndata: has-event\n\n")
        stream.send("data: no-id-here\n\n")
        stream.close()

    return sse_response(callback, event="evt", retry=2000)


def send_uint8(request: HttpRequest) -> HttpResponse:
    def callback(stream: Stream) -> None:
        stream.send(b"raw-bytes\n")
        stream.close()

    return sse_response(callback, event="bin")


def send_contains_id_substring(request: HttpRequest) -> HttpResponse:
    return sse_response(_send_two("valid: yes", "normal"), event="e")


def manual_wait(request: HttpRequest) -> HttpResponse:
    async def callback(stream: Stream) -> None:
        stream.send("hello")
        await stream.wait(100)
        stream.send("world")
        stream.close()

    return sse_response(callback)


async def value_based(request: HttpRequest) -> HttpResponse:
    stream = Stream()
    loop = asyncio.get_running_loop()
    for n in (1, 2, 3):
        loop.call_later(0.02 * n, stream.send, f"hello world {n}")
    loop.call_later(0.1, stream.close)
    return sse_response(stream)


def error_midway_callback(request: HttpRequest) -> HttpResponse:
    async def callback(stream: Stream) -> None:
        stream.send("before-error")
        await stream.wait(10)
        raise RuntimeError("secret database password in this message")

    return sse_response(callback)


def error_sync_callback(request: HttpRequest) -> HttpResponse:
    def callback(stream: Stream) -> None:
        raise StreamError("UPSTREAM_ERROR", "sync boom")

    return sse_response(callback)


def send_after_close(request: HttpRequest) -> HttpResponse:
    key = _key(request)

    def callback(stream: Stream) -> None:
        stream.send("only")
        stream.close()
        stream.close()
        try:
            stream.send("too late")
        except StreamError as exc:
            record(key, f"send-after-close:{exc.code}")

    return sse_response(callback)


def no_close(request: HttpRequest) -> HttpResponse:
    def callback(stream: Stream) -> None:
        stream.send("never-closed")

    return sse_response(callback)


def quiet_after_a_message(request: HttpRequest) -> HttpResponse:
    """One message half a keep-alive period (1 s in the tests) in, then silence; the
    stream stays open."""

    async def callback(stream: Stream) -> None:
        await asyncio.sleep(0.5)
        stream.send("then-quiet")

    return sse_response(callback)


def threads(request: HttpRequest) -> HttpResponse:
    """How many threads the server process runs now."""
    return JsonResponse({"threads": threading.active_count()})


def with_set_headers(request: HttpRequest) -> HttpResponse:
    return sse_response(["hdr"], headers={"X-Custom": "yes"})


def abort_probe(request: HttpRequest) -> HttpResponse:
    key = _key(request)

    async def callback(stream: Stream) -> None:
        loop = asyncio.get_running_loop()

        def late_send() -> None:
            try:
                stream.send("from a timer")
                record(key, "late-send:accepted")
            except StreamError as exc:
                record(key, f"late-send:{exc.code}")

        try:
            n = 0
            while True:
                n += 1
                stream.send(f"tick {n}")
                await stream.wait(50)
        except asyncio.CancelledError:
            record(key, "callback:cancelled")
            loop.call_later(0.2, late_send)
            raise

    return sse_response(callback)


# -------------------------------------------------------------- automatic mode
def auto_empty(request: HttpRequest) -> HttpResponse:
    return sse_response([])


def auto_array(request: HttpRequest) -> HttpResponse:
    return sse_response(["a", "b", {"c": 1}, 3])


def auto_array_event(request: HttpRequest) -> HttpResponse:
    return sse_response(["a", "b"], event="item", retry=100)


def auto_string(request: HttpRequest) -> HttpResponse:
    return sse_response("abc")


def auto_promise_array(request: HttpRequest) -> HttpResponse:
    async def later() -> list[str]:
        await asyncio.sleep(0.01)
        return ["p1", "p2"]

    return sse_response(later())


def auto_async_gen(request: HttpRequest) -> HttpResponse:
    async def ticks() -> AsyncIterator[Any]:
        yield "tick-1"
        await asyncio.sleep(0.05)
        yield {"tick": 2}
        await asyncio.sleep(0.05)
        yield "tick-3"

    return sse_response(ticks())


class _AsyncStrings:
    """An async iterable that is not a generator (as a ReadableStream is)."""

    def __init__(self, items: list[Any]) -> None:
        self.items = list(items)

    def __aiter__(self) -> _AsyncStrings:
        return self

    async def __anext__(self) -> Any:
        if not self.items:
            raise StopAsyncIteration
        await asyncio.sleep(0)
        return self.items.pop(0)


def auto_readable_strings(request: HttpRequest) -> HttpResponse:
    return sse_response(_AsyncStrings(["rs-1", "rs-2"]))


def auto_readable_bytes(request: HttpRequest) -> HttpResponse:
    return sse_response(_AsyncStrings([b"data: b1\n\n", b"data: b2\n\n"]), event="bytes")


def error_midway_auto(request: HttpRequest) -> HttpResponse:
    async def failing() -> AsyncIterator[str]:
        yield "before-error"
        await asyncio.sleep(0.01)
        raise RuntimeError("secret token sk-123 in this message")

    return sse_response(failing())


def _upstream_url(request: HttpRequest, name: str) -> str:
    return request.build_absolute_uri(f"/upstream/{name}")


def proxy_fetch(request: HttpRequest) -> HttpResponse:
    """The un-awaited ``client.send(..., stream=True)``, as the seed passes ``fetch()``."""
    return sse_response(_proxy_stream(request, "sse"))


def _proxy_stream(request: HttpRequest, name: str, **options: Any) -> Stream:
    client = httpx.AsyncClient(timeout=10)

    async def open_upstream() -> httpx.Response:
        upstream = client.build_request("GET", _upstream_url(request, name))
        return await client.send(upstream, stream=True)

    return Stream(open_upstream(), **options)


def proxy_fetch_awaited_event(request: HttpRequest) -> HttpResponse:
    return sse_response(_proxy_stream(request, "sse", event="proxied"))


def proxy_fetch_text(request: HttpRequest) -> HttpResponse:
    return sse_response(_proxy_stream(request, "text"))


def proxy_context(request: HttpRequest) -> HttpResponse:
    """The un-entered ``client.stream(...)`` context, as the Elysia seed passes fetch()."""
    client = httpx.AsyncClient(timeout=10)
    return sse_response(client.stream("GET", _upstream_url(request, "sse")))


def proxy_dies(request: HttpRequest) -> HttpResponse:
    return sse_response(_proxy_stream(request, "dies"))


def proxy_status(request: HttpRequest) -> HttpResponse:
    return sse_response(_proxy_stream(request, "missing"))


# ------------------------------------------------------------------ lifecycle
def never_awaits(request: HttpRequest) -> HttpResponse:
    """An endless async generator that never suspends on its own."""
    key = _key(request)

    async def endless() -> AsyncIterator[str]:
        n = 0
        try:
            while True:
                n += 1
                yield f"event {n}"
        finally:
            record(key, "finally")

    return sse_response(endless())


def slow_async_gen(request: HttpRequest) -> HttpResponse:
    key = _key(request)

    async def tokens() -> AsyncIterator[str]:
        try:
            n = 0
            while True:
                n += 1
                yield f"token {n}"
                await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            record(key, "cancelled")
            raise
        finally:
            record(key, "finally")

    return sse_response(tokens())


def gated_sync_gen(request: HttpRequest) -> HttpResponse:
    """A blocking sync generator: the second item waits for the test to open the gate."""
    key = _key(request)

    def items() -> Iterator[str]:
        try:
            yield "first"
            record(key, "waiting")
            if not GATES[key].wait(10):
                record(key, "gate timed out")
            yield "second"
            time.sleep(0.01)
            yield "third"
        finally:
            record(key, "finally")

    return sse_response(items())


def wsgi_manual(request: HttpRequest) -> HttpResponse:
    """Value-based manual mode fed by a thread (works under WSGI too)."""
    stream = Stream()

    def feed() -> None:
        for n in range(3):
            time.sleep(0.02)
            stream.send({"n": n})
        stream.close()

    threading.Thread(target=feed, daemon=True).start()
    return sse_response(stream)


def explicit_events(request: HttpRequest) -> HttpResponse:
    return sse_response(
        [
            ServerSentEvent(data="one", event="custom", retry=10),
            ServerSentEvent(comment="just a comment"),
            ServerSentEvent(data="two", id="own-id"),
            "three",
        ]
    )


ROUTES: dict[str, Callable[[HttpRequest], Any]] = {
    name.replace("_", "-"): view
    for name, view in list(globals().items())
    if callable(view)
    and getattr(view, "__module__", None) == __name__
    and name not in {"record", "probe", "plugin", "upstream"}
    and not name.startswith("_")
}


async def plugin(request: HttpRequest, name: str) -> HttpResponse:
    view = ROUTES.get(name)
    if view is None:
        return HttpResponse(status=404)
    result = view(request)
    if asyncio.iscoroutine(result):
        result = await result
    return result  # type: ignore[no-any-return]


# ----------------------------------------------------------------- upstreams
async def upstream(request: HttpRequest, name: str) -> HttpResponse:
    """Upstream endpoints that the proxy cases stream from (the same server)."""
    if name == "sse":

        async def sse() -> AsyncIterator[bytes]:
            yield b": upstream comment\n\ndata: up1\n\n"
            await asyncio.sleep(0.01)
            yield b"event: tick\r\nid: 99\r\ndata: up2\r\n\r\n"

        return StreamingHttpResponse(sse(), content_type="text/event-stream")
    if name == "text":

        async def text() -> AsyncIterator[bytes]:
            yield b"plain-1 "
            await asyncio.sleep(0.01)
            # "é" split across two chunks: the proxy must decode it whole.
            yield b"plain-2 \xc3"
            await asyncio.sleep(0.01)
            yield b"\xa9"

        return StreamingHttpResponse(text(), content_type="text/plain; charset=utf-8")
    if name == "dies":

        async def dies() -> AsyncIterator[bytes]:
            yield b"data: alive\n\n"
            await asyncio.sleep(0.05)
            raise ConnectionError("upstream crashed")

        return StreamingHttpResponse(dies(), content_type="text/event-stream")
    return HttpResponse("no such upstream", status=502)


@ensure_csrf_cookie
def visitor(request: HttpRequest) -> HttpResponse:
    """A page of a project's own that makes the visitor's owner token (``owner_of``), as
    the README tells such a page to, and sets the CSRF cookie: what a test's client gets
    first when its subject is not the chat page, which makes no token (a visitor's first
    chat does)."""
    owner_of(getattr(request, "user", None), request.session)
    return HttpResponse(status=204)
