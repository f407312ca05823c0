"""The server goes away mid-reply: the page says so, reconnects, and works again."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from .chatpage import (
    TRANSPORTS,
    choose,
    last_reply,
    reply_source,
    reply_text,
    send,
    wait_for_state,
)
from .conftest import DemoServer, open_page


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
