"""The chat page in a project whose CSRF token is not in a ``csrftoken`` cookie that
scripts can read (``CSRF_COOKIE_NAME``, ``CSRF_COOKIE_HTTPONLY``, ``CSRF_USE_SESSIONS``):
the page sends the token Django gave it, so its POST and DELETE requests pass the check."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from ..servers import free_port
from .chatpage import choose, reply_text, send, wait_for_state
from .conftest import DemoServer, open_page


@pytest.fixture(scope="module", params=["cookie", "session"])
def csrf_server(request: pytest.FixtureRequest) -> Iterator[DemoServer]:
    """The demo project with its CSRF token in an HttpOnly cookie of another name, or in
    the session."""
    env = {"CSRF_USE_SESSIONS": "1"} if request.param == "session" else {}
    server = DemoServer(free_port(), settings="tests.browser.settings_csrf", env=env)
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.mark.parametrize("transport", ["sse-post", "ws"])
def test_a_chat_starts_and_is_deleted_with_the_token_of_the_page(
    browser: Any, csrf_server: DemoServer, transport: str
) -> None:
    for page in open_page(browser, csrf_server.url):
        assert "csrftoken" not in page.evaluate("document.cookie")
        choose(page, transport, "response")
        send(page, f"Hello over {transport}")
        wait_for_state(page, "complete")
        assert reply_text(page).startswith("Hello! I am the built-in demo model")
        chats = page.locator("#conversations .conversation-link")
        expect(chats.filter(has_text=f"Hello over {transport}")).to_have_count(1)
        chats.first.hover()
        page.get_by_role("button", name=f"Delete “Hello over {transport}”").click()
        page.get_by_role("button", name="Delete", exact=True).click()
        expect(chats.filter(has_text=f"Hello over {transport}")).to_have_count(0)
