"""The server goes away mid-reply: the page says so, reconnects, and works again. The
network drops while the model thinks (before its first token): the page resumes the same
reply, and no second one is started. The network stays away for longer than the page
retries, while the server finishes the reply: back, the page shows the stored reply. The
connection goes silent without ending (half-open): the page gives it up and resumes. The
network comes back during a backoff: the page reconnects at once. A WebSocket closes
after a prompt left and before any answer to it, or a POSTed prompt's connection drops
(or a proxy answers 502) before a byte of its reply: the page finds the prompt's reply in
the stored chat (running, or ended), or sends the prompt again once (lost again: back in
the message box). Gone for longer than the page reads that chat, then back (``online``):
the page shows the prompt's reply, and sends nothing the server never had."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urljoin

import pytest
from playwright.sync_api import expect

from ..sources.upstream import Reply, Request
from .chatpage import (
    TRANSPORTS,
    choose,
    last_reply,
    reply_source,
    reply_text,
    send,
    trail,
    wait_for_state,
)
from .conftest import DemoServer, demo_server, open_page
from .model import ThreadedUpstream, chunk, tokens
from .proxy import CuttingProxy
from .test_conversations import hold_the_prompt, wait_until_held


@pytest.fixture
def page(browser: Any, restartable_server: DemoServer) -> Iterator[Any]:
    yield from open_page(browser, restartable_server.url)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_server_restart_mid_reply(
    page: Any, restartable_server: DemoServer, transport: str
) -> None:
    connection = page.locator("#connection")
    choose(page, transport, "response")
    if transport == "ws":
        expect(connection).to_have_attribute("data-state", "open")
    send(page, "Are you still there?")
    wait_for_state(page, "streaming", timeout=5_000)

    restartable_server.stop()
    try:
        wait_for_state(page, "reconnecting", timeout=5_000)
        expect(connection).to_have_attribute("data-state", "reconnecting")
        expect(connection).to_contain_text("reconnecting in")
        notice = last_reply(page).locator(".notice")
        expect(notice).to_be_visible()
        expect(notice).to_contain_text("Connection lost")
        assert reply_text(page) != ""
    finally:
        restartable_server.start()

    # Back: this server cannot resume the reply, and the page says so clearly ...
    wait_for_state(page, "error", timeout=20_000)
    notice = last_reply(page).locator(".notice")
    expect(notice).to_have_attribute("role", "alert")
    expect(notice).to_contain_text("Connection lost mid-reply")
    partial = reply_source(page)  # the text received is kept
    assert partial.startswith("H")
    if transport == "ws":
        expect(connection).to_have_attribute("data-state", "open")
    else:
        expect(connection).to_have_attribute("data-state", "idle")

    # ... and works again: "Try again" streams the reply anew, in place.
    notice.get_by_role("button", name="Try again").click()
    wait_for_state(page, "complete")
    expect(page.locator(".message[data-role='assistant']")).to_have_count(1)
    expect(page.locator(".message[data-role='user']")).to_have_count(1)  # asked again, not resent
    expect(last_reply(page).locator(".notice")).to_be_hidden()
    text = reply_text(page)
    source = reply_source(page)
    assert "You wrote: “Are you still there?”" in text
    assert source.startswith(partial)


#: Seconds the model thinks before its first token, and what it then answers.
THINKING = 2.0
ANSWER = "Having thought it over: yes, the same reply, once."
#: To a prompt with "pause": its first words at once, the rest after ``THINKING`` seconds
#: (``LONG_THINKING`` with "long pause").
FIRST_WORDS = "The first words at once, "
REST = "and the rest written while the page could not be reached."
#: Longer than the page waits for an answer to a WebSocket ``resume`` (10 s).
LONG_THINKING = 12.0


class ThinkingModel(ThreadedUpstream):
    """A model silent for ``THINKING`` seconds, then quick (or quick, silent, quick: see
    ``FIRST_WORDS``); ``asked`` counts its requests, ``answered`` those it finished."""

    def __init__(self) -> None:
        self.asked = 0
        self.answered = 0
        super().__init__(self.script)

    async def script(self, request: Request, reply: Reply) -> None:
        self.asked += 1
        prompt = request.json()["messages"][-1]["content"]
        first, rest = (FIRST_WORDS, REST) if "pause" in prompt else ("", ANSWER)
        await reply.head()
        for piece in tokens(first):
            await reply.event(chunk(piece))
        await asyncio.sleep(LONG_THINKING if "long pause" in prompt else THINKING)
        for piece in tokens(rest):
            await reply.event(chunk(piece))
        await reply.event(chunk(finish="stop"))
        await reply.event("[DONE]")
        await reply.end()
        self.answered += 1


@pytest.fixture(scope="module")
def thinking_model() -> Iterator[ThinkingModel]:
    with ThinkingModel() as model:
        yield model


@pytest.fixture(scope="module")
def proxied_server(thinking_model: ThinkingModel) -> Iterator[CuttingProxy]:
    """The chat page on the thinking model, reached through a proxy the test can cut."""
    url = f"{thinking_model.upstream.url}/v1"
    for server in demo_server({"OPENAI_API_KEY": "test-key", "OPENAI_BASE_URL": url}):
        with CuttingProxy(server.port) as proxy:
            yield proxy


class StreamBytes:
    """Whether the page received body bytes of a request to ``path``, from DevTools'
    network events (the renderer's: the bytes are the page's fetch's or EventSource's,
    not only in a socket buffer a cut would drop)."""

    def __init__(self, page: Any, path: str = "/chat/stream") -> None:
        self.page = page
        self.path = path
        self.streams: set[str] = set()
        self.received: set[str] = set()
        self.cdp = page.context.new_cdp_session(page)
        self.cdp.on("Network.requestWillBeSent", self._sent)
        self.cdp.on("Network.dataReceived", self._data)
        self.cdp.send("Network.enable")

    def _sent(self, event: dict[str, Any]) -> None:
        if self.path in event["request"]["url"]:
            self.streams.add(event["requestId"])

    def _data(self, event: dict[str, Any]) -> None:
        if event["requestId"] in self.streams:
            self.received.add(event["requestId"])

    def wait(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.received and time.monotonic() < deadline:
            self.page.wait_for_timeout(20)  # Playwright delivers the events meanwhile
        assert self.received, f"no body bytes of {self.path} reached the page"


@pytest.mark.parametrize("transport", ["sse-post", "sse"])
def test_a_drop_before_the_first_token_resumes_the_same_reply(
    browser: Any, thinking_model: ThinkingModel, proxied_server: CuttingProxy, transport: str
) -> None:
    """The id of the response's first bytes makes the reconnect a resume (fetch: our
    backoff and ``Last-Event-ID``; EventSource: the browser's own reconnect)."""
    for page in open_page(browser, proxied_server.url):
        choose(page, transport, "passthrough")
        stream = StreamBytes(page)
        asked = thinking_model.asked
        send(page, "Is it the same reply?")
        stream.wait()
        wait_for_state(page, "waiting", timeout=1_000)  # no token came yet
        proxied_server.cut()
        wait_for_state(page, "reconnecting", timeout=5_000)
        wait_for_state(page, "complete", timeout=20_000)
        assert reply_source(page) == ANSWER
        expect(last_reply(page).locator(".notice")).to_be_hidden()
        assert thinking_model.asked == asked + 1, "a second reply was started"


def fast_forward_until(page: Any, state: str) -> None:
    """Jump the page's clock 10 s at a time (past each backoff of its retries) until the
    last reply is in ``state``: what a minute without network would do, in a second."""
    deadline = time.monotonic() + 20
    while last_reply(page).get_attribute("data-state") != state:
        assert time.monotonic() < deadline, f"the reply did not get to {state!r}"
        page.clock.fast_forward(10_000)
        page.wait_for_timeout(50)


def lose_a_reply_the_server_finishes(
    page: Any, model: ThinkingModel, proxy: CuttingProxy, transport: str
) -> str:
    """Send a prompt, then take the network away for longer than the page retries: the
    page says the connection was lost, while the server finishes and stores the reply.
    The network is back on return; the conversation's id is returned."""
    choose(page, transport, "passthrough")
    if transport == "ws":
        expect(page.locator("#connection")).to_have_attribute("data-state", "open")
    answered = model.answered
    send(page, "Write, pause, and write on")
    wait_for_state(page, "streaming", timeout=5_000)  # its first words: its id is known
    proxy.down()
    try:
        fast_forward_until(page, "error")
        expect(last_reply(page).locator(".notice")).to_contain_text("Connection lost")
        wait_until_answered(page, model, answered + 1)
    finally:
        proxy.up()
    conversation = str(page.evaluate("new URLSearchParams(location.search).get('c')"))
    wait_until_stored(page, conversation)
    return conversation


@pytest.mark.parametrize(("transport", "back"), [("sse-post", "try again"), ("ws", "online")])
def test_a_reply_finished_while_the_network_was_gone_is_shown_not_asked_again(
    browser: Any,
    thinking_model: ThinkingModel,
    proxied_server: CuttingProxy,
    transport: str,
    back: str,
) -> None:
    """Gone longer than the page retries, the page says the connection was lost; the
    server finishes the reply meanwhile. Back (the browser's ``online`` event, or "Try
    again"), the page asks the stored conversation and shows the reply: the model is not
    asked a second time, as it was when "Try again" regenerated every lost reply."""
    for page in open_page(browser, proxied_server.url, clock=True):
        asked = thinking_model.asked
        lose_a_reply_the_server_finishes(page, thinking_model, proxied_server, transport)
        notice = last_reply(page).locator(".notice")
        if back == "online":
            page.evaluate("window.dispatchEvent(new Event('online'))")
        else:
            notice.get_by_role("button", name="Try again").click()
        wait_for_state(page, "complete", timeout=5_000)
        assert thinking_model.asked == asked + 1, "the model was asked again"
        assert reply_source(page) == FIRST_WORDS + REST
        expect(notice).to_be_hidden()
        expect(last_reply(page).locator(".meta")).to_have_text(
            "Finished while the connection was lost"
        )


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_connection_gone_silent_mid_reply_is_resumed(
    browser: Any, thinking_model: ThinkingModel, proxied_server: CuttingProxy, transport: str
) -> None:
    """Mid-reply, the connection carries nothing more and never ends (half-open, after a
    network change). Nothing for three of the server's keep-alives (a WebSocket: a ping
    unanswered), the page takes it for dead and resumes the reply on a new connection,
    where the event streams showed "Streaming" forever."""
    for page in open_page(browser, proxied_server.url, clock=True):
        choose(page, transport, "passthrough")
        if transport == "ws":
            expect(page.locator("#connection")).to_have_attribute("data-state", "open")
        asked, answered = thinking_model.asked, thinking_model.answered
        send(page, "Write, pause, and write on")
        wait_for_state(page, "streaming", timeout=5_000)
        proxied_server.stall()
        wait_until_answered(page, thinking_model, answered + 1)  # the server has the whole reply
        fast_forward_until(page, "complete")
        assert reply_source(page) == FIRST_WORDS + REST
        expect(last_reply(page).locator(".notice")).to_be_hidden()
        assert thinking_model.asked == asked + 1, "a second reply was started"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_the_network_back_reconnects_at_once(
    browser: Any, thinking_model: ThinkingModel, proxied_server: CuttingProxy, transport: str
) -> None:
    """The network goes mid-reply, and comes back (the browser's ``online``) while the
    page waits out its backoff before the next attempt (up to 10 s): it reconnects then,
    where it kept the user waiting. The page's clock is paused meanwhile, so no backoff
    ends by itself: only ``online`` can bring the new connection."""
    for page in open_page(browser, proxied_server.url, clock=True):
        choose(page, transport, "passthrough")
        if transport == "ws":
            expect(page.locator("#connection")).to_have_attribute("data-state", "open")
        asked = thinking_model.asked
        send(page, "Write, pause, and write on")
        wait_for_state(page, "streaming", timeout=5_000)
        page.clock.pause_at(page.evaluate("Date.now()") + 10)
        proxied_server.down()
        try:
            # Offline only once the page saw the cut: Chromium's offline emulation can
            # hold back the close of a WebSocket open before it.
            expect(last_reply(page)).to_have_attribute("data-state", "reconnecting")
            page.context.set_offline(True)
            connections = proxied_server.connections
        finally:
            proxied_server.up()
            page.context.set_offline(False)
        deadline = time.monotonic() + 5
        while proxied_server.connections == connections:
            assert time.monotonic() < deadline, "the page did not reconnect when back online"
            time.sleep(0.05)
        page.clock.resume()
        wait_for_state(page, "complete", timeout=THINKING * 1000 + 10_000)
        assert reply_source(page) == FIRST_WORDS + REST
        expect(last_reply(page).locator(".notice")).to_be_hidden()
        assert thinking_model.asked == asked + 1, "a second reply was started"


def test_a_websocket_resume_in_a_long_silence_of_the_model(
    browser: Any, thinking_model: ThinkingModel, proxied_server: CuttingProxy
) -> None:
    """The socket drops while the model thinks for longer than the page waits for an
    answer to its ``resume`` (10 s): the server takes the resume without a frame, so the
    page gave the reply up ("the server did not answer", RESUME_FAILED) though it ran
    on. The pong of the ping sent with the resume now says it was taken."""
    for page in open_page(browser, proxied_server.url, clock=True):
        frames: list[tuple[str, str]] = []

        def watch(socket: Any, frames: list[tuple[str, str]] = frames) -> None:
            socket.on("framesent", lambda payload: frames.append(("sent", str(payload))))
            socket.on("framereceived", lambda payload: frames.append(("received", str(payload))))

        page.on("websocket", watch)
        choose(page, "ws", "passthrough")
        expect(page.locator("#connection")).to_have_attribute("data-state", "open")
        send(page, "Write, long pause, and write on")
        wait_for_state(page, "streaming", timeout=5_000)
        proxied_server.cut()
        deadline = time.monotonic() + 5
        resumed = False
        while time.monotonic() < deadline:  # the resume, and the server's answer to it
            sent = [i for i, (_, text) in enumerate(frames) if '"resume"' in text]
            if sent and any('"pong"' in text for _, text in frames[sent[0] :]):
                resumed = True
                break
            page.wait_for_timeout(20)
        assert any('"resume"' in text for _, text in frames), "the page did not resume"
        page.clock.fast_forward(11_000)  # past the page's wait, in the model's silence
        wait_for_state(page, "complete", timeout=LONG_THINKING * 1000 + 10_000)
        assert "error" not in [entry["state"] for entry in trail(page)], frames[-5:]
        assert resumed
        assert reply_source(page) == FIRST_WORDS + REST
        expect(last_reply(page).locator(".notice")).to_be_hidden()


def test_a_websocket_resume_the_server_is_slow_to_answer(
    browser: Any, thinking_model: ThinkingModel, proxied_server: CuttingProxy
) -> None:
    """The socket drops mid-reply, and the server's answer to the page's ``resume`` (the
    pong of its ping) takes longer than the page waits (10 s). The page gives that socket
    up and resumes on a new one: it used to fail the reply, look the chat up and resume
    again on the same socket, where the first resume still ran and the second was
    refused ("A reply is streaming"). No refusal is shown, and no text lost or doubled."""
    for page in open_page(browser, proxied_server.url, clock=True):
        frames: list[str] = []

        def watch(socket: Any, frames: list[str] = frames) -> None:
            socket.on("framesent", lambda payload: frames.append(str(payload)))

        page.on("websocket", watch)
        choose(page, "ws", "passthrough")
        expect(page.locator("#connection")).to_have_attribute("data-state", "open")
        send(page, "Write, long pause, and write on")
        wait_for_state(page, "streaming", timeout=5_000)
        proxied_server.hold_websockets()
        try:
            proxied_server.cut()
            deadline = time.monotonic() + 5
            while not any('"resume"' in text for text in frames):
                assert time.monotonic() < deadline, "the page did not resume"
                page.wait_for_timeout(20)
            page.wait_for_timeout(200)  # the resume's answer, held, is not the page's yet
            page.clock.fast_forward(11_000)  # past the page's wait for it
            page.wait_for_timeout(1_000)  # the page acts meanwhile (a look-up, a new socket)
        finally:
            proxied_server.release()
        wait_for_state(page, "complete", timeout=LONG_THINKING * 1000 + 10_000)
        assert "error" not in [entry["state"] for entry in trail(page)], frames[-5:]
        assert reply_source(page) == FIRST_WORDS + REST
        expect(last_reply(page).locator(".notice")).to_be_hidden()


def wait_until_stored(page: Any, conversation: str) -> None:
    """Wait until the conversation's reply is stored complete (its ``on_end`` ran)."""
    base = page.locator("#chat").get_attribute("data-conversations-url")
    deadline = time.monotonic() + 10
    while True:
        response = page.request.get(urljoin(page.url, f"{base}/{conversation}"))
        assert response.ok, response.status
        if [m["status"] for m in response.json()["messages"]][-1:] == ["complete"]:
            return
        assert time.monotonic() < deadline, response.json()
        page.wait_for_timeout(50)


def test_online_looks_up_a_lost_reply_that_is_no_longer_the_last(
    browser: Any, thinking_model: ThinkingModel, proxied_server: CuttingProxy
) -> None:
    """A reply lost, then another asked and answered: the network's return (``online``)
    looks the first one up too, not only the last reply."""
    for page in open_page(browser, proxied_server.url, clock=True):
        lose_a_reply_the_server_finishes(page, thinking_model, proxied_server, "sse-post")
        send(page, "Another question")
        wait_for_state(page, "complete", timeout=THINKING * 1000 + 10_000)
        first = page.locator(".message[data-role='assistant']").first
        expect(first).to_have_attribute("data-state", "error")
        page.evaluate("window.dispatchEvent(new Event('online'))")
        expect(first).to_have_attribute("data-state", "complete")
        expect(first.locator(".meta")).to_have_text("Finished while the connection was lost")
        assert first.evaluate("item => item.view.shown") == FIRST_WORDS + REST


def test_try_again_clicked_while_the_page_still_looks_the_lost_reply_up(
    page: Any, restartable_server: DemoServer
) -> None:
    """The error's own look-up answers after Try again's (a slow server): Try again still
    asks the model anew, where it did nothing (the first answer settled the reply, and
    the second found it settled)."""
    held: list[Any] = []

    def hold(route: Any) -> None:
        """The first two look-ups wait until released; later ones go on."""
        if len(held) < 2:
            held.append(route)
        else:
            route.continue_()

    page.route("**/chat/conversations/*", hold)
    choose(page, "sse-post", "response")
    send(page, "Are you still there?")
    wait_for_state(page, "streaming", timeout=5_000)
    restartable_server.stop()
    try:
        wait_for_state(page, "reconnecting", timeout=5_000)
    finally:
        restartable_server.start()
    wait_for_state(page, "error", timeout=20_000)
    deadline = time.monotonic() + 10
    while not held and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    assert len(held) == 1, "the error did not look its reply up"
    last_reply(page).locator(".notice").get_by_role("button", name="Try again").click()
    while len(held) < 2 and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    assert len(held) == 2, "Try again did not look the reply up"
    with page.expect_response("**/chat/conversations/*"):
        held[0].continue_()  # the error's look-up answers first
    held[1].continue_()
    wait_for_state(page, "complete")
    assert "You wrote: “Are you still there?”" in reply_text(page)


def test_try_again_on_a_lost_reply_whose_chat_was_deleted_elsewhere(
    browser: Any, thinking_model: ThinkingModel, proxied_server: CuttingProxy
) -> None:
    """Its look-up answers 404: the page says the chat is gone (not "Still no connection",
    as for any error before), offers nothing more, and takes it off the list."""
    for page in open_page(browser, proxied_server.url, clock=True):
        conversation = lose_a_reply_the_server_finishes(
            page, thinking_model, proxied_server, "sse-post"
        )
        base = page.locator("#chat").get_attribute("data-conversations-url")
        token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
        deleted = page.request.delete(
            urljoin(page.url, f"{base}/{conversation}"),
            headers={"X-CSRFToken": token, "Referer": page.url},
        )
        assert deleted.status == 204, deleted.status
        notice = last_reply(page).locator(".notice")
        asked = thinking_model.asked
        notice.get_by_role("button", name="Try again").click()
        expect(notice).to_contain_text("This chat is gone")
        expect(notice.get_by_role("button", name="Try again")).to_be_hidden()
        expect(page.locator("#conversations .conversation-link")).to_have_count(0)
        assert thinking_model.asked == asked


def send_over_a_socket(page: Any, prompt: str) -> None:
    """Send ``prompt`` on the chat's WebSocket, once it is open."""
    choose(page, "ws", "passthrough")
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")
    send(page, prompt)


def wait_until_asked(page: Any, model: ThinkingModel, asked: int) -> None:
    """Wait until the server has asked ``model`` for ``asked`` replies in all."""
    deadline = time.monotonic() + 5
    while model.asked < asked:
        assert time.monotonic() < deadline, "the server never asked the model"
        page.wait_for_timeout(20)


def wait_until_answered(page: Any, model: ThinkingModel, answered: int) -> None:
    """Wait until ``model`` has finished ``answered`` replies in all (its thinking included)."""
    deadline = time.monotonic() + THINKING + 10
    while model.answered < answered:
        assert time.monotonic() < deadline, "the model did not finish its reply"
        page.wait_for_timeout(50)


def prompts_stored(page: Any) -> list[str]:
    """The user's messages of the open chat, as the server stored them."""
    conversation = page.evaluate("new URLSearchParams(location.search).get('c')")
    base = page.locator("#chat").get_attribute("data-conversations-url")
    response = page.request.get(urljoin(page.url, f"{base}/{conversation}"))
    assert response.ok, response.status
    return [m["content"] for m in response.json()["messages"] if m["role"] == "user"]


def expect_one_exchange(page: Any, prompt: str) -> None:
    """The page and the stored chat show ``prompt`` once, answered; the box is empty."""
    assert reply_source(page) == ANSWER
    expect(page.locator(".message[data-role='user']")).to_have_count(1)
    expect(page.locator("#prompt")).to_have_value("")
    expect(page.locator("#load-error")).to_be_hidden()
    expect(last_reply(page).locator(".notice")).to_be_hidden()
    assert prompts_stored(page) == [prompt]


def test_a_websocket_prompt_whose_reply_runs_is_followed_after_a_drop_not_sent_again(
    browser: Any, thinking_model: ThinkingModel, proxied_server: CuttingProxy
) -> None:
    """The server has the prompt and runs its reply (the model thinks), and the socket
    drops before the reply's first frame. Back, the page finds that reply running in the
    stored chat and follows it: the prompt is not sent again (the server refused it as a
    second reply, and the page took its own reply for another tab's: the prompt back in
    its box, with a notice that another reply runs)."""
    for page in open_page(browser, proxied_server.url):
        asked = thinking_model.asked
        send_over_a_socket(page, "Did my question arrive?")
        wait_until_asked(page, thinking_model, asked + 1)
        wait_for_state(page, "waiting", timeout=1_000)  # no frame of the reply came yet
        proxied_server.cut()
        wait_for_state(page, "complete", timeout=20_000)
        expect_one_exchange(page, "Did my question arrive?")
        assert thinking_model.asked == asked + 1, "a second reply was started"


def test_a_websocket_prompt_whose_reply_ended_while_the_socket_was_down_is_not_asked_again(
    browser: Any, thinking_model: ThinkingModel, proxied_server: CuttingProxy
) -> None:
    """The server has the prompt, and the network goes before the reply's first frame,
    for as long as the reply takes. Back, the page shows the reply as stored: the prompt
    is not sent again (the server took it, a second paid reply to the same prompt)."""
    for page in open_page(browser, proxied_server.url):
        asked, answered = thinking_model.asked, thinking_model.answered
        send_over_a_socket(page, "Was I answered while away?")
        wait_until_asked(page, thinking_model, asked + 1)
        proxied_server.down()
        try:
            wait_for_state(page, "reconnecting", timeout=5_000)
            wait_until_answered(page, thinking_model, answered + 1)
        finally:
            proxied_server.up()
        page.evaluate("window.dispatchEvent(new Event('online'))")  # reconnect now
        wait_for_state(page, "complete", timeout=10_000)
        expect_one_exchange(page, "Was I answered while away?")
        assert thinking_model.asked == asked + 1, "the model was asked twice"


def test_a_websocket_prompt_lost_on_its_way_is_sent_again_once(
    browser: Any, thinking_model: ThinkingModel, proxied_server: CuttingProxy
) -> None:
    """The prompt leaves the page, and the socket drops before the server has it. Back,
    the stored chat does not have it: the page sends it again, once."""
    for page in open_page(browser, proxied_server.url):
        asked = thinking_model.asked
        held = hold_the_prompt(page, "ws")
        send_over_a_socket(page, "Did this one get lost?")
        wait_until_held(page, "ws", held)
        proxied_server.cut()
        wait_for_state(page, "complete", timeout=20_000)
        expect_one_exchange(page, "Did this one get lost?")
        assert thinking_model.asked == asked + 1


def test_a_websocket_prompt_lost_twice_on_its_way_is_given_back(
    browser: Any, thinking_model: ThinkingModel, proxied_server: CuttingProxy
) -> None:
    """The prompt, and then the page's second sending of it, are both lost before the
    server has them: the prompt goes back in the message box, with a notice, rather
    than being sent again and again."""
    for page in open_page(browser, proxied_server.url):
        asked = thinking_model.asked
        held = hold_the_prompt(page, "ws")
        send_over_a_socket(page, "Lost, and lost again?")
        wait_until_held(page, "ws", held)
        held_again = hold_the_prompt(page, "ws")  # the next socket's prompt: held too
        proxied_server.cut()
        wait_until_held(page, "ws", held_again)
        proxied_server.cut()
        expect(page.locator("#prompt")).to_have_value("Lost, and lost again?", timeout=20_000)
        expect(page.locator("#load-error")).to_contain_text(
            "Connection lost: your message was not sent, and is back in the box."
        )
        expect(page.locator(".message")).to_have_count(0)
        assert prompts_stored(page) == []
        assert thinking_model.asked == asked


def test_try_again_on_a_websocket_prompt_left_unanswered_looks_its_reply_up(
    browser: Any, thinking_model: ThinkingModel, proxied_server: CuttingProxy
) -> None:
    """The server has the prompt, and the network goes before the reply's first frame for
    longer than the page retries: the reply fails as lost, the chat unreadable. "Try
    again", once the network is back and the reply ended, shows the reply as stored: the
    prompt is not sent again (the server took it, a second paid reply)."""
    for page in open_page(browser, proxied_server.url, clock=True):
        asked, answered = thinking_model.asked, thinking_model.answered
        send_over_a_socket(page, "Still no answer?")
        wait_until_asked(page, thinking_model, asked + 1)
        proxied_server.down()
        try:
            fast_forward_until(page, "error")
            expect(last_reply(page).locator(".notice")).to_contain_text("Connection lost")
            wait_until_answered(page, thinking_model, answered + 1)
        finally:
            proxied_server.up()
        last_reply(page).get_by_role("button", name="Try again").click()
        wait_for_state(page, "complete", timeout=5_000)
        expect_one_exchange(page, "Still no answer?")
        assert thinking_model.asked == asked + 1, "the model was asked twice"


def post_a_prompt(page: Any, prompt: str) -> None:
    """Send ``prompt`` with ``POST chat/stream`` (the SSE transport of the page)."""
    choose(page, "sse-post", "passthrough")
    send(page, prompt)


@contextmanager
def posted_while_the_server_is_down(
    page: Any, model: ThinkingModel, proxy: CuttingProxy, prompt: str
) -> Iterator[int]:
    """A first question answered, then the server down: ``prompt`` is POSTed and the page
    waits for the server (its reply reconnecting). Yields how often the model was asked
    before it; the server is back on leaving."""
    post_a_prompt(page, "First question")
    wait_for_state(page, "complete", timeout=20_000)
    asked = model.asked
    proxy.down()
    try:
        send(page, prompt)
        wait_for_state(page, "reconnecting", timeout=5_000)
        yield asked
    finally:
        proxy.up()


#: Where the response to a POSTed prompt is cut: before its first byte, or right after
#: its status line and headers.
CUTS = ["before the head", "after the head"]


def post_a_prompt_held(
    page: Any, proxy: CuttingProxy, model: ThinkingModel, prompt: str, cut: str
) -> None:
    """POST ``prompt`` and wait until the model is asked for its reply, while the proxy
    holds the response (``cut``: all of it, or all but its head)."""
    asked = model.asked
    proxy.hold_post_response(head=cut == "after the head")
    post_a_prompt(page, prompt)
    wait_until_asked(page, model, asked + 1)
    wait_for_state(page, "waiting", timeout=1_000)  # not a byte of the reply yet


def expect_second_exchange(page: Any, prompt: str) -> None:
    """The page and the stored chat show the first exchange and ``prompt`` once, both
    answered; the box is empty."""
    assert reply_source(page) == ANSWER
    expect(page.locator(".message[data-role='user']")).to_have_count(2)
    expect(page.locator("#prompt")).to_have_value("")
    expect(page.locator("#load-error")).to_be_hidden()
    expect(last_reply(page).locator(".notice")).to_be_hidden()
    assert prompts_stored(page) == ["First question", prompt]


@pytest.mark.parametrize("cut", CUTS)
def test_a_posted_prompt_whose_reply_runs_is_followed_after_a_drop_not_posted_again(
    browser: Any, thinking_model: ThinkingModel, proxied_server: CuttingProxy, cut: str
) -> None:
    """The server has the POSTed prompt and runs its reply (the model thinks), and the
    connection drops before a byte of the reply. The page finds that reply running in
    the stored chat and follows it: the prompt is not POSTed again (the server refused
    it as a second reply, and the page took its own reply for another tab's)."""
    for page in open_page(browser, proxied_server.url):
        prompt = "Did my POST arrive?"
        post_a_prompt_held(page, proxied_server, thinking_model, prompt, cut)
        asked = thinking_model.asked
        proxied_server.cut()
        wait_for_state(page, "complete", timeout=20_000)
        expect_one_exchange(page, prompt)
        assert thinking_model.asked == asked, "a second reply was started"


@pytest.mark.parametrize("cut", CUTS)
def test_a_posted_prompt_whose_reply_ended_before_the_drop_is_not_asked_again(
    browser: Any, thinking_model: ThinkingModel, proxied_server: CuttingProxy, cut: str
) -> None:
    """The server has the POSTed prompt and ends its reply while the page has not a byte
    of it, and then the connection drops. The page shows the reply as stored: the prompt
    is not POSTed again (a second paid reply to the same prompt)."""
    for page in open_page(browser, proxied_server.url):
        prompt = "Was my POST answered?"
        answered = thinking_model.answered
        post_a_prompt_held(page, proxied_server, thinking_model, prompt, cut)
        asked = thinking_model.asked
        wait_until_answered(page, thinking_model, answered + 1)
        proxied_server.cut()
        wait_for_state(page, "complete", timeout=10_000)
        expect_one_exchange(page, prompt)
        assert thinking_model.asked == asked, "the model was asked twice"


def answer_bad_gateway_once(page: Any) -> list[int]:
    """As a proxy whose upstream timed out: forward the next prompt, and answer the page
    502; the list gets the status the server answered."""
    answers: list[int] = []

    def forward_then_bad_gateway(route: Any) -> None:
        if answers:
            route.continue_()
            return
        answers.append(route.fetch().status)  # the whole reply, as the server sent it
        route.fulfill(status=502, content_type="text/html", body="<h1>Bad Gateway</h1>")

    page.route("**/chat/stream*", forward_then_bad_gateway)
    return answers


def test_a_proxys_502_after_it_forwarded_the_prompt_is_not_taken_for_a_refusal(
    browser: Any, thinking_model: ThinkingModel, proxied_server: CuttingProxy
) -> None:
    """A proxy forwards the POSTed prompt, and answers the page 502 (its upstream timed
    out on it, say): the server may have the prompt, and has here; its reply is shown
    as stored, not asked for again."""
    for page in open_page(browser, proxied_server.url):
        asked = thinking_model.asked
        answers = answer_bad_gateway_once(page)
        post_a_prompt(page, "Did the gateway pass it on?")
        wait_for_state(page, "complete", timeout=20_000)
        assert answers == [200]
        expect_one_exchange(page, "Did the gateway pass it on?")
        assert thinking_model.asked == asked + 1, "the model was asked twice"


def lose_posts(page: Any, how_many: int) -> list[str]:
    """Abort the next ``how_many`` POSTs of a prompt before they reach the server (a
    connection reset, which the page cannot tell from one after they did); the list
    gets each request's method."""
    lost: list[str] = []

    def abort_then_forward(route: Any) -> None:
        if route.request.method == "POST" and len(lost) < how_many:
            lost.append(route.request.method)
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route("**/chat/stream*", abort_then_forward)
    return lost


def test_a_posted_prompt_lost_on_its_way_is_posted_again_once(
    browser: Any, thinking_model: ThinkingModel, proxied_server: CuttingProxy
) -> None:
    """The POST fails before the server has the prompt: the stored chat does not have it,
    and the page sends it again, once."""
    for page in open_page(browser, proxied_server.url):
        asked = thinking_model.asked
        lost = lose_posts(page, 1)
        post_a_prompt(page, "Did this POST get lost?")
        wait_for_state(page, "complete", timeout=20_000)
        assert lost == ["POST"]
        expect_one_exchange(page, "Did this POST get lost?")
        assert thinking_model.asked == asked + 1


def test_a_posted_prompt_lost_twice_on_its_way_is_given_back(
    browser: Any, thinking_model: ThinkingModel, proxied_server: CuttingProxy
) -> None:
    """The POST, and the page's second sending of it, both fail before the server has
    the prompt: the prompt goes back in the message box, with a notice, rather than
    being POSTed again and again."""
    for page in open_page(browser, proxied_server.url):
        asked = thinking_model.asked
        lost = lose_posts(page, 2)
        post_a_prompt(page, "POSTed, lost, and lost again?")
        expect(page.locator("#prompt")).to_have_value(
            "POSTed, lost, and lost again?", timeout=20_000
        )
        expect(page.locator("#load-error")).to_contain_text(
            "Connection lost: your message was not sent, and is back in the box."
        )
        expect(page.locator(".message")).to_have_count(0)
        assert lost == ["POST", "POST"]
        assert thinking_model.asked == asked


def test_a_prompt_posted_while_the_server_restarts_is_sent_once_it_is_back(
    browser: Any, thinking_model: ThinkingModel, proxied_server: CuttingProxy
) -> None:
    """The server cannot be reached when the prompt is POSTed (a restart: its connection
    reset, which the page cannot tell from a reset after the prompt arrived): the reply
    shows it reconnects, and the page reads the chat again with its backoff. The server
    back, the chat does not have the prompt, which is sent once and answered, with no
    "Try again" to click (it once failed at once)."""
    for page in open_page(browser, proxied_server.url):
        with posted_while_the_server_is_down(
            page, thinking_model, proxied_server, "Anyone there?"
        ) as asked:
            expect(last_reply(page).locator(".notice")).to_contain_text("Connection lost")
            expect(page.locator("#connection")).to_have_attribute("data-state", "reconnecting")
        wait_for_state(page, "complete", timeout=20_000)
        expect_second_exchange(page, "Anyone there?")
        expect(page.locator("#connection")).to_have_attribute("data-state", "idle")
        assert thinking_model.asked == asked + 1


def test_try_again_on_a_prompt_posted_while_the_server_was_down_looks_it_up_first(
    browser: Any, thinking_model: ThinkingModel, proxied_server: CuttingProxy
) -> None:
    """The server stays unreachable for longer than the page waits for it (its backoff
    spent): the reply fails, rather than the prompt being POSTed again and again. "Try
    again", the server back, reads the chat, which does not have the prompt, and sends
    it once."""
    for page in open_page(browser, proxied_server.url, clock=True):
        with posted_while_the_server_is_down(
            page, thinking_model, proxied_server, "Anyone there?"
        ) as asked:
            fast_forward_until(page, "error")
            expect(last_reply(page).locator(".notice")).to_contain_text("Connection lost")
            expect(page.locator("#connection")).to_have_attribute("data-state", "idle")
        assert thinking_model.asked == asked
        last_reply(page).get_by_role("button", name="Try again").click()
        wait_for_state(page, "complete", timeout=10_000)
        expect_second_exchange(page, "Anyone there?")
        assert thinking_model.asked == asked + 1


def posts_from_now(page: Any) -> list[str]:
    """A list that gets the URL of each prompt ``page`` POSTs from now on."""
    posts: list[str] = []

    def count(request: Any) -> None:
        if request.method == "POST" and "/chat/stream" in request.url:
            posts.append(request.url)

    page.on("request", count)
    return posts


@contextmanager
def offline(page: Any, proxy: CuttingProxy) -> Iterator[None]:
    """The network gone: the proxy down and, once the page saw the cut (its reply
    reconnecting), the browser offline too. On leaving, the proxy is back, then the
    browser online: Chromium fires ``online``, as a phone back in range would."""
    proxy.down()
    try:
        # Offline only once the page saw the cut: Chromium's offline emulation can hold
        # back the close of a WebSocket open before it.
        wait_for_state(page, "reconnecting", timeout=5_000)
        page.context.set_offline(True)
        yield
    finally:
        proxy.up()
        page.context.set_offline(False)


@pytest.mark.parametrize("transport", ["ws", "sse-post"])
def test_online_after_the_backoff_shows_the_reply_of_a_prompt_left_unanswered(
    browser: Any, thinking_model: ThinkingModel, proxied_server: CuttingProxy, transport: str
) -> None:
    """The server has the prompt, and the network goes before a byte of its reply, for
    longer than the page retries and reads the chat: the reply fails as lost. The network
    back (``online``), the page reads the chat and shows the reply as stored, with no
    click on "Try again" (it waited for one); the prompt is not sent again."""
    prompt = "Answered while I was offline?"
    for page in open_page(browser, proxied_server.url, clock=True):
        asked, answered = thinking_model.asked, thinking_model.answered
        if transport == "ws":
            send_over_a_socket(page, prompt)
            wait_until_asked(page, thinking_model, asked + 1)
        else:
            post_a_prompt_held(page, proxied_server, thinking_model, prompt, "before the head")
        with offline(page, proxied_server):
            fast_forward_until(page, "error")
            expect(last_reply(page).locator(".notice")).to_contain_text("Connection lost")
            wait_until_answered(page, thinking_model, answered + 1)
        wait_for_state(page, "complete", timeout=10_000)
        expect_one_exchange(page, prompt)
        assert thinking_model.asked == asked + 1, "the model was asked twice"


def test_online_after_the_backoff_does_not_send_a_prompt_the_server_never_had(
    browser: Any, thinking_model: ThinkingModel, proxied_server: CuttingProxy
) -> None:
    """A prompt POSTed while the network is gone, for longer than the page retries: the
    reply fails. The network back (``online``), the page reads the chat, which does not
    have the prompt, and sends nothing (the user did not ask again): the error stays, with
    "Try again", which then sends the prompt once."""
    prompt = "Sent while offline"
    for page in open_page(browser, proxied_server.url, clock=True):
        with posted_while_the_server_is_down(page, thinking_model, proxied_server, prompt) as asked:
            page.context.set_offline(True)
            fast_forward_until(page, "error")
        posts = posts_from_now(page)
        with page.expect_response(lambda r: "/chat/conversations/" in r.url and "limit=2" in r.url):
            page.context.set_offline(False)
        try_again = last_reply(page).get_by_role("button", name="Try again")
        expect(try_again).to_be_visible()
        assert posts == [], "the network back sent the prompt"
        try_again.click()
        wait_for_state(page, "complete", timeout=10_000)
        expect_second_exchange(page, prompt)
        assert len(posts) == 1
        assert thinking_model.asked == asked + 1


def test_stop_while_the_page_waits_for_the_server_sends_nothing(
    browser: Any, thinking_model: ThinkingModel, proxied_server: CuttingProxy
) -> None:
    """Stop, while the page waits for the server to look for a prompt POSTed while it
    could not be reached: the wait ends, the reply fails as lost (with "Try again"), and
    the prompt is not sent once the server is back."""
    for page in open_page(browser, proxied_server.url):
        with posted_while_the_server_is_down(
            page, thinking_model, proxied_server, "Never mind"
        ) as asked:
            page.locator("#stop").click()
            wait_for_state(page, "error", timeout=5_000)
        expect(last_reply(page).get_by_role("button", name="Try again")).to_be_visible()
        expect(page.locator("#stop")).to_be_hidden()
        expect(page.locator("#connection")).to_have_attribute("data-state", "idle")
        page.wait_for_timeout(1_500)  # past the page's next attempt, had the wait gone on
        assert prompts_stored(page) == ["First question"]
        assert thinking_model.asked == asked
