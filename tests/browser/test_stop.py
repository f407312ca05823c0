"""Stop stops the model: after the Stop button, on every transport, the model's request
(to a local OpenAI-compatible upstream, ``tests/sources/upstream.py``) is closed within a
second, also with the chat's ``keep`` policy, which keeps a reply whose client went away,
and also before the model's first token (the reply's id comes with the response's first
bytes). A stopped reply is stored as the page showed it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from ..servers import free_port
from ..sources.upstream import Reply, Request
from ..test_full_path import completion_chunk
from .chatpage import TRANSPORTS, choose, reply_source, send, wait_for_state
from .conftest import DemoServer, open_page
from .model import ThreadedUpstream
from .test_conversations import conversation_id, stored_reply, wait_for_length

#: Counts the reads of a fetch body (the client's SSE reader): once one resolved, the
#: client has parsed the response's first bytes.
READS_SCRIPT = """() => {
  window.__reads = 0;
  const read = ReadableStreamDefaultReader.prototype.read;
  ReadableStreamDefaultReader.prototype.read = function () {
    return read.call(this).then((result) => { window.__reads += 1; return result; });
  };
}"""

#: Holds the page's stop request (SSE's ``DELETE``, the WebSocket's ``cancel`` frame) for
#: 300 ms, as a slow network would: the model writes on meanwhile.
STOP_LATE_SCRIPT = """() => {
  const fetch = window.fetch;
  window.fetch = (input, init) => init?.method === "DELETE"
    ? new Promise((resolve) => setTimeout(resolve, 300)).then(() => fetch(input, init))
    : fetch(input, init);
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    if (String(data).includes('"cancel"')) setTimeout(() => send.call(this, data), 300);
    else send.call(this, data);
  };
}"""

#: Seconds a thinking model is silent before its first token.
THINKING = 2.0


class EndlessUpstream(ThreadedUpstream):
    """An upstream that streams tokens until its client goes away (to a prompt with
    ``think``: only after ``THINKING`` seconds of silence); ``starts`` and ``cuts`` are the
    ``time.monotonic()`` of each request's start and end."""

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.cuts: list[float] = []
        super().__init__(self.script)

    async def script(self, request: Request, reply: Reply) -> None:
        self.starts.append(time.monotonic())
        messages = request.json()["messages"]
        prompt = next(m["content"] for m in reversed(messages) if m["role"] == "user")
        thinking = "think" in prompt.lower()
        try:
            await reply.head()
            if thinking:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(reply.gone.wait(), THINKING)
            while not reply.gone.is_set():
                await reply.event(completion_chunk("more text 🙂 "))
                await asyncio.sleep(0.01)
        finally:
            self.cuts.append(time.monotonic())


@pytest.fixture(scope="module")
def upstream() -> Iterator[EndlessUpstream]:
    with EndlessUpstream() as upstream:
        yield upstream


def upstream_server(
    upstream: EndlessUpstream, settings: str = "tests.browser.settings"
) -> Iterator[DemoServer]:
    """The demo project with ``settings``, its model the upstream's."""
    env = {"OPENAI_API_KEY": "test-key", "OPENAI_BASE_URL": f"{upstream.upstream.url}/v1"}
    server = DemoServer(free_port(), settings=settings, env=env)
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def openai_server(upstream: EndlessUpstream) -> Iterator[DemoServer]:
    yield from upstream_server(upstream)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_stop_closes_the_model_request_within_a_second(
    browser: Any, openai_server: DemoServer, upstream: EndlessUpstream, transport: str
) -> None:
    for page in open_page(browser, openai_server.url):
        choose(page, transport, "passthrough")
        cuts = len(upstream.cuts)
        send(page, "Talk forever")
        wait_for_state(page, "streaming", timeout=10_000)
        page.get_by_role("button", name="Stop").click()
        stopped = time.monotonic()
        wait_for_state(page, "cancelled", timeout=5_000)
        deadline = stopped + 5.0
        while len(upstream.cuts) == cuts and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(upstream.cuts) > cuts, "the model request was not closed after Stop"
        assert upstream.cuts[cuts] - stopped < 1.0


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_stopped_reply_is_stored_as_the_page_showed_it(
    browser: Any, openai_server: DemoServer, transport: str
) -> None:
    """The stop reaches the server 300 ms late, the model writing on meanwhile: the reply
    is stored as the page showed it at Stop (its ``shown`` counts characters as the server
    does: each 🙂 is one, though two UTF-16 units), and shown so after a reload."""
    for page in open_page(browser, openai_server.url):
        choose(page, transport, "passthrough")
        send(page, "Talk forever")
        wait_for_length(page, 60)
        page.evaluate(STOP_LATE_SCRIPT)
        page.get_by_role("button", name="Stop").click()
        wait_for_state(page, "cancelled", timeout=5_000)
        shown = reply_source(page)
        conversation = conversation_id(page)
        assert conversation and "🙂" in shown
        message = stored_reply(page, conversation)
        assert (message["content"], message["status"]) == (shown, "stopped")


@pytest.mark.parametrize("transport", ["sse-post", "sse"])
def test_stop_before_the_first_token_closes_the_model_request(
    browser: Any, openai_server: DemoServer, upstream: EndlessUpstream, transport: str
) -> None:
    """A model slow to its first token: Stop sends ``DELETE ?id=<reply>`` with the id of
    the response's first bytes (``fetch``), or with that of the first message, which an
    ``EventSource`` waits for muted; the kept reply does not run on unwatched (for
    ``KEEP_GRACE``, a minute)."""
    for page in open_page(browser, openai_server.url):
        page.evaluate(READS_SCRIPT)
        choose(page, transport, "passthrough")
        starts, cuts = len(upstream.starts), len(upstream.cuts)
        send(page, "Think it over")
        deadline = time.monotonic() + 5.0
        while len(upstream.starts) == starts and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(upstream.starts) > starts, "the model was not asked"
        if transport == "sse-post":
            page.wait_for_function("window.__reads > 0", polling="raf", timeout=5_000)
        else:
            expect(page.locator("#connection")).to_have_attribute("data-state", "open")
        wait_for_state(page, "waiting", timeout=1_000)  # no token came
        page.get_by_role("button", name="Stop").click()
        wait_for_state(page, "cancelled", timeout=5_000)
        deadline = time.monotonic() + 5.0
        while len(upstream.cuts) == cuts and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(upstream.cuts) > cuts, "the model request was not closed after Stop"


@pytest.fixture(scope="module")
def slow_start_server(upstream: EndlessUpstream) -> Iterator[DemoServer]:
    """The demo project on the upstream, its replies a second slow to start."""
    yield from upstream_server(upstream, "tests.browser.settings_slow_create")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_stop_before_the_response_names_the_reply_stops_it(
    browser: Any, slow_start_server: DemoServer, upstream: EndlessUpstream, transport: str
) -> None:
    """Stop while the server still starts the reply (its response comes a second after the
    request): the client waits, muted, for the reply's id, then stops it. No model request
    stays open (with the chat's ``keep`` policy a reply whose request was only aborted ran
    on unwatched for ``KEEP_GRACE``, a minute)."""
    for page in open_page(browser, slow_start_server.url):
        choose(page, transport, "passthrough")
        starts, cuts = len(upstream.starts), len(upstream.cuts)
        send(page, "Talk forever")
        page.get_by_role("button", name="Stop").click()
        stopped = time.monotonic()
        wait_for_state(page, "cancelled", timeout=1_000)
        time.sleep(max(0.0, stopped + 2.5 - time.monotonic()))  # past the reply's start

        deadline = time.monotonic() + 5.0
        while open_requests(upstream, starts, cuts) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert open_requests(upstream, starts, cuts) == 0, "the model request is still open"


def open_requests(upstream: EndlessUpstream, starts: int, cuts: int) -> int:
    """The model requests started since ``starts`` requests and ``cuts`` cuts, not cut."""
    return (len(upstream.starts) - starts) - (len(upstream.cuts) - cuts)


@pytest.mark.parametrize("transport", ["sse-post", "sse"])
def test_a_prompt_sent_right_after_stop_waits_for_the_stop(page: Any, transport: str) -> None:
    """Stop, then a new prompt at once, while the stop (``DELETE``) is still on its way:
    the prompt's request waits for the stop's answer, so the server does not find the
    stopped reply still running and refuse the prompt (``CONVERSATION_BUSY``)."""
    choose(page, transport, "passthrough")
    send(page, "Answer slowly so I can stop you")
    wait_for_length(page, 20)
    page.evaluate(STOP_LATE_SCRIPT)
    page.get_by_role("button", name="Stop", exact=True).click()
    wait_for_state(page, "cancelled", timeout=5_000)
    send(page, "And now this")
    wait_for_state(page, "complete")
    assert "And now this" in reply_source(page)
    expect(page.get_by_role("textbox", name="Message")).to_have_value("")
