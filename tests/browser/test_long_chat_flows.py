"""A long stored chat (more than a page of messages) on the chat page, in Chromium, in the
flows merged beside its paging: a prompt refused as CONVERSATION_BUSY from a second tab,
a reply starting or streaming while "Show earlier messages" is pressed."""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from .chatpage import TRANSPORTS, choose, reply_source, send, wait_for_state
from .conftest import DemoServer, open_page, record_announcements
from .model import SLOW
from .test_conversations import (
    BUSY_NOTICE,
    conversation_id,
    second_tab,
    stored_reply,
    wait_for_length,
    wait_for_stored_prompt,
)
from .test_earlier_messages import CREATE_CHAT, store_messages, text

COUNT = 150


@pytest.fixture
def page(browser: Any, model_server: DemoServer) -> Iterator[Any]:
    yield from open_page(browser, model_server.url)


@pytest.fixture
def slow_page(browser: Any, slow_start_server: DemoServer) -> Iterator[Any]:
    yield from open_page(browser, slow_start_server.url)


def long_chat(page: Any, server: DemoServer) -> str:
    conversation = page.evaluate(CREATE_CHAT)
    store_messages(server, conversation, COUNT)
    page.goto(f"{server.url}/?c={conversation}")
    page.wait_for_selector("#chat[data-ready='true']", state="attached", timeout=5_000)
    expect(page.locator("#messages > .message")).to_have_count(100)
    return conversation


def shown(page: Any) -> list[str]:
    return [t.strip() for t in page.locator("#messages > .message .text").all_text_contents()]


def test_busy_reopen_of_a_long_chat_then_show_earlier_keeps_the_notice(
    page: Any, model_server: DemoServer
) -> None:
    """The second tab's prompt is refused in a chat of 150 messages: the chat opens again on
    its latest page with the running exchange; "Show earlier messages" works there, and the
    notice of the running reply stays until that reply ends."""
    choose(page, "sse-post", "passthrough")
    conversation = long_chat(page, model_server)
    with second_tab(page) as other:
        send(page, "Answer slowly, from the first tab")
        wait_for_length(page, 40)
        send(other, "Meanwhile, from the second tab")
        notice = other.locator("#load-error")
        expect(notice).to_have_text(BUSY_NOTICE)
        assert conversation_id(other) == conversation
        messages = other.locator("#messages > .message")
        # The latest 100 stored (its prompt among them), and the running reply after.
        expect(messages).to_have_count(101)
        assert shown(other)[-2] == "Answer slowly, from the first tab"
        earlier = other.get_by_role("button", name="Show earlier messages")
        expect(earlier).to_be_visible()
        earlier.click()
        expect(messages).to_have_count(COUNT + 2)
        assert shown(other)[:3] == [text(0), text(1), text(2)]
        # The reply spoken of still runs: its notice stays until it ends.
        assert other.locator(".message[data-role='assistant']").last.get_attribute(
            "data-state"
        ) not in ("complete", "error", "cancelled")
        expect(notice).to_be_visible()
        expect(notice).to_have_text(BUSY_NOTICE)
        wait_for_state(other, "complete")
        assert reply_source(other) == SLOW
        expect(notice).to_be_hidden()
        expect(other.get_by_role("textbox", name="Message")).to_have_value(
            "Meanwhile, from the second tab"
        )
        wait_for_state(page, "complete")


def test_show_earlier_while_a_reply_starts_keeps_the_earlier_page(
    slow_page: Any, slow_start_server: DemoServer
) -> None:
    """A long chat reloaded while its reply is starting (its turn stored, a second before it
    runs): "Show earlier messages" meanwhile adds the page before, and the reply, followed
    to its end, leaves it there (the chat is not loaded again over it)."""
    page = slow_page
    choose(page, "sse-post", "passthrough")
    conversation = long_chat(page, slow_start_server)
    send(page, "Second question")
    wait_for_stored_prompt(page, conversation, "Second question")
    page.reload()
    messages = page.locator("#messages > .message")
    expect(messages).to_have_count(101)  # the latest 100 (its prompt last), its reply to come
    assert page.evaluate("document.querySelector('#send').disabled")  # waiting for it
    page.get_by_role("button", name="Show earlier messages").click()
    expect(messages).to_have_count(COUNT + 2)
    wait_for_state(page, "complete")
    page.wait_for_timeout(500)
    expect(messages).to_have_count(COUNT + 2)
    assert shown(page)[0] == text(0)
    assert shown(page)[-2] == "Second question"


def test_regenerate_in_a_long_chat_then_earlier_messages_with_their_reasoning(
    page: Any, model_server: DemoServer
) -> None:
    """Regenerate the last reply of a chat of 150 messages: it is replaced in place, the
    latest page stays, and the page before comes after it, a stored reply's reasoning
    with it."""
    choose(page, "ws", "passthrough")
    conversation = page.evaluate(CREATE_CHAT)
    store_messages(model_server, conversation, COUNT)
    with sqlite3.connect(model_server.database, timeout=10) as db:
        db.execute(
            "UPDATE streaming_message SET reasoning = ? WHERE content = ?",
            ("Thinking about message one.", text(1)),
        )
    db.close()
    page.goto(f"{model_server.url}/?c={conversation}")
    page.wait_for_selector("#chat[data-ready='true']", state="attached", timeout=5_000)
    messages = page.locator("#messages > .message")
    expect(messages).to_have_count(100)
    page.locator(".message[data-role='assistant'] .regenerate").last.click()
    wait_for_state(page, "complete")
    assert re.fullmatch(r"Answer \d+ to “Message 148”\.", reply_source(page))
    expect(messages).to_have_count(100)
    page.get_by_role("button", name="Show earlier messages").click()
    expect(messages).to_have_count(COUNT)
    assert shown(page)[:2] == [text(0), text(1)]
    reasoning = messages.nth(1).locator(".reasoning")
    expect(reasoning).to_be_visible()
    expect(reasoning.locator(".reasoning-text")).to_have_text("Thinking about message one.")
    expect(page.locator(".message[data-role='assistant'] .regenerate:visible")).to_have_count(1)
    expect(messages.last.locator(".regenerate")).to_be_visible()


def test_back_to_a_long_chat_mid_reply_then_earlier_messages(
    page: Any, model_server: DemoServer
) -> None:
    """Left mid-reply and opened again: the latest page with the reply followed; the page
    before comes while it streams, and what is on screen does not move."""
    choose(page, "ws", "passthrough")
    long_chat(page, model_server)
    send(page, "Answer slowly, please")
    wait_for_length(page, 40)
    page.locator("#new-chat").click()
    page.locator("#conversations .conversation-link").filter(has_text="Long chat").click()
    messages = page.locator("#messages > .message")
    expect(messages).to_have_count(101)
    wait_for_length(page, 80)
    box = page.locator("#conversation")
    box.evaluate("c => { c.scrollTop = 0; }")
    page.get_by_role("button", name="Show earlier messages").click()
    expect(messages).to_have_count(COUNT + 2)
    wait_for_state(page, "complete")
    assert reply_source(page) == SLOW
    assert shown(page)[0] == text(0)
    # Scrolled up to read: the end of the reply did not pull the view down.
    assert not box.evaluate("c => c.scrollHeight - c.scrollTop - c.clientHeight < 80")
    expect(page.get_by_role("textbox", name="Message")).to_be_enabled()
    expect(page.locator("#send")).to_be_visible()


def test_the_french_page_of_a_long_chat(browser: Any, model_server: DemoServer) -> None:
    for page in open_page(browser, model_server.url, locale="fr-FR"):
        record_announcements(page)
        long_chat(page, model_server)
        record_announcements(page)
        earlier = page.get_by_role("button", name="Afficher les messages précédents")
        earlier.click()
        expect(page.locator("#messages > .message")).to_have_count(COUNT)
        expect(page.locator("#announcer")).to_have_text(
            "50 messages précédents affichés. La discussion est affichée depuis son début."
        )


def test_show_earlier_in_the_next_chat_while_the_last_one_still_loads(
    page: Any, model_server: DemoServer
) -> None:
    """ "Show earlier messages" pressed in a long chat whose page before is slow to come,
    then in another long chat opened meanwhile: the second one's page comes at once (it was
    ignored until the first chat's answer came, and that answer was dropped)."""
    other = page.evaluate(CREATE_CHAT.replace('"Long chat"', '"Other long chat"'))
    store_messages(model_server, other, COUNT)
    first = long_chat(page, model_server)
    held: list[Any] = []
    page.route(f"**/chat/conversations/{first}?before=*", lambda route: held.append(route))
    page.get_by_role("button", name="Show earlier messages").click()
    deadline = time.monotonic() + 5
    while not held and time.monotonic() < deadline:
        page.wait_for_timeout(20)
    assert held, "the page before was never asked for"
    page.locator("#conversations .conversation-link").filter(has_text="Other long chat").click()
    messages = page.locator("#messages > .message")
    expect(page).to_have_url(re.compile(other))
    expect(messages).to_have_count(100)
    earlier = page.get_by_role("button", name="Show earlier messages")
    expect(earlier).not_to_have_attribute("aria-disabled", "true")
    earlier.click()
    expect(messages).to_have_count(COUNT)
    held[0].continue_()  # the first chat's page, come too late: dropped
    page.wait_for_timeout(300)
    expect(messages).to_have_count(COUNT)
    assert shown(page)[0] == text(0)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_prompt_from_a_second_tab_while_the_first_tabs_reply_starts(
    slow_page: Any, slow_start_server: DemoServer, transport: str
) -> None:
    """The second tab's prompt while the first tab's reply is starting (stored, a second
    before it runs) in a long chat: refused, back in the box, and the second tab waits
    for that reply, follows it to its end, then the notice goes and the prompt can go."""
    page = slow_page
    choose(page, transport, "passthrough")
    conversation = long_chat(page, slow_start_server)
    with second_tab(page) as other:
        send(page, "Second question")
        wait_for_stored_prompt(page, conversation, "Second question")
        send(other, "Meanwhile, from the second tab")
        notice = other.locator("#load-error")
        expect(notice).to_have_text(BUSY_NOTICE)
        expect(notice).to_be_visible()
        box = other.get_by_role("textbox", name="Message")
        expect(box).to_have_value("Meanwhile, from the second tab")
        wait_for_state(other, "complete")
        assert re.fullmatch(r"Answer \d+ to “Second question”\.", reply_source(other))
        expect(notice).to_be_hidden()
        expect(other.locator("#send")).to_be_enabled()
        other.get_by_role("button", name="Show earlier messages").click()
        expect(other.locator("#messages > .message")).to_have_count(COUNT + 2)


def test_a_reply_that_starts_and_ends_between_two_looks_keeps_the_earlier_page(
    slow_page: Any, slow_start_server: DemoServer
) -> None:
    """A long chat reloaded while its reply starts, the page before shown meanwhile, and
    the reply run and ended before the page asks again (a short reply): it is shown as
    stored in its place, with the page before still there (the chat was loaded again over
    it, back to its latest page)."""
    page = slow_page
    choose(page, "sse-post", "passthrough")
    conversation = long_chat(page, slow_start_server)
    send(page, "Second question")
    wait_for_stored_prompt(page, conversation, "Second question")
    held: list[Any] = []
    looks: list[str] = []
    released: list[bool] = []

    def hold_the_looks(route: Any) -> None:
        """The chat's first load goes; the page's looks at it after are held."""
        looks.append(route.request.url)
        if len(looks) == 1 or "before=" in route.request.url or released:
            route.continue_()
        else:
            held.append(route)

    page.route(f"**/chat/conversations/{conversation}*", hold_the_looks)
    page.reload()
    messages = page.locator("#messages > .message")
    expect(messages).to_have_count(101)  # the latest 100 (its prompt last), its reply to come
    page.get_by_role("button", name="Show earlier messages").click()
    expect(messages).to_have_count(COUNT + 2)
    deadline = time.monotonic() + 5
    while not held and time.monotonic() < deadline:
        page.wait_for_timeout(20)
    assert held, "the page did not ask again"
    stored = stored_reply(page, conversation)  # the reply ran and ended meanwhile
    released.append(True)
    for route in held:
        route.continue_()
    wait_for_state(page, "complete")
    page.wait_for_timeout(500)
    expect(messages).to_have_count(COUNT + 2)
    assert shown(page)[0] == text(0)
    expect(messages.last.locator(".text")).to_have_text(stored["content"])
    expect(messages.last.locator(".regenerate")).to_be_visible()
    expect(page.locator("#send")).to_be_visible()


def test_regenerate_over_eventsource_from_a_second_tab_while_the_first_tabs_reply_runs(
    page: Any, model_server: DemoServer
) -> None:
    """Regenerate in the second tab, over EventSource (which cannot read the refusal), while
    the first tab's reply runs in a long chat: the running reply is shown and followed,
    the reply it would have replaced stays as stored, and the page says why."""
    choose(page, "sse", "passthrough")
    long_chat(page, model_server)
    with second_tab(page) as other:
        before = other.locator(".message[data-role='assistant'] .text").last.inner_text()
        send(page, "Answer slowly, from the first tab")
        wait_for_length(page, 40)
        other.locator(".message[data-role='assistant'] .regenerate").last.click()
        expect(other.locator("#load-error")).to_have_text(
            "A reply is still running in this chat, started in another tab or window: it is "
            "shown here. Ask again once it ends."
        )
        assert shown(other)[-3] == before  # the reply it would have replaced, as stored
        expect(other.locator(".message[data-state='error']")).to_have_count(0)
        wait_for_state(other, "complete")
        assert reply_source(other) == SLOW
        expect(other.locator("#load-error")).to_be_hidden()  # gone with the reply
