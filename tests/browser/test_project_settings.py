"""The chat page under settings a real project has and the demo does not
(``tests.browser.settings_project``): a reply streams to its end and its chat is listed,
with no error in the page or its console."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from ..servers import free_port
from .chatpage import choose, send, wait_for_state
from .conftest import DemoServer, open_page


def project_server(project: str) -> Iterator[DemoServer]:
    server = DemoServer(
        free_port(),
        settings="tests.browser.settings_project",
        env={"STREAMING_TEST_PROJECT": project},
    )
    try:
        server.start()
        yield server
    finally:
        server.close()


def chat_page(browser: Any, url: str) -> Iterator[tuple[Any, list[str]]]:
    """The chat page at ``url``, loaded again with its console recorded."""
    for page in open_page(browser, url):
        console: list[str] = []
        page.on(
            "console", lambda message, into=console: into.append(f"{message.type}: {message.text}")
        )
        page.reload()
        page.wait_for_selector("#chat[data-ready='true']", state="attached", timeout=5_000)
        yield page, console


def chat(page: Any, transport: str) -> None:
    """One exchange over ``transport``: the reply ends complete, and the chat is listed."""
    choose(page, transport)
    send(page, "Hello")
    wait_for_state(page, "complete")
    expect(page.locator(".conversation-link")).to_have_count(1)
    expect(page.locator("#load-error")).to_be_hidden()


def test_atomic_requests(browser: Any) -> None:
    """``ATOMIC_REQUESTS``: the chat's async views are not run in its transaction, which
    Django refuses for async views (a 500, "You cannot use ATOMIC_REQUESTS with async
    views", on every call of the conversations API and of the stream)."""
    for server in project_server("atomic"):
        for page, console in chat_page(browser, server.url):
            chat(page, "sse-post")
            assert not [line for line in console if line.startswith("error")], console


@pytest.mark.parametrize("transport", ["sse-post", "ws"])
def test_strict_content_security_policy(browser: Any, transport: str) -> None:
    """A policy without ``unsafe-inline``, scripts by nonce: the page's inline import map
    carries the nonce, and nothing the page loads breaks the policy. The import map was
    blocked, so no module loaded ("Failed to resolve module specifier"), and the icon
    (a ``data:`` URL) broke ``img-src``."""
    for server in project_server("csp"):
        for page, console in chat_page(browser, server.url):
            chat(page, transport)
            violations = [line for line in console if "Content Security Policy" in line]
            assert violations == [], violations
            assert not [line for line in console if line.startswith("error")], console
