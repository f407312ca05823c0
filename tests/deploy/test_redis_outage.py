"""The shipped production settings while Redis is down or was flushed: sessions live in
the database, so the page and the stored conversations stay up and every visitor keeps
their session (and so their conversations); only replies, whose events are in Redis,
are refused, as JSON. One daphne process started as the systemd unit starts it, reached
directly (as nginx would: ``X-Forwarded-Proto: https``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..redis_server import RedisServer, needs_redis, redis_server
from ..servers import free_port, run_server
from .stack import manage, production_env, unit_command

pytestmark = needs_redis


@pytest.fixture
def production(tmp_path: Path) -> Iterator[tuple[str, RedisServer]]:
    with redis_server() as redis:
        env = production_env(tmp_path, redis.url)
        manage(env, "migrate", "--noinput")
        manage(env, "collectstatic", "--noinput")
        port = free_port()
        with run_server(unit_command(port), port, env) as url:
            yield url, redis


class Visitor:
    """A browser behind nginx: HTTPS as far as Django knows, its cookies sent by hand
    (they are ``Secure``, and this connection is plain HTTP)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = httpx.Client(base_url=url, timeout=20)
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {
            "X-Forwarded-Proto": "https",
            "Origin": self.url.replace("http://", "https://"),
            "Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items()),
            "X-CSRFToken": self.cookies.get("csrftoken", ""),
        }
        response = self.client.request(method, path, headers=headers, **kwargs)
        self.cookies.update(response.cookies)
        return response


def test_with_redis_down_the_page_and_conversations_answer_and_replies_are_json_503(
    production: tuple[str, RedisServer],
) -> None:
    url, redis = production
    known = Visitor(url)
    assert known.request("GET", "/").status_code == 200
    created = known.request("POST", "/chat/conversations", json={"title": "kept"})
    assert created.status_code == 201, created.text[:300]
    conversation_id = created.json()["id"]
    redis.stop()
    newcomer = Visitor(url)
    assert newcomer.request("GET", "/").status_code == 200
    assert "sessionid" not in newcomer.cookies  # the page stores none
    # Its first chat is refused, as JSON (the count of its address's new chats is in
    # Redis); Django saves no session with a 5xx answer.
    first = newcomer.request("POST", "/chat/conversations", json={})
    assert first.status_code == 503, first.text[:300]
    assert first.json()["code"] == "STORE_UNAVAILABLE"
    listed = known.request("GET", "/chat/conversations")
    assert listed.status_code == 200, listed.text[:300]
    assert [c["id"] for c in listed.json()["conversations"]] == [conversation_id]
    refused = known.request("POST", "/chat/stream", json={"prompt": "hello"})
    assert refused.status_code == 503, refused.text[:300]
    assert refused.json()["code"] == "STORE_UNAVAILABLE"


def test_a_flushed_redis_keeps_every_visitors_conversations(
    production: tuple[str, RedisServer],
) -> None:
    """Flushing or restarting Redis (no persistence) loses replies' events, not sessions:
    an anonymous visitor still owns the conversations stored under their session."""
    url, redis = production
    visitor = Visitor(url)
    visitor.request("GET", "/")
    reply = visitor.request("POST", "/chat/stream", json={"prompt": "hello"})
    assert reply.status_code == 200, reply.text[:300]
    conversation_id = reply.headers["X-Conversation-Id"]
    redis.restart()  # no persistence: everything in Redis is gone
    stored = visitor.request("GET", f"/chat/conversations/{conversation_id}")
    assert stored.status_code == 200, stored.text[:300]
    assert [m["role"] for m in stored.json()["messages"]] == ["user", "assistant"]
    again = visitor.request(
        "POST", "/chat/stream", json={"prompt": "more", "conversation": conversation_id}
    )
    assert again.status_code == 200, again.text[:300]
