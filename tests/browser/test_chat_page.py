"""The chat page in Chromium: every transport streams, stops, and shows model text as text."""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import urljoin

import pytest
from playwright.sync_api import expect

from .chatpage import (
    REPLY_TIMEOUT,
    TRANSPORTS,
    choose,
    last_reply,
    reply_source,
    reply_text,
    send,
    trail,
    wait_for_state,
)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_reply_streams_and_completes(page: Any, transport: str) -> None:
    choose(page, transport, "response")
    send(page, "Hello from the browser test")
    expect(page.locator(".message[data-role='user'] .text")).to_have_text(
        "Hello from the browser test"
    )
    wait_for_state(page, "complete")

    states = trail(page)
    # The loading indicator first, until the first chunk arrives ...
    assert states[0]["state"] == "waiting"
    assert states[0]["loading"] is True
    assert states[0]["length"] == 0
    first_text = next(i for i, s in enumerate(states) if s["length"] > 0)
    assert all(s["loading"] for s in states[:first_text]), states[: first_text + 2]
    # ... then the reply grows through many intermediate states, never shrinking ...
    streaming = [s for s in states[first_text:] if s["state"] == "streaming"]
    assert all(not s["loading"] for s in streaming)
    lengths = [s["length"] for s in states[first_text:]]
    assert lengths == sorted(lengths), lengths
    assert len(set(lengths)) >= 10, states
    # ... until it is complete, with the whole reply and no caret or dots left.
    assert states[-1]["state"] == "complete"
    text = reply_text(page)
    assert text.startswith("Hello! I am the built-in demo model")
    assert "You wrote: “Hello from the browser test”" in text
    assert "<" not in text and "thought" not in text.split("What this page shows")[0]
    source = reply_source(page)
    assert len(source) == states[-1]["length"]
    assert "\n- " in source  # the Markdown list ...
    reply = last_reply(page)
    expect(reply.locator(".text li")).not_to_have_count(0)  # ... shown as a list
    expect(reply.locator(".loading")).to_be_hidden()
    expect(reply.locator(".notice")).to_be_hidden()
    expect(reply.locator(".meta")).to_contain_text("characters")
    expect(page.locator("#send")).to_be_visible()
    expect(page.locator("#stop")).to_be_hidden()
    # The conversation goes on: a second exchange on the same connection.
    choose(page, transport, "passthrough")
    send(page, "And a second message")
    wait_for_state(page, "complete")
    assert "You wrote: “And a second message”" in reply_text(page)
    expect(page.locator(".message[data-role='assistant']")).to_have_count(2)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_stop_button_cancels(page: Any, transport: str) -> None:
    choose(page, transport, "passthrough")
    send(page, "Please stop me")
    wait_for_state(page, "streaming", timeout=5_000)
    expect(page.locator("#stop")).to_be_visible()
    page.get_by_role("button", name="Stop", exact=True).click()
    wait_for_state(page, "cancelled", timeout=5_000)
    expect(last_reply(page).locator(".meta")).to_contain_text("stopped")
    expect(page.locator("#stop")).to_be_hidden()
    stopped_at = reply_source(page)
    assert stopped_at.startswith("Hello!")
    time.sleep(0.4)  # chunks still on their way would show up by now
    assert reply_source(page) == stopped_at
    # The next prompt gets a clean reply of its own (no leftovers of the stopped one).
    send(page, "A fresh question")
    wait_for_state(page, "complete")
    text = reply_text(page)
    assert text.startswith("Hello! I am the built-in demo model")
    assert "You wrote: “A fresh question”" in text
    assert text.count("Hello! I am the built-in demo model") == 1  # nothing of the stopped one


def send_with_its_chat_held(page: Any, prompt: str) -> Any:
    """Send a new chat's first prompt with the request creating its chat held back; the
    held route is returned (``continue_()`` lets it go)."""
    held: list[Any] = []

    def hold_creation(route: Any) -> None:
        if route.request.method == "POST":
            held.append(route)
        else:
            route.continue_()

    page.route(re.compile(r".*/chat/conversations(\?.*)?$"), hold_creation)
    send(page, prompt)
    deadline = time.monotonic() + 5
    while not held and time.monotonic() < deadline:
        page.wait_for_timeout(20)
    assert held, "the page never asked to create its chat"
    return held[0]


def test_the_socket_opening_while_the_first_chat_is_created(page: Any) -> None:
    """Connection news that lands before the first exchange exists is shown, not a crash.

    The first prompt creates its chat before it streams; the WebSocket opening meanwhile
    once threw in the page (uncaught errors fail the ``page`` fixture).
    """
    creation = send_with_its_chat_held(page, "Created while the socket opens")
    page.wait_for_function("document.querySelector('#send').disabled")
    choose(page, "ws", "passthrough")
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")
    expect(page.locator("#send")).to_be_disabled()  # still no second send
    creation.continue_()
    wait_for_state(page, "complete")
    assert "You wrote: “Created while the socket opens”" in reply_text(page)


def stored_titles(page: Any) -> list[str]:
    """The titles of the chats the server lists to this browser."""
    base = page.locator("#chat").get_attribute("data-conversations-url")
    response = page.request.get(urljoin(page.url, base))
    assert response.ok, response.status
    return [c["title"] for c in response.json()["conversations"]]


@pytest.mark.parametrize("leave", ["Escape", "another chat"])
def test_leaving_a_chat_while_it_is_created_drops_it(page: Any, leave: str) -> None:
    """The first prompt creates its chat before it streams. Leaving meanwhile (Esc, or a
    click on another chat) drops that chat: the page stays where the user went, asks the
    model nothing, and the chat, never used, is deleted."""
    if leave == "another chat":
        send(page, "An earlier chat")
        wait_for_state(page, "complete")
        page.get_by_role("button", name="New chat").click()
    creation = send_with_its_chat_held(page, "Never sent")
    if leave == "Escape":
        page.keyboard.press("Escape")
    else:
        page.locator("#conversations .conversation-link").filter(has_text="An earlier chat").click()
        expect(page.locator(".message[data-role='user'] .text")).to_have_text(["An earlier chat"])
    url = page.url
    creation.continue_()
    listed = ["An earlier chat"] if leave == "another chat" else []
    deadline = time.monotonic() + 5
    while (titles := stored_titles(page)) != listed:  # the dropped chat is deleted
        assert time.monotonic() < deadline, titles
        page.wait_for_timeout(50)
    assert page.url == url  # not pulled back into the dropped chat
    messages = page.locator(".message[data-role='user'] .text")
    expect(messages).to_have_text(listed)
    expect(page.locator("#conversations .conversation-link")).to_have_count(len(listed))
    expect(page.get_by_role("textbox", name="Message")).to_have_value("Never sent")
    expect(page.locator("#send")).to_be_enabled()


MARKUP = '<img src=x onerror="window.__pwned=1"><b>bold</b>'


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_model_markup_is_shown_as_text(page: Any, transport: str) -> None:
    choose(page, transport, "passthrough")
    send(page, MARKUP)
    wait_for_state(page, "complete")
    assert f"You wrote: “{MARKUP}”" in reply_text(page)
    expect(page.locator(".message[data-role='user'] .text")).to_have_text(MARKUP)
    assert page.locator("#messages img, #messages b").count() == 0
    assert page.evaluate("window.__pwned") is None


def forget_the_prompt_limit(page: Any) -> None:
    """As a page loaded before the server's limit was lowered: the server refuses."""
    page.evaluate("document.querySelector('#chat').dataset.maxPromptLength = ''")


def test_a_prompt_over_the_limit_stays_in_its_box(page: Any) -> None:
    """The page knows the server's limit (code points, as the server counts): nothing is
    sent, no chat is created, the text stays to be shortened."""
    prompt = "😀" * 31_999 + "xy"  # 32,001 characters, 64,000 UTF-16 units
    send(page, prompt)
    error = page.locator("#load-error")
    expect(error).to_have_text("The message is too long: 32,001 characters, the limit is 32,000.")
    box = page.get_by_role("textbox", name="Message")
    assert box.input_value() == prompt
    expect(page.locator(".message")).to_have_count(0)
    expect(page.locator("#conversations .conversation-link")).to_have_count(0)
    send(page, "😀" * 31_999 + "x")  # at the limit: sent
    wait_for_state(page, "complete", timeout=REPLY_TIMEOUT)
    expect(error).to_be_hidden()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_refused_request_shows_an_error(page: Any, transport: str) -> None:
    choose(page, transport)
    forget_the_prompt_limit(page)
    send(page, "x" * 32_001)  # over STREAMING["MAX_PROMPT_LENGTH"]
    wait_for_state(page, "error", timeout=5_000)
    notice = last_reply(page).locator(".notice")
    expect(notice).to_be_visible()
    expect(notice).to_have_attribute("role", "alert")
    if transport == "sse":  # refused before it is sent: no server answers so long a URL
        expect(notice).to_contain_text("URL_TOO_LONG")
    else:
        expect(notice).to_contain_text("PROMPT_TOO_LARGE")
    # The same prompt would be refused again.
    expect(notice.get_by_role("button", name="Try again")).to_be_hidden()
    # The page stays usable.
    choose(page, transport, "passthrough")
    send(page, "Short now")
    wait_for_state(page, "complete", timeout=REPLY_TIMEOUT)
    # Asked again now, the refused prompt would come after this reply: no Try again.
    refused = page.locator(".message[data-role='assistant']").first
    expect(refused.locator(".notice")).to_be_visible()
    expect(refused.get_by_role("button", name="Try again")).to_be_hidden()


def test_a_503_of_the_server_itself_is_tried_again_after_its_retry_after(page: Any) -> None:
    """A 503 with the server's own error (``MAX_ACTIVE_PER_PROCESS`` reached, the process
    restarting) is tried again as a proxy's is, but not before its ``Retry-After``."""
    choose(page, "sse-post", "passthrough")
    asked: list[float] = []

    def busy_once(route: Any) -> None:
        asked.append(time.monotonic())
        if len(asked) > 1:
            route.continue_()
            return
        busy = {"error": "The server is too busy; try again shortly", "code": "SERVER_BUSY"}
        route.fulfill(status=503, headers={"Retry-After": "2"}, json=busy)

    page.route("**/chat/stream*", busy_once)
    send(page, "Are you there?")
    wait_for_state(page, "complete", timeout=REPLY_TIMEOUT)
    assert len(asked) == 2
    assert asked[1] - asked[0] >= 1.9  # the first attempt's backoff alone is 0.4-0.6 s


@pytest.mark.parametrize("code", ["SERVER_BUSY", "STORE_UNAVAILABLE"])
def test_when_the_attempts_run_out_the_servers_own_503_is_the_error(page: Any, code: str) -> None:
    """Tried until its attempts ran out, a prompt the server kept answering with its own 503
    fails with that answer (its code, message and status), not as a lost connection."""
    message = f"Refused: {code}"

    def refuse(route: Any) -> None:
        route.fulfill(
            status=503, headers={"Retry-After": "0"}, json={"error": message, "code": code}
        )

    page.route("**/chat/stream*", refuse)
    result = page.evaluate(
        """async () => {
            const { createStream } = await import("streaming");
            const url = document.querySelector("[data-sse-url]").dataset.sseUrl;
            const client = createStream({
                url, transport: "sse-post", reconnect: { retries: 2, delay: 10, maxDelay: 50 },
            });
            const result = await client.send("Are you there?");
            const { code, message, status } = result.error;
            return { state: result.status, code, message, status };
        }"""
    )
    assert result == {"state": "error", "code": code, "message": message, "status": 503}


def test_a_proxys_503_is_retried_until_the_server_answers(page: Any) -> None:
    """A 503 that is not the server's own error (a proxy's page while the server
    restarts) is a connection lost: the prompt is sent again and its reply streams."""
    choose(page, "sse-post", "passthrough")
    asked: list[str] = []

    def proxy_then_server(route: Any) -> None:
        asked.append(route.request.method)
        if len(asked) == 1:
            route.fulfill(status=503, content_type="text/html", body="<h1>Unavailable</h1>")
        else:
            route.continue_()

    page.route("**/chat/stream*", proxy_then_server)
    send(page, "Are you there?")
    wait_for_state(page, "complete", timeout=REPLY_TIMEOUT)
    assert asked[:2] == ["POST", "POST"]


def test_a_new_chat_whose_first_prompt_was_refused_is_not_kept(page: Any) -> None:
    """The first prompt creates its chat; refused, nothing is stored in it. Leaving it
    (New chat, another chat) deletes it, rather than listing an empty "New chat"."""
    send(page, "Kept")
    wait_for_state(page, "complete")
    forget_the_prompt_limit(page)
    for leave in ("New chat", "another chat"):
        page.get_by_role("button", name="New chat", exact=True).click()
        send(page, "x" * 32_001)  # over STREAMING["MAX_PROMPT_LENGTH"]
        wait_for_state(page, "error", timeout=5_000)
        expect(page.locator("#conversations .conversation-link")).to_have_count(2)
        if leave == "New chat":
            page.get_by_role("button", name="New chat", exact=True).click()
        else:
            page.locator("#conversations .conversation-link").filter(has_text="Kept").click()
        expect(page.locator("#conversations .conversation-link")).to_have_text(["Kept"])
        assert stored_titles(page) == ["Kept"]
    # A chat whose first prompt was answered stays.
    page.get_by_role("button", name="New chat", exact=True).click()
    send(page, "Answered")
    wait_for_state(page, "complete")
    page.get_by_role("button", name="New chat", exact=True).click()
    expect(page.locator("#conversations .conversation-link")).to_have_text(["Answered", "Kept"])


def test_keyboard_shift_enter_adds_a_line_and_escape_stops(page: Any) -> None:
    choose(page, "sse-post", "passthrough")
    box = page.get_by_role("textbox", name="Message")
    box.fill("first line")
    box.press("Shift+Enter")
    box.type("second line")
    expect(box).to_have_value("first line\nsecond line")
    expect(page.locator(".message")).to_have_count(0)
    box.press("Enter")
    expect(page.locator(".message[data-role='user'] .text")).to_have_text("first line\nsecond line")
    wait_for_state(page, "streaming", timeout=5_000)
    page.keyboard.press("Escape")
    wait_for_state(page, "cancelled", timeout=5_000)


def test_eventsource_refused_is_not_asked_again_and_offline_waits_for_the_network(
    page: Any,
) -> None:
    """``EventSource`` cannot tell a refusal from a connection reset after the server
    started the reply: asking again could start it twice, so a refusal is said as such.
    Offline, the request never left: the page reconnects once the network is back."""
    choose(page, "sse", "passthrough")
    asked: list[str] = []

    def refuse(route: Any) -> None:
        asked.append(route.request.url)
        route.fulfill(status=429, json={"error": "Busy", "code": "TOO_MANY_REPLIES"})

    page.route("**/chat/stream?*", refuse)
    send(page, "Refused")
    wait_for_state(page, "error", timeout=5_000)
    notice = last_reply(page).locator(".notice")
    expect(notice).to_contain_text("The server refused the request")
    expect(notice).to_contain_text("EventSource cannot say which (HTTP_ERROR)")
    expect(notice.get_by_role("button", name="Try again")).to_be_visible()
    assert len(asked) == 1
    page.unroute("**/chat/stream?*", refuse)

    page.context.set_offline(True)
    try:
        send(page, "Sent offline")
        wait_for_state(page, "reconnecting", timeout=5_000)
    finally:
        page.context.set_offline(False)
    wait_for_state(page, "complete", timeout=REPLY_TIMEOUT)
    assert "Sent offline" in reply_text(page)
