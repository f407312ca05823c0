"""The chat page under Django's Content Security Policy (Django 6.0+) with a nonce for
scripts: its import map carries the nonce, so the page's modules load and a reply streams."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import django
import pytest

from ..servers import free_port
from .chatpage import choose, reply_text, send, wait_for_state
from .conftest import DemoServer, open_page

pytestmark = pytest.mark.skipif(django.VERSION < (6, 0), reason="Django's CSP is 6.0's")


@pytest.fixture(scope="module")
def csp_server() -> Iterator[DemoServer]:
    server = DemoServer(free_port(), settings="tests.browser.settings_csp")
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.mark.parametrize("transport", ["sse-post", "ws"])
def test_the_page_works_under_a_nonce_policy(
    browser: Any, csp_server: DemoServer, transport: str
) -> None:
    violations: list[str] = []

    def record(message: Any) -> None:
        if "Content Security Policy" in message.text:
            violations.append(message.text)

    for page in open_page(browser, csp_server.url):
        page.on("console", record)
        policy = page.evaluate("fetch('/').then((r) => r.headers.get('content-security-policy'))")
        assert "'nonce-" in policy
        choose(page, transport, "response")
        send(page, "Hello under a policy")
        wait_for_state(page, "complete")
        assert reply_text(page).startswith("Hello! I am the built-in demo model")
    assert violations == []
