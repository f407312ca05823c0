"""A long stored chat on the chat page, in Chromium: it opens on its latest page of
messages, and "Show earlier messages" (a real button, by keyboard or mouse) adds the pages
before, in order, above the ones shown, without moving what is on screen, announced,
until the chat is shown from its start and the button goes away."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from playwright.sync_api import expect

from .conftest import DemoServer, announced, open_page, record_announcements

#: Stored messages of the chat: two and a half pages of the API's 100.
COUNT = 250

CREATE_CHAT = """async () => {
    const url = document.querySelector("#chat").dataset.conversationsUrl;
    const token = document.cookie.match(/csrftoken=([^;]+)/)[1];
    const response = await fetch(url, {method: "POST", body: JSON.stringify(
        {title: "Long chat"}), headers: {
        "Content-Type": "application/json", "X-CSRFToken": token}});
    if (response.status !== 201) throw new Error(`create: ${response.status}`);
    return (await response.json()).id;
}"""

#: Where a message's item is in the scrolling view (px from its top), by its text.
TOP_OF = """(text) => {
    const item = [...document.querySelectorAll("#messages > .message")]
        .find((m) => m.querySelector(".text").textContent.trim() === text);
    return item.getBoundingClientRect().top
        - document.querySelector("#conversation").getBoundingClientRect().top;
}"""


def text(n: int) -> str:
    return f"Message {n:03d}"


def store_messages(server: DemoServer, conversation: str, count: int) -> None:
    """``count`` messages in the server's database, a prompt and its reply in turn."""
    now = datetime.now(UTC).isoformat(sep=" ").replace("+00:00", "")
    with sqlite3.connect(server.database, timeout=10) as db:
        db.executemany(
            "INSERT INTO streaming_message"
            " (conversation_id, role, content, status, generation, reasoning, created)"
            " VALUES (?, ?, ?, 'complete', ?, '', ?)",
            [
                (
                    conversation.replace("-", ""),
                    "user" if n % 2 == 0 else "assistant",
                    text(n),
                    None if n % 2 == 0 else f"gen{n}",
                    now,
                )
                for n in range(count)
            ],
        )
    db.close()


@pytest.fixture
def page(browser: Any, server: DemoServer) -> Iterator[Any]:
    yield from open_page(browser, server.url)


def shown(page: Any) -> list[str]:
    return [t.strip() for t in page.locator("#messages > .message .text").all_text_contents()]


def test_a_long_chat_opens_on_its_latest_page_and_shows_earlier_ones_on_demand(
    page: Any, server: DemoServer
) -> None:
    conversation = page.evaluate(CREATE_CHAT)
    store_messages(server, conversation, COUNT)
    with page.expect_response(f"**/chat/conversations/{conversation}") as opened:
        page.goto(f"{server.url}/?c={conversation}")
    page.wait_for_selector("#chat[data-ready='true']", state="attached", timeout=5_000)
    record_announcements(page)

    messages = page.locator("#messages > .message")
    expect(messages).to_have_count(100)  # the latest page only
    assert opened.value.json()["earlier"] is not None
    assert shown(page) == [text(n) for n in range(150, COUNT)]
    box = page.locator("#conversation")
    assert box.evaluate("c => c.scrollHeight - c.scrollTop - c.clientHeight < 80")
    earlier = page.get_by_role("button", name="Show earlier messages")
    expect(earlier).to_be_visible()
    expect(page.locator(".message[data-role='assistant'] .regenerate:visible")).to_have_count(1)

    # By keyboard: the button is the first thing in the conversation to Tab to.
    box.evaluate("c => { c.scrollTop = 0; }")
    box.focus()
    page.keyboard.press("Tab")
    expect(earlier).to_be_focused()
    top = page.evaluate(TOP_OF, text(150))
    page.keyboard.press("Enter")
    expect(messages).to_have_count(200)
    assert shown(page) == [text(n) for n in range(50, COUNT)]
    assert abs(page.evaluate(TOP_OF, text(150)) - top) < 1  # the view did not jump
    expect(earlier).to_be_focused()  # for the next page
    expect(page.locator("#announcer")).to_have_text("100 earlier messages shown.")

    # By mouse, the last page: the chat from its first message, and the button is gone.
    box.evaluate("c => { c.scrollTop = 0; }")
    top = page.evaluate(TOP_OF, text(50))
    earlier.click()
    expect(messages).to_have_count(COUNT)
    assert shown(page) == [text(n) for n in range(COUNT)]
    assert abs(page.evaluate(TOP_OF, text(50)) - top) < 1
    expect(earlier).to_be_hidden()
    expect(page.locator("#conversation")).to_be_focused()  # not lost with the button
    last = "50 earlier messages shown. The chat is shown from its start."
    expect(page.locator("#announcer")).to_have_text(last)
    assert announced(page) == ["100 earlier messages shown.", last]
    # Still one Regenerate, on the last reply; the earlier replies are complete.
    expect(page.locator(".message[data-role='assistant'] .regenerate:visible")).to_have_count(1)
    expect(page.locator(".message[data-state='complete']")).to_have_count(COUNT // 2)

    # Another chat, then this one again: its latest page, and the button, again.
    page.get_by_role("button", name="New chat").click()
    expect(messages).to_have_count(0)
    expect(earlier).to_be_hidden()
    page.go_back()
    expect(messages).to_have_count(100)
    expect(earlier).to_be_attached()
    expect(earlier).not_to_have_attribute("hidden", "")
