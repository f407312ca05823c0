"""The chat page with its sessions in the database (the deploy's): a fresh browser that
only loads the page stores no session; its first chat over the WebSocket makes one (the
socket, opened before that, is opened again with its cookie), so a reload mid-reply
resumes the reply, owned by the session, and lists the chat."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from ..servers import free_port
from .chatpage import choose, last_reply, reply_source, send, wait_for_state
from .conftest import DemoServer, open_page
from .model import SLOW, Model
from .test_conversations import conversation_id, links, reload, wait_for_length


@pytest.fixture(scope="module")
def db_sessions_server(model: Model) -> Iterator[DemoServer]:
    server = DemoServer(
        free_port(),
        settings="tests.browser.settings_db_sessions",
        env={"OPENAI_API_KEY": "test-key", "OPENAI_BASE_URL": model.url},
    )
    try:
        server.start()
        yield server
    finally:
        server.close()


def sessions(server: DemoServer) -> int:
    with sqlite3.connect(server.database) as db:
        return int(db.execute("SELECT count(*) FROM django_session").fetchone()[0])


def test_a_page_view_stores_no_session_and_the_first_chat_over_the_socket_is_resumable(
    browser: Any, db_sessions_server: DemoServer, model: Model
) -> None:
    before = sessions(db_sessions_server)
    for page in open_page(browser, db_sessions_server.url):
        choose(page, "ws", "passthrough")
        expect(page.locator("#connection")).to_have_attribute("data-state", "open")
        reload(page)  # a second look
        expect(page.locator("#connection")).to_have_attribute("data-state", "open")
        assert sessions(db_sessions_server) == before
        assert [c for c in page.context.cookies() if c["name"] == "sessionid"] == []

        send(page, "Answer slowly, I will reload")
        wait_for_length(page, 60)
        assert sessions(db_sessions_server) == before + 1
        conversation = conversation_id(page)
        asked = len(model.requests)

        reload(page)
        expect(page.locator(".message[data-role='user'] .text")).to_have_text(
            ["Answer slowly, I will reload"]
        )
        wait_for_state(page, "complete")  # resumed: only its owner could
        assert reply_source(page) == SLOW
        expect(last_reply(page)).to_have_attribute("data-status", "complete")
        assert len(model.requests) == asked  # the model was not asked again
        assert page.locator("#transport-ws").is_checked()
        expect(links(page)).to_have_count(1)
        expect(links(page).first).to_have_attribute("href", f"?c={conversation}")
        assert sessions(db_sessions_server) == before + 1
