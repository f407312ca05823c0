"""The chat page in a project that requires a login everywhere: a logged-in user chats
on every transport; once signed out (in another tab, or expired) a prompt is refused with
a sentence that says to log in again, in the page's language, and stays in its box."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from .chatpage import choose, last_reply, reply_text, send, wait_for_state
from .conftest import DemoServer, demo_server

SIGNED_OUT = "Your session has ended: log in again"


@pytest.fixture(scope="module")
def login_server() -> Iterator[DemoServer]:
    yield from demo_server(settings="tests.browser.settings_login_required")


@pytest.fixture
def alices_page(browser: Any, login_server: DemoServer) -> Iterator[Any]:
    """The chat page of alice, logged in; fails the test on any uncaught JS error."""
    context = browser.new_context(viewport={"width": 1000, "height": 760})
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(f"{login_server.url}/h/login?name=alice")
        page.goto(f"{login_server.url}/")
        page.wait_for_selector("#chat[data-ready='true']", state="attached", timeout=5_000)
        yield page
        assert errors == [], f"uncaught errors in the page: {errors}"
    finally:
        context.close()


def log_out_elsewhere(page: Any, server: DemoServer) -> None:
    """Sign out with the page's cookies, as another tab of the same browser would."""
    assert page.request.post(f"{server.url}/h/logout").ok


@pytest.mark.parametrize("transport", ["sse-post", "ws"])
def test_a_prompt_after_signing_out_says_to_log_in_again(
    alices_page: Any, login_server: DemoServer, transport: str
) -> None:
    """Then, logged in again (in another tab), Try again sends it. (``EventSource`` cannot
    read why a request was refused: over ``sse`` the page can only say it was.)"""
    page = alices_page
    choose(page, transport)
    send(page, f"Hello over {transport}")
    wait_for_state(page, "complete")
    assert reply_text(page).startswith("Hello! I am the built-in demo model")

    log_out_elsewhere(page, login_server)
    send(page, "Still there?")
    wait_for_state(page, "error")
    notice = last_reply(page).locator(".notice")
    expect(notice).to_contain_text(SIGNED_OUT)
    expect(notice).to_contain_text("UNAUTHENTICATED")
    expect(page.locator(".message[data-role='user']").last).to_contain_text("Still there?")

    assert page.request.get(f"{login_server.url}/h/login?name=alice").ok
    notice.get_by_role("button", name="Try again").click()
    wait_for_state(page, "complete")
    assert reply_text(page).startswith("Hello! I am the built-in demo model")


def test_a_new_chat_after_signing_out_says_to_log_in_again(
    alices_page: Any, login_server: DemoServer
) -> None:
    page = alices_page
    log_out_elsewhere(page, login_server)
    send(page, "A new chat")
    expect(page.locator("#load-error")).to_contain_text(SIGNED_OUT)
    expect(page.get_by_role("textbox", name="Message")).to_have_value("A new chat")
