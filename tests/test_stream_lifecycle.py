"""Lifecycle over real sockets: disconnects, producers that never await, blocking
sync iterables, keep-alives, and the same stream under a WSGI server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import pytest
from django.test import Client

from streaming.models import Conversation
from streaming.sse import ParsedEvent, SSEParser

from .conftest import probe, wait_for_probe
from .servers import wsgi_server

#: Streams held open at once to count the server's threads.
OPEN_STREAMS = 20


def read_events(chunks: Iterator[bytes], parser: SSEParser, count: int) -> list[ParsedEvent]:
    """Read from the socket until ``count`` more events have arrived."""
    received: list[ParsedEvent] = []
    for chunk in chunks:
        received.extend(parser.feed(chunk))
        if len(received) >= count:
            break
    return received


@pytest.fixture
def reader(live_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_url, timeout=httpx.Timeout(10, read=5)) as client:
        yield client


def test_a_producer_that_never_awaits_streams_and_stops_on_disconnect(
    reader: httpx.Client, http: httpx.Client
) -> None:
    parser = SSEParser()
    with reader.stream("GET", "/plugin/never-awaits?key=never") as response:
        chunks = response.iter_raw()
        first = read_events(chunks, parser, 3)
        assert [e.data for e in first[:3]] == ["event 1", "event 2", "event 3"]
    wait_for_probe(http, "never", ["finally"])


def test_disconnect_cancels_an_async_generator(reader: httpx.Client, http: httpx.Client) -> None:
    with reader.stream("GET", "/plugin/slow-async-gen?key=slow") as response:
        chunks = response.iter_raw()
        assert [e.data for e in read_events(chunks, SSEParser(), 2)] == ["token 1", "token 2"]
    wait_for_probe(http, "slow", ["cancelled", "finally"])


def test_disconnect_cancels_a_manual_callback_and_later_sends_raise(
    reader: httpx.Client, http: httpx.Client
) -> None:
    with reader.stream("GET", "/plugin/abort-probe?key=abort") as response:
        chunks = response.iter_raw()
        assert read_events(chunks, SSEParser(), 1)[0].data == "tick 1"
    wait_for_probe(http, "abort", ["callback:cancelled", "late-send:STREAM_CLOSED"])


def test_a_blocking_sync_generator_is_not_buffered_whole(
    reader: httpx.Client, http: httpx.Client
) -> None:
    parser = SSEParser()
    with reader.stream("GET", "/plugin/gated-sync-gen?key=gate-asgi") as response:
        chunks = response.iter_raw()
        # "first" arrives while the generator is still blocked before "second".
        assert read_events(chunks, parser, 1)[0].data == "first"
        assert probe(http, "gate-asgi") == ["waiting"]
        http.post("/probe/gate-asgi")
        rest = [e.data for e in read_events(chunks, parser, 2)]
    assert rest == ["second", "third"]
    wait_for_probe(http, "gate-asgi", ["waiting", "finally"])


def test_an_open_stream_sends_keepalive_comments(reader: httpx.Client) -> None:
    parser = SSEParser()
    with reader.stream("GET", "/plugin/no-close") as response:
        chunks = response.iter_raw()
        assert read_events(chunks, parser, 1)[0].data == "never-closed"
        for chunk in chunks:
            parser.feed(chunk)
            if "ping" in parser.comments:
                break
    assert parser.comments[:2] == ["stream open", "ping"]


def test_a_quiet_stream_sends_a_keepalive_each_period(reader: httpx.Client) -> None:
    """KEEPALIVE is 1 s in the tests' settings: 3.5 s of silence after a message that
    came between two keep-alive periods bring one comment a second (the silence between
    two writes never longer than a period), not one each 2 s."""
    parser = SSEParser()
    with reader.stream("GET", "/plugin/quiet-after-a-message") as response:
        chunks = response.iter_raw()
        assert read_events(chunks, parser, 1)[0].data == "then-quiet"
        start = time.monotonic()
        for chunk in chunks:
            parser.feed(chunk)
            if time.monotonic() - start >= 3.5:
                break
    assert parser.comments.count("ping") >= 3


@pytest.mark.parametrize("path", ["/plugin/no-close", "/sse/scripted?prompt=Hi&delay=0.25&size=1"])
def test_open_streams_hold_no_thread_each(live_url: str, path: str) -> None:
    """Django gives each ASGI request a sync thread of its own, kept until the request
    ends; a streamed response lets it go when it starts (``sse_response``, ``SSEView``)."""
    limits = httpx.Limits(max_connections=OPEN_STREAMS + 5)
    with httpx.Client(base_url=live_url, timeout=10, limits=limits) as client, ExitStack() as open:

        def threads() -> int:
            return int(client.get("/plugin/threads").json()["threads"])

        before = threads()
        bodies = []  # each stream stays open while its body is referenced
        for _ in range(OPEN_STREAMS):
            response = open.enter_context(client.stream("GET", path))
            assert response.status_code == 200
            bodies.append(response.iter_raw())
            assert next(bodies[-1]).startswith(b": stream open")
        assert threads() - before < OPEN_STREAMS / 2


def test_the_first_bytes_arrive_before_the_first_event(reader: httpx.Client) -> None:
    """daphne sends headers with the first body bytes: the opening comment makes them go."""
    with reader.stream("GET", "/plugin/no-close") as response:
        chunks = response.iter_raw()
        assert response.headers["content-type"].startswith("text/event-stream")
        assert next(chunks).startswith(b": stream open\n\n")


# ------------------------------------------------------------------------ WSGI
@pytest.fixture(scope="module")
def wsgi_url() -> Iterator[str]:
    with wsgi_server() as url:
        yield url


@pytest.fixture
def wsgi(wsgi_url: str) -> Iterator[httpx.Client]:
    # The first request loads Django's URLconf in the server: on a busy machine that
    # alone can take seconds, so the read timeout is a bound on hangs, not on speed.
    with httpx.Client(base_url=wsgi_url, timeout=httpx.Timeout(30, read=30)) as client:
        yield client


def test_wsgi_streams_sync_iterables(wsgi: httpx.Client) -> None:
    response = wsgi.get("/plugin/auto-array")
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.text == (
        ': stream open\n\nid: 1\ndata: a\n\nid: 2\ndata: b\n\nid: 3\ndata: {"c":1}\n\n'
        "id: 4\ndata: 3\n\n"
    )


def test_wsgi_streams_a_blocking_generator_item_by_item(wsgi: httpx.Client) -> None:
    parser = SSEParser()
    with wsgi.stream("GET", "/plugin/gated-sync-gen?key=gate-wsgi") as response:
        chunks = response.iter_raw()
        assert read_events(chunks, parser, 1)[0].data == "first"
        wsgi.post("/probe/gate-wsgi")
        assert [e.data for e in read_events(chunks, parser, 2)] == ["second", "third"]


def test_wsgi_manual_mode_with_sends_from_a_thread(wsgi: httpx.Client) -> None:
    received = SSEParser().feed(wsgi.get("/plugin/wsgi-manual").content)
    assert [e.json() for e in received] == [{"n": 0}, {"n": 1}, {"n": 2}]


def test_under_wsgi_a_reply_is_refused_with_what_it_needs(
    wsgi: httpx.Client, wsgi_url: str
) -> None:
    """``SSEView`` answers 500 with what is needed (a reply started there would be
    cancelled with its request's event loop)."""
    wsgi.get("/")
    headers = {"X-CSRFToken": wsgi.cookies["csrftoken"], "Origin": wsgi_url}
    refused = wsgi.post("/chat/stream", json={"prompt": "Hi"}, headers=headers)
    assert refused.status_code == 500
    assert refused.json() == {
        "error": "Following a reply needs an ASGI server (daphne or uvicorn)",
        "code": "INTERNAL_ERROR",
    }
    resumed = wsgi.get("/chat/stream", headers={"Last-Event-ID": "abc:1"})
    assert resumed.status_code == 500


@pytest.mark.django_db
def test_under_wsgi_the_chat_stores_nothing(client: Client) -> None:
    """Django's test ``Client`` is WSGI: the refusal comes before the conversation."""
    client.get("/")
    refused = client.post(
        "/chat/stream",
        {"prompt": "Hi"},
        content_type="application/json",
        headers={"X-CSRFToken": client.cookies["csrftoken"].value},
    )
    assert refused.status_code == 500
    assert refused.json()["code"] == "INTERNAL_ERROR"
    assert not Conversation.objects.exists()


def test_wsgi_explains_that_async_sources_need_asgi(wsgi: httpx.Client) -> None:
    received = SSEParser().feed(wsgi.get("/plugin/auto-async-gen").content)
    assert [e.event for e in received] == ["error"]
    assert "needs an ASGI server" in received[0].json()["message"]
