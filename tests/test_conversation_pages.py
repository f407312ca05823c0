"""A conversation's messages in pages, over Django's test client on SQLite: the latest
``limit`` first, oldest first within a page, ``earlier`` as the cursor of the page before
(``?before=``); a bad limit or cursor gets the list's answers; the same queries, one plan on
the ``(conversation, id)`` index, however many messages there are."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from streaming.conversations import PAGE_MAX_CHARS
from streaming.models import Conversation, Message

API = "/chat/conversations"
pytestmark = pytest.mark.django_db


@pytest.fixture
def me(client: Client, django_user_model: Any) -> Client:
    client.force_login(django_user_model.objects.create_user("me"))
    return client


def owner_of(client: Client) -> str:
    return f"user:{client.session['_auth_user_id']}"


def chat(owner: str, count: int) -> tuple[Conversation, list[int]]:
    """A conversation of ``count`` messages, a prompt and its reply in turn."""
    conversation = Conversation.objects.create(owner=owner, title=f"{count} messages")
    Message.objects.bulk_create(
        Message(
            conversation=conversation,
            role="user" if n % 2 == 0 else "assistant",
            content=f"message {n}",
        )
        for n in range(count)
    )
    ids = list(Message.objects.filter(conversation=conversation).values_list("id", flat=True))
    return conversation, ids


def page(client: Client, conversation: Conversation, **params: Any) -> dict[str, Any]:
    response = client.get(f"{API}/{conversation.pk}", params)
    assert response.status_code == 200, response.content[:300]
    return dict(response.json())


def test_the_latest_page_comes_first_oldest_first_within_it(me: Client) -> None:
    conversation, ids = chat(owner_of(me), 250)
    data = page(me, conversation)
    assert set(data) == {
        "id", "title", "updated", "messages", "earlier", "running", "starting",
    }  # fmt: skip
    assert [m["id"] for m in data["messages"]] == ids[150:]  # 100 by default
    assert data["messages"][0]["content"] == "message 150"
    assert set(data["messages"][0]) == {
        "id", "role", "content", "status", "reasoning", "generation", "created",
    }  # fmt: skip
    assert data["earlier"] == ids[150]
    assert (data["running"], data["starting"]) == (None, False)
    assert data["title"] == "250 messages"


def test_before_pages_back_to_the_first_message(me: Client) -> None:
    conversation, ids = chat(owner_of(me), 250)
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        data = page(me, conversation, limit=40, **({"before": cursor} if cursor else {}))
        got = [m["id"] for m in data["messages"]]
        assert got == sorted(got) and len(got) <= 40
        seen = got + seen
        pages += 1
        cursor = data["earlier"]
        if cursor is None:
            break
        assert cursor == got[0]
    assert seen == ids
    assert pages == 7  # 6 pages of 40, then 10
    assert data["messages"][0]["content"] == "message 0"


def test_a_page_that_ends_on_the_first_message_has_no_earlier(me: Client) -> None:
    conversation, ids = chat(owner_of(me), 6)
    assert [m["id"] for m in page(me, conversation, limit=6)["messages"]] == ids
    assert page(me, conversation, limit=6)["earlier"] is None
    assert page(me, conversation, limit=5)["earlier"] == ids[1]
    last = page(me, conversation, limit=5, before=ids[1])
    assert ([m["id"] for m in last["messages"]], last["earlier"]) == ([ids[0]], None)
    first = page(me, conversation, before=ids[0])  # before the first: nothing
    assert (first["messages"], first["earlier"]) == ([], None)


def test_a_conversation_without_messages(me: Client) -> None:
    conversation, _ = chat(owner_of(me), 0)
    data = page(me, conversation)
    assert (data["messages"], data["earlier"], data["running"]) == ([], None, None)
    assert page(me, conversation, limit=1)["messages"] == []


@pytest.mark.parametrize("limit", ["0", "101", "ten", "-1", "\u00b2", "1.5", "", "1" * 5000])
def test_a_bad_limit_is_the_lists_json_400(me: Client, limit: str) -> None:
    conversation, _ = chat(owner_of(me), 3)
    for path in (API, f"{API}/{conversation.pk}"):
        response = me.get(path, {"limit": limit})
        assert response.status_code == 400, path
        assert response.json() == {
            "error": "'limit' must be an integer from 1 to 100",
            "code": "BAD_REQUEST",
        }


def test_the_limit_bounds(me: Client) -> None:
    conversation, ids = chat(owner_of(me), 150)
    assert [m["id"] for m in page(me, conversation, limit=1)["messages"]] == ids[-1:]
    assert [m["id"] for m in page(me, conversation, limit=100)["messages"]] == ids[50:]


def test_a_cursor_that_is_no_message_of_this_conversation_is_a_404(me: Client) -> None:
    """As the list's cursor that is no conversation of the owner: 404 ``NOT_FOUND``."""
    conversation, ids = chat(owner_of(me), 4)
    other, theirs = chat(owner_of(me), 2)
    listed = me.get(API, {"before": "00000000-0000-4000-8000-000000000000"})
    assert (listed.status_code, listed.json()["code"]) == (404, "NOT_FOUND")
    for cursor in (theirs[0], ids[-1] + 100, 0, -1, "x", "1e3", " 1", "\u0661", "9" * 30):
        response = me.get(f"{API}/{conversation.pk}", {"before": cursor})
        assert response.status_code == 404, cursor
        assert response.json() == {
            "error": "No such message in this conversation",
            "code": "NOT_FOUND",
        }
    assert [m["id"] for m in page(me, other, before=theirs[1])["messages"]] == theirs[:1]


def test_another_owners_conversation_is_the_same_404_with_or_without_a_cursor(
    me: Client,
) -> None:
    theirs, ids = chat("session:someone-else", 5)
    for params in ({}, {"limit": 2}, {"before": ids[-1]}, {"before": "x"}):
        response = me.get(f"{API}/{theirs.pk}", params)
        assert response.status_code == 404
        assert response.json() == {"error": "No such conversation", "code": "NOT_FOUND"}


def test_head_answers_as_get_without_a_body(me: Client) -> None:
    conversation, ids = chat(owner_of(me), 3)
    head = me.head(f"{API}/{conversation.pk}", {"before": ids[-1]})
    assert head.status_code == 200 and head.content == b""
    assert me.head(f"{API}/{conversation.pk}", {"before": "x"}).status_code == 404


@pytest.mark.parametrize("count", [0, 5, 250, 1000])
def test_the_same_queries_whatever_the_number_of_messages(
    me: Client, django_assert_num_queries: Any, count: int
) -> None:
    conversation, ids = chat(owner_of(me), count)
    path = f"{API}/{conversation.pk}"
    # The user, the conversation, one page's ids and sizes, its messages (if any).
    with django_assert_num_queries(4 if ids else 3) as latest:
        assert me.get(path).status_code == 200
    if ids:
        with django_assert_num_queries(4):
            assert me.get(path, {"before": ids[len(ids) // 2]}).status_code == 200
    with django_assert_num_queries(3):  # no messages read for a cursor that is none
        assert me.get(path, {"before": 10**9}).status_code == 404
    page_sql = latest.captured_queries[2]["sql"]
    assert "LIMIT 101" in page_sql, page_sql


def test_the_page_is_read_on_the_index_without_a_scan_or_a_sort(me: Client) -> None:
    """SQLite's plan of the view's own queries of messages: a search of the
    ``(conversation, id)`` index, in its order (no temporary sort of every message), then
    the page's rows by their keys."""
    conversation, ids = chat(owner_of(me), 300)
    for params in ({}, {"before": ids[200]}):
        with CaptureQueriesContext(connection) as queries:
            assert me.get(f"{API}/{conversation.pk}", params).status_code == 200
        sizes, rows = (plan_of(q["sql"]) for q in queries.captured_queries[-2:])
        assert "USING INDEX streaming_msg_conv_id" in sizes, sizes
        assert "USING INTEGER PRIMARY KEY" in rows, rows
        for plan in (sizes, rows):
            assert "SCAN" not in plan and "TEMP B-TREE" not in plan, plan


def plan_of(sql: str) -> str:
    """SQLite's plan of a query of messages."""
    assert '"streaming_message"' in sql.split("FROM")[1], sql
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN QUERY PLAN {sql}")
        return " ".join(str(row[-1]) for row in cursor.fetchall())


def test_a_page_of_long_messages_is_cut_at_its_characters(me: Client) -> None:
    """A page carries at most ``PAGE_MAX_CHARS`` of text and reasoning past its first
    message, so a request never holds a hundred replies of a million characters: the rest
    is paged back by ``earlier`` as usual, a message too long for any page alone."""
    conversation = Conversation.objects.create(owner=owner_of(me), title="long")
    tenth = PAGE_MAX_CHARS // 10
    # Oldest first: the page before the longest holds exactly PAGE_MAX_CHARS.
    sizes = [10, 4 * tenth, 3 * tenth, 3 * tenth, 12 * tenth, 20]
    Message.objects.bulk_create(
        Message(conversation=conversation, role="assistant", content="a" * (size - size // 4),
                reasoning="r" * (size // 4))
        for size in sizes
    )  # fmt: skip
    ids = list(Message.objects.filter(conversation=conversation).values_list("id", flat=True))
    pages = []
    params: dict[str, Any] = {}
    while True:
        data = page(me, conversation, **params)
        pages.append([m["id"] for m in data["messages"]])
        if data["earlier"] is None:
            break
        assert data["earlier"] == pages[-1][0]
        params = {"before": data["earlier"]}
    assert pages == [[ids[5]], [ids[4]], ids[1:4], [ids[0]]]
