"""Stored conversations on the chat page, in Chromium, against a local OpenAI-compatible model.

The page's server talks to ``tests.browser.model``, which records every request, so the
tests see what the model was sent (the earlier turns) as well as what the page shows.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

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
    wait_for_reply,
    wait_for_state,
)
from .conftest import DemoServer, open_page, record_announcements
from .model import HOSTILE, MARKDOWN, SLOW, THOUGHT, Model


@pytest.fixture
def page(browser: Any, model_server: DemoServer) -> Iterator[Any]:
    yield from open_page(browser, model_server.url)


def conversation_id(page: Any) -> str | None:
    return parse_qs(urlsplit(page.url).query).get("c", [None])[0]


def links(page: Any) -> Any:
    return page.locator("#conversations .conversation-link")


def reload(page: Any) -> None:
    page.reload()
    page.wait_for_selector("#chat[data-ready='true']", state="attached", timeout=5_000)


def wait_for_length(page: Any, length: int) -> None:
    """Wait until the last reply shows at least ``length`` characters of Markdown."""
    wait_for_reply(
        page,
        """(length) => {
            const items = document.querySelectorAll('.message[data-role="assistant"] .text');
            const text = items[items.length - 1];
            return text && Number(text.dataset.length || 0) >= length;
        }""",
        length,
        f"the reply did not show {length} characters",
        REPLY_TIMEOUT,
    )


def stored_reply(page: Any, conversation: str) -> Any:
    """The conversation's last message once its reply is stored (no reply running and
    the last message the assistant's), waited for up to 10 s."""
    deadline = time.monotonic() + 10
    while True:
        stored = stored_messages(page, conversation)
        if stored["running"] is None and stored["messages"][-1]["role"] == "assistant":
            return stored["messages"][-1]
        assert time.monotonic() < deadline, stored
        time.sleep(0.1)


def stored_messages(page: Any, conversation: str) -> Any:
    """The conversation as the API answers it to this browser (its cookies, its owner)."""
    base = page.locator("#chat").get_attribute("data-conversations-url")
    response = page.request.get(urljoin(page.url, f"{base}/{conversation}"))
    assert response.ok, response.status
    return response.json()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_conversation_sends_the_model_its_earlier_turns(
    page: Any, model: Model, transport: str
) -> None:
    choose(page, transport, "passthrough")
    send(page, "First question")
    wait_for_state(page, "complete")
    first = reply_source(page)
    assert re.fullmatch(r"Answer \d+ to “First question”\.", first), first
    conversation = conversation_id(page)
    assert conversation
    expect(links(page).first).to_have_text("First question")
    expect(page.locator(".conversation-item.active .conversation-link")).to_have_attribute(
        "aria-current", "page"
    )

    send(page, "Second question")
    wait_for_state(page, "complete")
    assert re.fullmatch(r"Answer \d+ to “Second question”\.", reply_source(page))
    messages = model.messages()
    turns = [m for m in messages if m["role"] != "system"]
    assert turns == [
        {"role": "user", "content": "First question"},
        {"role": "assistant", "content": first},
        {"role": "user", "content": "Second question"},
    ]
    assert conversation_id(page) == conversation  # the same conversation, not a new one
    expect(page.locator(".message[data-role='user'] .text")).to_have_text(
        ["First question", "Second question"]
    )
    expect(page.locator(".message[data-role='assistant']")).to_have_count(2)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_reload_restores_the_conversation_and_resumes_its_reply(
    page: Any, model: Model, transport: str
) -> None:
    choose(page, transport, "passthrough")
    send(page, "Before the reload")
    wait_for_state(page, "complete")
    before = reply_source(page)
    send(page, "Answer slowly, I will reload")
    wait_for_length(page, 60)
    asked = len(model.requests)

    reload(page)
    expect(page.locator(".message[data-role='user'] .text")).to_have_text(
        ["Before the reload", "Answer slowly, I will reload"]
    )
    first = page.locator(".message[data-role='assistant']").first
    expect(first.locator(".text")).to_have_text(before)
    expect(first).to_have_attribute("data-status", "complete")
    # The reply still running is picked up where the server has it, and finishes.
    wait_for_state(page, "complete")
    assert reply_source(page) == SLOW
    expect(page.locator(".message[data-role='assistant']")).to_have_count(2)
    assert len(model.requests) == asked  # resumed: the model was not asked again
    assert page.locator("#transport-" + transport).is_checked()

    # A finished conversation comes back as it was.
    reload(page)
    expect(page.locator(".message[data-role='assistant']")).to_have_count(2)
    expect(last_reply(page)).to_have_attribute("data-status", "complete")
    assert reply_source(page) == SLOW


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_leaving_a_chat_mid_reply_leaves_its_reply_running(
    page: Any, model: Model, transport: str
) -> None:
    """New chat, another chat of the list, Back: the reply runs on, is stored whole, and
    opening its chat again shows (or resumes) it; the model is asked once."""
    choose(page, transport, "passthrough")
    send(page, "Answer slowly, I will leave")
    wait_for_length(page, 40)
    left = conversation_id(page)
    assert left
    asked = len(model.requests)

    page.locator("#new-chat").click()
    send(page, "Meanwhile, another question")
    wait_for_state(page, "complete")
    other = conversation_id(page)
    assert other and other != left

    links(page).filter(has_text="Answer slowly").click()  # back while it still runs
    expect(page.locator(".message[data-role='user'] .text")).to_have_text(
        ["Answer slowly, I will leave"]
    )
    wait_for_state(page, "complete")
    assert reply_source(page) == SLOW

    page.go_back()  # to the other chat, and back again: nothing runs there now
    expect(page.locator(".message[data-role='user'] .text")).to_have_text(
        ["Meanwhile, another question"]
    )
    page.go_forward()
    wait_for_state(page, "complete")
    assert reply_source(page) == SLOW
    stored = stored_reply(page, left)
    assert (stored["status"], stored["content"]) == ("complete", SLOW)
    assert len(model.requests) == asked + 1  # the other chat's prompt only


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_leaving_a_chat_right_after_sending_keeps_the_prompt(
    page: Any, model: Model, transport: str
) -> None:
    """New chat in the same task as Enter: the request may not have left yet. The page
    follows the reply until the server has it, then leaves it running."""
    choose(page, transport, "passthrough")
    send(page, "First question")
    wait_for_state(page, "complete")
    left = conversation_id(page)
    asked = len(model.requests)
    page.get_by_role("textbox", name="Message").fill("Sent as I leave")
    page.evaluate(
        """() => {
            const enter = { key: "Enter", bubbles: true, cancelable: true };
            document.querySelector("#prompt").dispatchEvent(new KeyboardEvent("keydown", enter));
            document.querySelector("#new-chat").click();
        }"""
    )
    expect(page.locator(".message")).to_have_count(0)
    links(page).filter(has_text="First question").click()
    expect(page.locator(".message[data-role='user'] .text")).to_have_text(
        ["First question", "Sent as I leave"]
    )
    wait_for_state(page, "complete")
    assert re.fullmatch(r"Answer \d+ to “Sent as I leave”\.", reply_source(page))
    assert stored_reply(page, left)["status"] == "complete"
    assert len(model.requests) == asked + 1


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_chat_left_before_its_first_token_leaves_the_next_chat_free(
    page: Any, transport: str
) -> None:
    """``EventSource`` names its reply with the first token only: until then the page's
    old client follows it. The chat opened next is idle at once: Esc there stops
    nothing of the chat left, and its own prompt is sent."""
    choose(page, transport, "passthrough")
    send(page, "Answer late, I will leave")
    wait_for_state(page, "waiting")
    page.wait_for_function("() => new URL(location.href).searchParams.has('c')")
    left = conversation_id(page)
    assert left
    page.locator("#new-chat").click()
    # At once, not once the first token came (``expect`` would wait for it).
    assert page.evaluate("document.querySelector('#chat').dataset.busy") == "false"
    assert page.locator("#stop").is_hidden()
    page.get_by_role("textbox", name="Message").press("Escape")
    send(page, "Meanwhile")
    wait_for_state(page, "complete")
    assert re.fullmatch(r"Answer \d+ to “Meanwhile”\.", reply_source(page))
    stored = stored_reply(page, left)
    assert stored["status"] == "complete" and "late" in stored["content"]


def holding_the_first(held: list[Any]) -> Callable[[Any], None]:
    """A route handler: the first request waits in ``held`` (the prompt's); later ones
    (the resume) go."""

    def hold(route: Any) -> None:
        if held:
            route.continue_()
        else:
            held.append(route)

    return hold


#: Holds the first prompt frame a WebSocket of the page sends, so the prompt is on its way
#: until ``window.releasePrompt()``; what that socket sends or closes meanwhile waits
#: behind it, in order, as a socket's frames go out.
HOLD_PROMPT_SCRIPT = """() => {
  const send = WebSocket.prototype.send;
  const close = WebSocket.prototype.close;
  let socket = null;
  let queued = null;
  WebSocket.prototype.send = function (data) {
    if (socket === null && String(data).includes('"type":"prompt"')) {
      socket = this;
      queued = [() => send.call(this, data)];
    } else if (this === socket && queued) queued.push(() => send.call(this, data));
    else send.call(this, data);
  };
  WebSocket.prototype.close = function (...args) {
    if (this === socket && queued) queued.push(() => close.apply(this, args));
    else close.apply(this, args);
  };
  window.promptHeld = () => queued !== null;
  // The server's answer to the held prompt, which never leaves: its refusal frame.
  window.refuseHeldPrompt = (frame) => {
    socket.dispatchEvent(new MessageEvent("message", { data: JSON.stringify(frame) }));
  };
  window.releasePrompt = () => {
    const waiting = queued;
    queued = null;
    for (const go of waiting) go();
  };
}"""


def hold_the_prompt(page: Any, transport: str) -> list[Any]:
    """Hold the next prompt ``page`` sends (its request, or on a WebSocket its frame); the
    list gets the held route (``None`` for a frame) once ``wait_until_held`` saw it leave."""
    held: list[Any] = []
    if transport == "ws":
        page.evaluate(HOLD_PROMPT_SCRIPT)
    else:
        page.route("**/chat/stream*", holding_the_first(held))
    return held


def wait_until_held(page: Any, transport: str, held: list[Any]) -> None:
    """Wait until the prompt held by ``hold_the_prompt`` has left the page."""
    deadline = time.monotonic() + 10
    while not held and time.monotonic() < deadline:
        if transport == "ws" and page.evaluate("() => window.promptHeld()"):
            held.append(None)
        page.wait_for_timeout(20)
    assert held, "the prompt never left"


def wait_for_stored_prompt(page: Any, conversation: str, prompt: str) -> None:
    """Wait until the conversation's last stored message is the user's ``prompt``."""
    deadline = time.monotonic() + 5
    while stored_messages(page, conversation)["messages"][-1]["content"] != prompt:
        assert time.monotonic() < deadline, f"{prompt!r} was not stored"
        page.wait_for_timeout(20)


def second_prompt_stored(page: Any, transport: str) -> str:
    """A first exchange, then a second prompt, sent and stored (on a server slow to start
    replies: its reply is still starting); the conversation's id is returned."""
    choose(page, transport, "passthrough")
    send(page, "First question")
    wait_for_state(page, "complete")
    left = conversation_id(page)
    assert left
    send(page, "Second question")
    wait_for_stored_prompt(page, left, "Second question")
    return left


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_back_to_a_chat_left_while_its_reply_starts_follows_the_reply(
    browser: Any, slow_start_server: DemoServer, transport: str
) -> None:
    """Left right after sending, and back while the reply is on its way into the event
    store (its turn stored, the reply not running yet): the page shows the exchange and
    follows the reply to its end, as it would a running one, without a reload."""
    for page in open_page(browser, slow_start_server.url):
        left = second_prompt_stored(page, transport)
        page.locator("#new-chat").click()
        links(page).filter(has_text="First question").click()
        assert stored_messages(page, left)["running"] is None  # still starting
        expect(user_texts(page)).to_have_text(["First question", "Second question"])
        expect(page.locator(".message[data-role='assistant']")).to_have_count(2)
        wait_for_state(page, "complete")
        assert re.fullmatch(r"Answer \d+ to “Second question”\.", reply_source(page))
        assert stored_reply(page, left)["status"] == "complete"


def test_a_reload_while_the_reply_starts_follows_the_reply(
    browser: Any, slow_start_server: DemoServer
) -> None:
    """A reload (or the chat opened in another tab) while the reply is on its way into the
    event store shows it coming and follows it."""
    for page in open_page(browser, slow_start_server.url):
        second_prompt_stored(page, "sse-post")
        reload(page)
        expect(user_texts(page)).to_have_text(["First question", "Second question"])
        expect(page.locator(".message[data-role='assistant']")).to_have_count(2)
        wait_for_state(page, "complete")
        assert re.fullmatch(r"Answer \d+ to “Second question”\.", reply_source(page))


def test_a_starting_reply_is_looked_for_with_the_last_message_only(
    browser: Any, slow_start_server: DemoServer
) -> None:
    """While the reply starts, the page asks the chat again and again whether it runs:
    each look asks for its last message only (``?limit=1``), not the whole latest page."""
    for page in open_page(browser, slow_start_server.url):
        left = second_prompt_stored(page, "sse-post")
        requested: list[str] = []
        page.on("request", lambda request, seen=requested: seen.append(request.url))
        reload(page)
        wait_for_state(page, "complete")
        chat = [urlsplit(url) for url in requested]
        looks = [url.query for url in chat if url.path.endswith(f"/conversations/{left}")]
        assert re.fullmatch(r"Answer \d+ to “Second question”\.", reply_source(page))
        assert looks[0] == "", looks  # the chat's load: its latest page
        assert len(looks) > 1, looks  # asked again while the reply started
        assert all(parse_qs(query) == {"limit": ["1"]} for query in looks[1:]), looks


@pytest.mark.parametrize("transport", ["sse-post", "sse"])
def test_back_to_a_chat_left_before_the_server_had_its_prompt(page: Any, transport: str) -> None:
    """Left, and back, while the prompt's request is still on its way (held here): the
    page asks for the chat once the server has the prompt, so it shows the exchange and
    follows its reply."""
    choose(page, transport, "passthrough")
    send(page, "First question")
    wait_for_state(page, "complete")
    left = conversation_id(page)
    held: list[Any] = []
    page.route("**/chat/stream*", holding_the_first(held))
    send(page, "Second question")
    deadline = time.monotonic() + 5
    while not held and time.monotonic() < deadline:
        page.wait_for_timeout(20)
    assert held, "the prompt's request never left"
    page.locator("#new-chat").click()
    links(page).filter(has_text="First question").click()
    page.wait_for_timeout(300)  # the page asks for the chat meanwhile, without the fix
    held[0].continue_()
    expect(user_texts(page)).to_have_text(["First question", "Second question"])
    wait_for_state(page, "complete")
    assert re.fullmatch(r"Answer \d+ to “Second question”\.", reply_source(page))
    assert conversation_id(page) == left


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_stop_keeps_a_stopped_message_with_its_text(page: Any, transport: str) -> None:
    choose(page, transport, "passthrough")
    send(page, "Answer slowly so I can stop you")
    wait_for_length(page, 40)
    page.get_by_role("button", name="Stop", exact=True).click()
    wait_for_state(page, "cancelled", timeout=5_000)
    reply = last_reply(page)
    expect(reply).to_have_attribute("data-status", "stopped")
    shown = reply_source(page)
    assert shown.startswith("A slow answer") and not shown.endswith("The end.")

    # Stored as stopped with the text said so far, and shown so after a reload.
    conversation = conversation_id(page)
    assert conversation
    message = stored_reply(page, conversation)
    assert (message["content"], message["status"]) == (shown, "stopped")
    reload(page)
    expect(last_reply(page)).to_have_attribute("data-status", "stopped")
    expect(last_reply(page).locator(".meta")).to_have_text("Stopped")
    assert reply_source(page) == message["content"]
    assert not reply_source(page).endswith("The end.")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_reply_stopped_in_another_tab_shows_as_stopped(page: Any, transport: str) -> None:
    """Over SSE a stop from elsewhere ends the stream with an ``ABORTED`` error event; the
    page asks the stored conversation and shows a stopped reply, as the stopping tab does,
    not "Something went wrong"."""
    choose(page, transport, "passthrough")
    send(page, "Answer slowly, another tab will stop you")
    wait_for_length(page, 40)
    other = page.context.new_page()
    other.goto(page.url)  # the same chat: it follows the running reply
    wait_for_state(other, "streaming", timeout=5_000)
    other.get_by_role("button", name="Stop", exact=True).click()
    wait_for_state(other, "cancelled", timeout=5_000)
    wait_for_state(page, "cancelled", timeout=5_000)
    reply = last_reply(page)
    expect(reply).to_have_attribute("data-status", "stopped")
    expect(reply.locator(".notice")).to_be_hidden()
    expect(reply.locator(".meta")).to_contain_text(re.compile("stopped", re.IGNORECASE))
    assert not reply_source(page).endswith("The end.")


def test_a_double_click_on_send_does_not_stop_the_reply(page: Any) -> None:
    """Stop takes Send's place at once: the second click of a double-click lands on it
    (in a chat that exists: a new one shows Stop only once it is created)."""
    choose(page, "sse-post", "passthrough")
    send(page, "First")
    wait_for_state(page, "complete")
    page.get_by_role("textbox", name="Message").fill("Answer slowly so I can stop you")
    page.get_by_role("button", name="Send").dblclick()
    expect(page.locator(".message[data-role='user']")).to_have_count(2)
    wait_for_state(page, "complete")
    assert reply_source(page).endswith("The end.")


#: Holds back the page's load of one conversation (``window.slowChat``) for 800 ms.
SLOW_LOAD = """() => {
    const fetch = window.fetch;
    window.fetch = async (url, init) => {
        if (window.slowChat && String(url).endsWith(window.slowChat)) {
            await new Promise((resolve) => setTimeout(resolve, 800));
        }
        return fetch(url, init);
    };
}"""


def test_a_chat_that_loads_late_is_not_shown_over_the_one_asked_for_next(page: Any) -> None:
    choose(page, "sse-post", "passthrough")
    send(page, "First chat")
    wait_for_state(page, "complete")
    first = conversation_id(page)
    page.get_by_role("button", name="New chat").click()
    send(page, "Second chat")
    wait_for_state(page, "complete")
    page.evaluate(SLOW_LOAD)
    page.evaluate("(id) => { window.slowChat = id; }", first)
    links(page).filter(has_text="First chat").click()  # answered in 800 ms
    links(page).filter(has_text="Second chat").click()  # answered at once
    expect(page.locator(".message[data-role='user'] .text")).to_have_text(["Second chat"])
    page.wait_for_timeout(1_200)  # the first chat's answer came meanwhile: dropped
    expect(page.locator(".message[data-role='user'] .text")).to_have_text(["Second chat"])
    assert conversation_id(page) != first
    expect(page.locator("#chat")).to_have_attribute("data-loading", "false")


BUSY_NOTICE = (
    "A reply is still running in this chat, started in another tab or window: it is shown "
    "here. Your message is back in the box: send it once that reply ends."
)
#: A prompt refused as busy is back in the box, and the reply it met has ended since.
BUSY_ENDED_NOTICE = (
    "Your message was not sent: a reply started in another tab or window was running in "
    "this chat. That reply has ended, and your message is back in the box."
)


@contextmanager
def second_tab(page: Any) -> Iterator[Any]:
    """The page's chat open in another tab of its browser (the same cookies and storage, so
    the same owner and transport); fails the test on any uncaught JS error there."""
    other = page.context.new_page()
    errors: list[str] = []
    other.on("pageerror", lambda error: errors.append(str(error)))
    try:
        other.goto(page.url)
        other.wait_for_selector("#chat[data-ready='true']", state="attached", timeout=5_000)
        yield other
        assert errors == [], f"uncaught errors in the second tab: {errors}"
    finally:
        other.close()


def user_texts(page: Any) -> Any:
    return page.locator(".message[data-role='user'] .text")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_prompt_from_a_second_tab_while_the_first_tabs_reply_runs(
    page: Any, model: Model, transport: str
) -> None:
    """The same chat in two tabs: a prompt sent from the second while the first one's reply
    runs is refused (``CONVERSATION_BUSY``). The second tab puts it back in its message box,
    says why, and shows the first tab's exchange, following its reply to the end; the
    prompt then goes once that reply ended."""
    choose(page, transport, "passthrough")
    send(page, "First question")
    wait_for_state(page, "complete")
    conversation = conversation_id(page)
    assert conversation
    with second_tab(page) as other:
        record_announcements(other)
        expect(user_texts(other)).to_have_text(["First question"])
        assert other.locator("#transport-" + transport).is_checked()

        send(page, "Answer slowly, from the first tab")
        wait_for_length(page, 40)
        asked = len(model.requests)
        send(other, "Meanwhile, from the second tab")

        box = other.get_by_role("textbox", name="Message")
        expect(other.locator("#load-error")).to_have_text(BUSY_NOTICE)
        # Said once to screen readers: the notice goes by itself, with the reply.
        other.wait_for_function("(text) => window.__announced.includes(text)", arg=BUSY_NOTICE)
        expect(box).to_have_value("Meanwhile, from the second tab")
        expect(user_texts(other)).to_have_text(
            ["First question", "Answer slowly, from the first tab"]
        )
        wait_for_state(other, "complete")  # followed: the first tab's reply, to its end
        assert reply_source(other) == SLOW
        expect(other.locator(".message[data-role='assistant']")).to_have_count(2)
        # The notice spoke of that reply: it goes with it (its end is announced).
        expect(other.locator("#load-error")).to_be_hidden()
        expect(box).to_have_value("Meanwhile, from the second tab")
        wait_for_state(page, "complete")
        assert reply_source(page) == SLOW
        assert len(model.requests) == asked  # the refused prompt asked the model nothing
        prompts = [m["content"] for m in stored_messages(page, conversation)["messages"]]
        assert "Meanwhile, from the second tab" not in prompts

        box.press("Enter")  # sent now, in the same chat
        wait_for_state(other, "complete")
        expect(other.locator("#load-error")).to_be_hidden()
        assert re.fullmatch(
            r"Answer \d+ to “Meanwhile, from the second tab”\.", reply_source(other)
        )
        assert conversation_id(other) == conversation
        expect(user_texts(other)).to_have_text(
            [
                "First question",
                "Answer slowly, from the first tab",
                "Meanwhile, from the second tab",
            ]
        )


def test_no_busy_notice_is_left_when_the_running_reply_ends_before_the_chat_is_read_again(
    page: Any,
) -> None:
    """The first tab's reply ends between the second tab's refusal and that tab's look at
    the chat again (held here until then): the chat shows that reply as stored, the prompt
    is back in the box, and no notice of a running reply is left on screen for good: a
    notice says why the prompt was not sent, and that the reply it met has ended."""
    choose(page, "sse-post", "passthrough")
    send(page, "First question")
    wait_for_state(page, "complete")
    conversation = conversation_id(page)
    assert conversation
    with second_tab(page) as other:
        record_announcements(other)
        held: list[Any] = []
        other.route(f"**/chat/conversations/{conversation}", holding_the_first(held))
        send(page, "Answer slowly, from the first tab")
        wait_for_length(page, 40)
        send(other, "Meanwhile, from the second tab")
        deadline = time.monotonic() + 10
        while not held and time.monotonic() < deadline:
            other.wait_for_timeout(20)
        assert held, "the second tab did not read the chat again"
        assert stored_reply(page, conversation)["content"] == SLOW  # ended meanwhile
        held[0].continue_()
        expect(user_texts(other)).to_have_text(
            ["First question", "Answer slowly, from the first tab"]
        )
        expect(other.locator("#chat")).to_have_attribute("data-loading", "false")
        expect(other.get_by_role("textbox", name="Message")).to_have_value(
            "Meanwhile, from the second tab"
        )
        expect(other.locator(".message[data-role='assistant']").last).to_have_attribute(
            "data-state", "complete"
        )
        expect(other.locator("#load-error")).to_have_text(BUSY_ENDED_NOTICE)
        other.wait_for_function(
            "(text) => window.__announced.includes(text)", arg=BUSY_ENDED_NOTICE
        )
        other.wait_for_timeout(300)
        expect(other.locator("#load-error")).to_have_text(BUSY_ENDED_NOTICE)
        expect(other.locator("#send")).to_be_enabled()


def test_regenerate_from_a_second_tab_while_the_first_tabs_reply_runs(
    page: Any, model: Model
) -> None:
    """Regenerate in the second tab while the first tab's reply runs is refused too: the
    reply it would have replaced comes back as stored, and the running one is followed."""
    choose(page, "sse-post", "passthrough")
    send(page, "First question")
    wait_for_state(page, "complete")
    first = reply_source(page)
    with second_tab(page) as other:
        send(page, "Answer slowly, from the first tab")
        wait_for_length(page, 40)
        asked = len(model.requests)
        other.locator(".message[data-role='assistant'] .regenerate").last.click()
        expect(other.locator("#load-error")).to_have_text(
            "A reply is still running in this chat, started in another tab or window: it is "
            "shown here. Ask again once it ends."
        )
        expect(user_texts(other)).to_have_text(
            ["First question", "Answer slowly, from the first tab"]
        )
        replies = other.locator(".message[data-role='assistant']")
        expect(replies.first.locator(".text")).to_have_text(first)
        wait_for_state(other, "complete")
        assert reply_source(other) == SLOW
        expect(other.locator("#load-error")).to_be_hidden()  # gone with the reply
        assert len(model.requests) == asked
        expect(other.get_by_role("textbox", name="Message")).to_have_value("")


def test_a_refused_prompt_goes_back_before_what_was_typed_since(page: Any) -> None:
    """The refusal takes a while to come: what the user typed meanwhile stays, after the
    prompt that goes back in the box."""
    choose(page, "sse-post", "passthrough")
    send(page, "First question")
    wait_for_state(page, "complete")
    with second_tab(page) as other:
        held: list[Any] = []
        other.route("**/chat/stream", holding_the_first(held))
        send(page, "Answer slowly, from the first tab")
        wait_for_length(page, 40)
        send(other, "Sent from the second tab")
        box = other.get_by_role("textbox", name="Message")
        expect(box).to_have_value("")
        deadline = time.monotonic() + 10
        while not held and time.monotonic() < deadline:
            other.wait_for_timeout(20)
        assert held, "the prompt's request never left"
        box.press_sequentially("A second thought")
        held[0].continue_()
        expect(box).to_have_value("Sent from the second tab\n\nA second thought")
        expect(other.locator("#load-error")).to_have_text(BUSY_NOTICE)
        # The caret stayed in the text typed since, where it was.
        end = len("Sent from the second tab\n\nA second thought")
        assert other.evaluate("document.querySelector('#prompt').selectionStart") == end
        wait_for_state(other, "complete")
        assert reply_source(other) == SLOW


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_prompt_refused_after_its_chat_was_left_goes_back_in_that_chats_box(
    page: Any, transport: str
) -> None:
    """The second tab's prompt is refused (a reply of the first tab runs) after that tab
    left the chat (New chat) while the prompt was on its way (its request, or its frame):
    the new chat's box stays as it was, and the prompt is back in the chat's box when the
    chat is opened again, with the notice of that reply, which goes when it ends."""
    choose(page, transport, "passthrough")
    send(page, "First question")
    wait_for_state(page, "complete")
    conversation = conversation_id(page)
    with second_tab(page) as other:
        held = hold_the_prompt(other, transport)
        send(page, "Answer slowly, from the first tab")
        wait_for_length(page, 40)
        send(other, "Sent from the second tab")
        wait_until_held(other, transport, held)
        other.locator("#new-chat").click()
        box = other.get_by_role("textbox", name="Message")
        expect(box).to_have_value("")
        if transport == "ws":
            other.evaluate("() => window.releasePrompt()")
        else:
            held[0].continue_()
        other.wait_for_timeout(500)  # refused meanwhile
        expect(box).to_have_value("")
        expect(other.locator("#load-error")).to_be_hidden()
        links(other).filter(has_text="First question").click()
        expect(user_texts(other)).to_have_text(
            ["First question", "Answer slowly, from the first tab"]
        )
        expect(box).to_have_value("Sent from the second tab")
        # Said why, as when the refusal came with the chat open; gone with that reply.
        expect(other.locator("#load-error")).to_have_text(BUSY_NOTICE)
        assert conversation_id(other) == conversation
        wait_for_state(other, "complete")
        assert reply_source(other) == SLOW
        expect(other.locator("#load-error")).to_be_hidden()
        prompts = [m["content"] for m in stored_messages(page, conversation)["messages"]]
        assert "Sent from the second tab" not in prompts


def kept_prompts(page: Any) -> Any:
    """The prompts this tab keeps for chats it left (its ``sessionStorage``)."""
    return page.evaluate(
        "() => JSON.parse(sessionStorage.getItem('streaming-chat-refused') || '[]')"
    )


def wait_for_kept_prompt(page: Any, prompt: str) -> None:
    """Wait until the tab keeps ``prompt``, refused after its chat was left."""
    page.wait_for_function(
        """(prompt) => (JSON.parse(sessionStorage.getItem('streaming-chat-refused') || '[]'))
            .some(([, kept]) => kept.text === prompt)""",
        arg=prompt,
    )


def test_a_prompt_refused_after_its_chat_was_left_is_back_after_a_reload(page: Any) -> None:
    """The second tab's prompt is refused (a reply of the first tab runs) after that tab
    left the chat; the tab is reloaded before the chat is opened again: the prompt is back
    in the chat's box all the same, said why (that reply has ended by then), and kept no
    longer once it is there."""
    choose(page, "sse-post", "passthrough")
    send(page, "First question")
    wait_for_state(page, "complete")
    conversation = conversation_id(page)
    assert conversation
    with second_tab(page) as other:
        held = hold_the_prompt(other, "sse-post")
        send(page, "Answer slowly, from the first tab")
        wait_for_length(page, 40)
        send(other, "Sent from the second tab")
        wait_until_held(other, "sse-post", held)
        other.locator("#new-chat").click()
        held[0].continue_()
        wait_for_kept_prompt(other, "Sent from the second tab")
        wait_for_state(page, "complete")
        reload(other)
        box = other.get_by_role("textbox", name="Message")
        expect(box).to_have_value("")
        links(other).filter(has_text="First question").click()
        expect(user_texts(other)).to_have_text(
            ["First question", "Answer slowly, from the first tab"]
        )
        expect(box).to_have_value("Sent from the second tab")
        expect(other.locator("#load-error")).to_have_text(BUSY_ENDED_NOTICE)
        assert kept_prompts(other) == []
        prompts = [m["content"] for m in stored_messages(page, conversation)["messages"]]
        assert "Sent from the second tab" not in prompts


REFUSALS = {
    "sse-post": (
        "TOO_MANY_REPLIES",
        "Too many replies at once",
        "Too many replies running for you: at most 3 at once; wait for one to end",
    ),
    "ws": (
        "SERVER_BUSY",
        "The server is busy",
        "The server is at capacity; retry in 1 s",
    ),
}


@pytest.mark.parametrize("transport", ["sse-post", "ws"])
def test_a_prompt_refused_by_a_limit_after_its_chat_was_left_goes_back_with_why(
    page: Any, transport: str
) -> None:
    """A prompt refused by a limit of the server (its answer here as the server words it:
    a JSON 429 to the request, an error frame on the socket) after its chat was left is
    back in that chat's box when the chat is opened again, with the refusal said; sent
    from there, it is answered."""
    choose(page, transport, "passthrough")
    send(page, "First question")
    wait_for_state(page, "complete")
    conversation = conversation_id(page)
    code, title, message = REFUSALS[transport]
    held = hold_the_prompt(page, transport)
    send(page, "Second question")
    wait_until_held(page, transport, held)
    page.locator("#new-chat").click()
    box = page.get_by_role("textbox", name="Message")
    expect(box).to_have_value("")
    if transport == "ws":
        page.evaluate(
            "(frame) => window.refuseHeldPrompt(frame)",
            {"type": "error", "code": code, "message": message},
        )
    else:
        held[0].fulfill(
            status=429, headers={"Retry-After": "5"}, json={"error": message, "code": code}
        )
    wait_for_kept_prompt(page, "Second question")
    expect(box).to_have_value("")  # the chat shown meanwhile keeps its box
    expect(page.locator("#load-error")).to_be_hidden()
    links(page).filter(has_text="First question").click()
    expect(user_texts(page)).to_have_text(["First question"])
    expect(box).to_have_value("Second question")
    expect(page.locator("#load-error")).to_have_text(
        f"{title}: your message was not sent, and is back in the box. {message} ({code})"
    )
    assert conversation_id(page) == conversation
    box.press("Enter")
    expect(page.locator("#load-error")).to_be_hidden()
    wait_for_state(page, "complete")
    assert re.fullmatch(r"Answer \d+ to “Second question”\.", reply_source(page))


def test_a_refused_prompt_is_kept_in_memory_where_the_storage_throws(page: Any) -> None:
    """A tab whose storage throws (disabled, as in a private window; or full): a prompt
    refused after its chat was left still goes back in that chat's box, kept in the page."""
    page.context.add_init_script(
        """Object.defineProperty(window, "sessionStorage", {
            get() { throw new DOMException("The storage is disabled", "SecurityError"); },
        });"""
    )
    reload(page)
    choose(page, "sse-post", "passthrough")
    send(page, "First question")
    wait_for_state(page, "complete")
    held = hold_the_prompt(page, "sse-post")
    send(page, "Second question")
    wait_until_held(page, "sse-post", held)
    page.locator("#new-chat").click()
    message = "Too many replies started from this address: at most 10 a minute; retry in 6 s"
    held[0].fulfill(
        status=429, headers={"Retry-After": "6"}, json={"error": message, "code": "RATE_LIMITED"}
    )
    links(page).filter(has_text="First question").click()
    expect(page.get_by_role("textbox", name="Message")).to_have_value("Second question")
    expect(page.locator("#load-error")).to_contain_text(f"{message} (RATE_LIMITED)")


def test_the_prompts_a_tab_keeps_are_bounded(page: Any) -> None:
    """A tab keeps the refused prompts of its 20 newest chats at most, and at most
    100 000 characters of them in its storage: the oldest go first."""
    send(page, "First question")
    wait_for_state(page, "complete")
    conversation = conversation_id(page)
    refusal = {"code": "TOO_MANY_REPLIES", "message": "Too many replies"}
    others = [
        [f"chat-{n}", {"text": "x" * 30_000, "unread": False, "error": refusal}] for n in range(25)
    ]
    mine = [conversation, {"text": "Kept for this chat", "unread": False, "error": refusal}]
    page.evaluate(
        "(kept) => sessionStorage.setItem('streaming-chat-refused', JSON.stringify(kept))",
        [*others, mine],
    )
    page.locator("#new-chat").click()
    reload(page)
    links(page).filter(has_text="First question").click()
    expect(page.get_by_role("textbox", name="Message")).to_have_value("Kept for this chat")
    kept = kept_prompts(page)
    assert [chat for chat, _ in kept] == ["chat-22", "chat-23", "chat-24"]
    assert sum(len(entry["text"]) for _, entry in kept) <= 100_000


def test_rename_and_delete_conversations(page: Any) -> None:
    choose(page, "sse-post", "passthrough")
    send(page, "Alpha topic")
    wait_for_state(page, "complete")
    alpha = conversation_id(page)
    page.get_by_role("button", name="New chat").click()
    expect(page.locator(".message")).to_have_count(0)
    assert conversation_id(page) is None
    send(page, "Beta topic")
    wait_for_state(page, "complete")
    beta = conversation_id(page)
    assert beta and beta != alpha
    expect(links(page).nth(0)).to_have_text("Beta topic")  # newest first
    expect(links(page).nth(1)).to_have_text("Alpha topic")

    # Rename (its buttons show on hover): Esc leaves the name as it was, Enter saves it.
    links(page).nth(1).hover()
    page.get_by_role("button", name="Rename “Alpha topic”").click()
    box = page.get_by_role("textbox", name="New name of the chat")
    expect(box).to_be_focused()
    box.fill("Never saved")
    box.press("Escape")
    expect(links(page).filter(has_text="Alpha topic")).to_have_count(1)
    expect(page.get_by_role("button", name="Rename “Alpha topic”")).to_be_focused()
    page.get_by_role("button", name="Rename “Alpha topic”").click()
    box.fill("Renamed alpha")
    box.press("Enter")
    expect(links(page).filter(has_text="Renamed alpha")).to_have_count(1)
    reload(page)  # stored
    expect(links(page).filter(has_text="Renamed alpha")).to_have_count(1)
    expect(links(page).filter(has_text="Alpha topic")).to_have_count(0)

    # Delete the open conversation: asked first, then gone, and the page is a new chat.
    assert conversation_id(page) == beta
    page.get_by_role("button", name="Delete “Beta topic”").click()
    page.get_by_role("button", name="Cancel").click()
    expect(links(page).filter(has_text="Beta topic")).to_have_count(1)
    page.get_by_role("button", name="Delete “Beta topic”").click()
    page.get_by_role("button", name="Delete", exact=True).click()
    expect(links(page).filter(has_text="Beta topic")).to_have_count(0)
    expect(page.locator(".message")).to_have_count(0)
    expect(page.get_by_role("heading", name="What can I help with?")).to_be_visible()
    assert conversation_id(page) is None
    reload(page)
    expect(links(page).filter(has_text="Beta topic")).to_have_count(0)

    # The renamed one opens with its messages.
    links(page).filter(has_text="Renamed alpha").click()
    expect(page.locator(".message[data-role='user'] .text")).to_have_text(["Alpha topic"])
    assert conversation_id(page) == alpha
    expect(page).to_have_title(re.compile("^Renamed alpha"))


#: More chats than the API's first page (100) holds.
MANY = 105

CREATE_CHATS = """async (count) => {
    const url = document.querySelector("#chat").dataset.conversationsUrl;
    const token = document.cookie.match(/csrftoken=([^;]+)/)[1];
    for (let i = 0; i < count; i++) {
        const response = await fetch(url, {method: "POST", body: JSON.stringify(
            {title: `Chat ${String(i).padStart(3, "0")}`}), headers: {
            "Content-Type": "application/json", "X-CSRFToken": token}});
        if (response.status !== 201) throw new Error(`create: ${response.status}`);
    }
}"""


def test_a_rename_while_a_reply_streams_and_a_name_of_200_emoji(page: Any) -> None:
    """The list is fetched again when a reply ends, while its rename box may be open: the
    new name goes to the entry listed then. A name counts characters, as the server does
    (200), not UTF-16 units (an emoji is two)."""
    choose(page, "sse-post", "passthrough")
    send(page, "Answer slowly while I rename this")
    wait_for_length(page, 20)
    links(page).nth(0).hover()
    page.get_by_role("button", name="Rename “Answer slowly while I rename this”").click()
    box = page.get_by_role("textbox", name="New name of the chat")
    box.fill("Renamed while it streamed")
    wait_for_state(page, "complete")  # the list was fetched again meanwhile
    box.press("Enter")
    expect(links(page)).to_have_text(["Renamed while it streamed"])

    links(page).nth(0).hover()
    page.get_by_role("button", name="Rename “Renamed while it streamed”").click()
    box.fill("😀" * 250)
    assert box.evaluate("input => [...input.value].length") == 200
    box.press("Enter")
    expect(links(page)).to_have_text(["😀" * 200])
    conversation = conversation_id(page)
    assert conversation
    assert stored_messages(page, conversation)["title"] == "😀" * 200


def test_older_chats_are_listed_on_demand_and_stay_listed(page: Any) -> None:
    page.evaluate(CREATE_CHATS, MANY)
    reload(page)
    expect(links(page)).to_have_count(100)
    expect(links(page).first).to_have_text("Chat 104")  # newest first
    expect(links(page).last).to_have_text("Chat 005")
    more = page.get_by_role("button", name="Show older chats")
    more.click()
    expect(links(page)).to_have_count(MANY)
    expect(links(page).last).to_have_text("Chat 000")
    expect(more).to_be_hidden()

    # A reply refreshes the first page; the older chats stay listed, none twice.
    choose(page, "sse-post", "passthrough")
    send(page, "Newest topic")
    wait_for_state(page, "complete")
    expect(links(page).first).to_have_text("Newest topic")
    expect(links(page)).to_have_count(MANY + 1)
    expect(links(page).last).to_have_text("Chat 000")

    # Deleting the last one listed while older ones remain unlisted: the next page starts
    # after the new last one.
    reload(page)
    expect(links(page).last).to_have_text("Chat 006")
    page.get_by_role("button", name="Delete “Chat 006”").click()
    page.get_by_role("button", name="Delete", exact=True).click()
    expect(links(page).filter(has_text="Chat 006")).to_have_count(0)
    more.click()
    expect(links(page)).to_have_count(MANY)
    expect(links(page).last).to_have_text("Chat 000")
    titles = links(page).all_text_contents()
    assert len(set(titles)) == len(titles)


DELETE_CHAT = """async (title) => {
    const url = document.querySelector("#chat").dataset.conversationsUrl;
    const token = document.cookie.match(/csrftoken=([^;]+)/)[1];
    const {conversations} = await (await fetch(url)).json();  // the first page
    const chat = conversations.find((c) => c.title === title);
    const response = await fetch(`${url}/${chat.id}`, {method: "DELETE",
        headers: {"X-CSRFToken": token}});
    if (response.status !== 204) throw new Error(`delete: ${response.status}`);
}"""


def test_older_chats_after_the_last_listed_one_was_deleted_elsewhere(page: Any) -> None:
    """The page after the last chat listed is asked for by that chat; deleted in another
    tab (or here while it was asked), it is dropped and the page after the one before it
    is listed: what the user asked for, not the first page again."""
    page.evaluate(CREATE_CHATS, MANY)
    reload(page)
    expect(links(page).last).to_have_text("Chat 005")
    page.evaluate(DELETE_CHAT, "Chat 005")  # as another tab would
    more = page.get_by_role("button", name="Show older chats")
    more.click()
    expect(links(page)).to_have_count(MANY - 1)
    expect(links(page).last).to_have_text("Chat 000")
    expect(links(page).filter(has_text="Chat 005")).to_have_count(0)
    expect(more).to_be_hidden()


INERT_CHECK = """() => {
    const root = document.querySelector("#messages");
    const all = [...root.querySelectorAll("*")];
    const active = "script, iframe, img, svg, object, embed, form, input, style";
    return {
        active: root.querySelectorAll(active).length,
        handlers: all.flatMap((el) => [...el.attributes].map((a) => a.name))
            .filter((name) => name.startsWith("on")),
        hrefs: [...root.querySelectorAll("a[href]")].map((a) => a.getAttribute("href")),
        rels: [...root.querySelectorAll("a[href]")].map((a) => a.rel),
        pwned: window.__pwned ?? null,
    };
}"""


def test_hostile_markdown_stays_inert(page: Any) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    choose(page, "sse-post", "passthrough")
    send(page, "Be hostile")
    wait_for_state(page, "complete")
    assert reply_source(page) == HOSTILE
    reply = last_reply(page)
    # Raw HTML is shown as the text it is; Markdown still works around it.
    text = reply_text(page)
    assert "<script>window.__pwned = 2; alert(2)</script>" in text
    assert '<a href="#" onclick="alert(5)">raw link</a>' in text
    expect(reply.get_by_role("link", name="safe")).to_have_attribute(
        "href", "https://example.com/docs"
    )
    for link in reply.locator("a").all():  # hover and click every link there is
        link.hover()
        link.click(modifiers=["Control"])
    for item in reply.locator(".text *").all()[:40]:
        item.hover()
    page.wait_for_timeout(300)

    for when in ("streamed", "after a reload"):
        state = page.evaluate(INERT_CHECK)
        assert state["active"] == 0, when
        assert state["handlers"] == [], when
        assert all(href.startswith("https://") for href in state["hrefs"]), state
        assert all(rel == "noopener noreferrer nofollow" for rel in state["rels"]), state
        assert state["pwned"] is None, when
        assert dialogs == [], when
        assert not [url for url in requests if "example.invalid" in url]
        reload(page)
        expect(last_reply(page)).to_have_attribute("data-status", "complete")
        assert reply_source(page) == HOSTILE


def test_markdown_code_blocks_and_copy(browser: Any, model_server: DemoServer) -> None:
    for page in open_page(
        browser, model_server.url, permissions=["clipboard-read", "clipboard-write"]
    ):
        choose(page, "ws", "passthrough")
        send(page, "Some markdown please")
        wait_for_state(page, "complete")
        reply = last_reply(page)
        expect(reply.locator(".text ul > li")).to_have_text(["first point", "second point"])
        expect(reply.locator(".text table tbody tr")).to_have_count(2)
        expect(reply.locator(".text th")).to_have_text(["Transport", "Reads with"])
        block = reply.locator(".code-block")
        expect(block.locator(".code-head")).to_contain_text("python")
        block.get_by_role("button", name="Copy python").click()
        expect(block.get_by_role("button", name="Copy python")).to_have_text("Copied")
        clipboard = page.evaluate("navigator.clipboard.readText()")
        assert clipboard == "def hello():\n    return 'world'\n"
        reply.get_by_role("button", name="Copy reply").click()
        assert page.evaluate("navigator.clipboard.readText()") == MARKDOWN
        page.locator(".message[data-role='user']").hover()
        page.get_by_role("button", name="Copy message").click()
        assert page.evaluate("navigator.clipboard.readText()") == "Some markdown please"


#: Records the lengths of the last reply's reasoning and answer at every change of the page.
REASONING_TRAIL = """() => {
    window.__reasoning = [];
    new MutationObserver(() => {
        const items = document.querySelectorAll('.message[data-role="assistant"]');
        const item = items[items.length - 1];
        if (!item) return;
        window.__reasoning.push({
            reasoning: item.querySelector(".reasoning-text").textContent.length,
            answer: Number(item.querySelector(".text").dataset.length || 0),
        });
    }).observe(document.querySelector("#messages"), {
        subtree: true, childList: true, characterData: true,
    });
}"""


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_reasoning_is_shown_apart_and_collapsed(page: Any, transport: str) -> None:
    choose(page, transport, "response")
    page.evaluate(REASONING_TRAIL)
    send(page, "think first")
    wait_for_state(page, "complete")
    # The thought streamed in pieces, before any of the answer.
    seen = page.evaluate("window.__reasoning")
    before_answer = {entry["reasoning"] for entry in seen if entry["answer"] == 0}
    assert len(before_answer - {0}) >= 3, seen
    assert max(before_answer) == len(THOUGHT)
    reply = last_reply(page)
    reasoning = reply.locator("details.reasoning")
    for when in ("streamed", "after a reload"):
        expect(reasoning).to_be_visible()
        assert reasoning.evaluate("details => details.open") is False, when
        expect(reasoning.locator("summary")).to_have_text("Reasoning")
        expect(reply.locator(".text")).to_have_text("Here is the short answer.")
        expect(reply.locator(".text strong")).to_have_text("short")
        reasoning.locator("summary").click()
        expect(reasoning.locator(".reasoning-text")).to_have_text(THOUGHT)
        reload(page)
        reply = last_reply(page)
        reasoning = reply.locator("details.reasoning")


def test_regenerate_replaces_the_last_reply(page: Any, model: Model) -> None:
    choose(page, "sse-post", "passthrough")
    send(page, "Regenerate this")
    wait_for_state(page, "complete")
    first = reply_source(page)
    reply = last_reply(page)
    reply.get_by_role("button", name="Regenerate reply").click()
    expect(reply.locator(".text")).not_to_have_text(first)
    wait_for_state(page, "complete")
    second = reply_source(page)
    assert re.fullmatch(r"Answer \d+ to “Regenerate this”\.", second) and second != first
    turns = [m for m in model.messages() if m["role"] != "system"]
    assert turns == [{"role": "user", "content": "Regenerate this"}]  # not the old answer
    expect(page.locator(".message[data-role='assistant']")).to_have_count(1)
    reload(page)
    expect(page.locator(".message")).to_have_count(2)
    assert reply_source(page) == second
    # Only the last reply offers Regenerate.
    send(page, "One more")
    wait_for_state(page, "complete")
    expect(page.get_by_role("button", name="Regenerate reply")).to_have_count(1)
    expect(last_reply(page).get_by_role("button", name="Regenerate reply")).to_be_visible()


def test_the_view_follows_the_stream_until_the_user_scrolls_up(
    browser: Any, model_server: DemoServer
) -> None:
    for page in open_page(browser, model_server.url, viewport={"width": 390, "height": 600}):
        choose(page, "sse-post", "passthrough")
        send(page, "Answer slowly, I will scroll")
        conversation = page.locator("#conversation")
        wait_for_reply(
            page,
            "() => { const c = document.querySelector('#conversation');"
            " return c.scrollHeight > c.clientHeight + 150; }",
            None,
            "the conversation did not overflow",
            REPLY_TIMEOUT,
        )
        at_bottom = "c => c.scrollHeight - c.scrollTop - c.clientHeight < 80"
        assert conversation.evaluate(at_bottom)  # followed so far
        jump = page.get_by_role("button", name="Jump to latest")
        expect(jump).to_be_hidden()
        conversation.hover()
        page.mouse.wheel(0, -5000)
        expect(jump).to_be_visible()
        top = conversation.evaluate("c => c.scrollTop")
        wait_for_length(page, 300)
        assert conversation.evaluate("c => c.scrollTop") == top  # left where the user is
        jump.click()
        assert conversation.evaluate(at_bottom)
        expect(jump).to_be_hidden()
        wait_for_state(page, "complete")
        assert conversation.evaluate(at_bottom)  # and followed again to the end


def boxes_overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return not (
        a["x"] + a["width"] <= b["x"]
        or b["x"] + b["width"] <= a["x"]
        or a["y"] + a["height"] <= b["y"]
        or b["y"] + b["height"] <= a["y"]
    )


def test_phone_layout_has_no_overlap(browser: Any, model_server: DemoServer, tmp_path: Any) -> None:
    width, height = 390, 844
    for page in open_page(
        browser,
        model_server.url,
        viewport={"width": width, "height": height},
        is_mobile=True,
        has_touch=True,
    ):
        choose(page, "ws", "passthrough")
        send(page, "Some markdown please")
        wait_for_state(page, "complete")
        send(page, "Answer slowly on a phone")
        wait_for_length(page, 200)
        header = page.locator(".topbar").bounding_box()
        messages = page.locator("#conversation").bounding_box()
        composer = page.locator("#composer").bounding_box()
        assert header and messages and composer
        for a, b in ((header, messages), (messages, composer), (header, composer)):
            assert not boxes_overlap(a, b), (a, b)
        assert composer["y"] >= 0 and composer["y"] + composer["height"] <= height
        assert composer["x"] >= 0 and composer["x"] + composer["width"] <= width
        expect(page.get_by_role("textbox", name="Message")).to_be_in_viewport()
        for element in ("#send, #stop", ".topbar .icon-button >> nth=0", "#settings-button"):
            expect(page.locator(element).first).to_be_in_viewport()
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        for item in page.locator(".message").all():
            box = item.bounding_box()
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= width, box
        page.screenshot(path=str(tmp_path / "phone.png"))
        wait_for_state(page, "complete")

        # The chat list is a drawer: closed, it takes no room; open, it covers the page.
        sidebar = page.locator("#sidebar")
        expect(sidebar).to_be_hidden()
        page.get_by_role("button", name="Open the chat list").click()
        expect(sidebar).to_be_visible()
        expect(page.get_by_role("button", name="New chat")).to_be_focused()
        page.wait_for_function("document.querySelector('#sidebar').getBoundingClientRect().x >= 0")
        box = sidebar.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= width
        page.keyboard.press("Escape")
        expect(sidebar).to_be_hidden()
        expect(page.get_by_role("button", name="Open the chat list")).to_be_focused()


def test_keyboard_alone_and_a_polite_announcement(page: Any) -> None:
    choose(page, "sse-post", "passthrough")
    box = page.get_by_role("textbox", name="Message")
    box.focus()
    page.keyboard.type("Typed by keyboard")
    page.keyboard.press("Enter")
    wait_for_state(page, "complete")
    # The reply's end is announced once, politely and briefly (not its text, read in place);
    # the streaming text itself is not live.
    announcer = page.locator("#announcer")
    expect(announcer).to_have_attribute("aria-live", "polite")
    words = len(reply_text(page).split())
    expect(announcer).to_have_text(f"Reply finished, {words} words.")
    assert last_reply(page).locator("[aria-live]").count() == 0

    # Tab reaches the rename button of the chat; Enter, a name, Enter renames it.
    for _ in range(40):
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement.getAttribute('aria-label') || ''")
        if focused.startswith("Rename"):
            break
    else:
        pytest.fail("Tab never reached the Rename button")
    assert page.evaluate("document.activeElement.matches(':focus-visible')")
    page.keyboard.press("Enter")
    page.keyboard.press("Control+A")
    page.keyboard.type("Keyboard chat")
    page.keyboard.press("Enter")
    expect(links(page).first).to_have_text("Keyboard chat")

    # The settings popover opens, changes and closes from the keyboard.
    page.get_by_role("button", name="Settings").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#settings")).to_be_visible()
    expect(page.locator("#transport-sse-post")).to_be_focused()
    page.keyboard.press("ArrowRight")
    expect(page.locator("#transport-sse")).to_be_checked()
    page.keyboard.press("Escape")
    expect(page.locator("#settings")).to_be_hidden()
    expect(page.get_by_role("button", name="Settings")).to_be_focused()
