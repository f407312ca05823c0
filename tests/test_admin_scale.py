"""The admin on many messages: a conversation's count is a subquery of its row (no join
of every message, which the search by text multiplied: a conversation of n matching
messages was counted n² and sorted among n² rows), the search by text is an ``EXISTS``
(no ``DISTINCT``), and a long conversation's page shows its last messages only."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from streaming.admin import INLINE_MESSAGES
from streaming.models import Conversation, Message

ADMIN = "/admin/streaming/conversation/"
pytestmark = pytest.mark.django_db


def chat(owner: str, title: str, texts: list[str]) -> Conversation:
    conversation = Conversation.objects.create(owner=owner, title=title)
    Message.objects.bulk_create(
        Message(conversation=conversation, role="user", content=text) for text in texts
    )
    return conversation


def counts(page: str) -> list[str]:
    return re.findall(r'<td class="field-message_count">(\d+)</td>', page)


def test_the_search_by_text_counts_each_conversation_once_and_right(admin_client: Client) -> None:
    chat("session:a", "Fruit", ["apple pie", "apple tart", "an apple"])
    chat("session:b", "Other", ["pear"])
    with CaptureQueriesContext(connection) as queries:
        found = admin_client.get(ADMIN, {"q": "apple"})
    assert found.status_code == 200
    assert "Fruit" in found.text and "Other" not in found.text
    assert counts(found.text) == ["3"]  # was 9: every match times every message
    assert "1 result" in found.text
    rows = 'DISTINCT "streaming_conversation"."id"'  # the dates' DISTINCT is the hierarchy's
    assert not any(rows in q["sql"] for q in queries.captured_queries)
    # Several words: each in the title, the owner or a message.
    assert counts(admin_client.get(ADMIN, {"q": "fruit pie"}).text) == ["3"]
    assert counts(admin_client.get(ADMIN, {"q": "session:b pear"}).text) == ["1"]
    assert counts(admin_client.get(ADMIN, {"q": "apple pear"}).text) == []


def test_the_changelist_joins_no_messages(admin_client: Client) -> None:
    chat("session:a", "Two", ["one", "two"])
    chat("session:b", "None", [])
    for query in ({}, {"o": "3"}, {"updated__year": "2026"}):
        with CaptureQueriesContext(connection) as queries:
            listing = admin_client.get(ADMIN, query)
        assert listing.status_code == 200
        assert sorted(counts(listing.text)) in (["0", "2"], []), query
        for sql in (q["sql"] for q in queries.captured_queries):
            assert "JOIN" not in sql and "GROUP BY" not in sql.split("(SELECT")[0], sql
    ordered = admin_client.get(ADMIN, {"o": "3"}).text  # by the count, ascending
    assert counts(ordered) == ["0", "2"]


def test_a_long_conversations_page_shows_its_last_messages(admin_client: Client) -> None:
    texts = [f"message number {i}." for i in range(INLINE_MESSAGES + 5)]
    conversation = chat("user:1", "Long", texts)
    page = admin_client.get(f"{ADMIN}{conversation.pk}/change/")
    assert page.status_code == 200
    assert "message number 5." in page.text and texts[-1] in page.text
    assert "message number 4." not in page.text
    assert f"{INLINE_MESSAGES + 5} messages" in page.text
    link = re.search(r'href="(/admin/streaming/message/\?[^"]+)"', page.text)
    assert link is not None
    listed = admin_client.get(link.group(1).replace("&amp;", "&"))
    assert listed.status_code == 200
    assert f"{INLINE_MESSAGES + 5} messages" in listed.text or "105 messages" in listed.text
    # The title can still be corrected on that page (its inline formset is posted back).
    form = {
        "title": "Renamed",
        "messages-TOTAL_FORMS": str(INLINE_MESSAGES),
        "messages-INITIAL_FORMS": str(INLINE_MESSAGES),
        "messages-MIN_NUM_FORMS": "0",
        "messages-MAX_NUM_FORMS": "1000",
    }
    ids = list(conversation.messages.order_by("id").values_list("id", flat=True))[-INLINE_MESSAGES:]
    for i, pk in enumerate(ids):
        form[f"messages-{i}-id"] = str(pk)
        form[f"messages-{i}-conversation"] = str(conversation.pk)
    saved = admin_client.post(f"{ADMIN}{conversation.pk}/change/", form)
    assert saved.status_code == 302, saved.text[:2000]
    conversation.refresh_from_db()
    assert conversation.title == "Renamed"
    assert conversation.messages.count() == INLINE_MESSAGES + 5


def test_a_short_conversations_page_shows_every_message(admin_client: Client) -> None:
    conversation = chat("user:1", "Short", ["first words", "second words"])
    page = admin_client.get(f"{ADMIN}{conversation.pk}/change/").text
    assert "first words" in page and "second words" in page
    empty = chat("user:1", "Empty", [])
    assert admin_client.get(f"{ADMIN}{empty.pk}/change/").status_code == 200


def test_the_delete_confirmation_counts_messages_rather_than_listing_them(
    admin_client: Client,
) -> None:
    long = chat("user:1", "Long", [f"message number {i}." for i in range(300)])
    empty = chat("user:1", "Empty", [])
    with CaptureQueriesContext(connection) as queries:
        page = admin_client.get(f"{ADMIN}{long.pk}/delete/").text
    assert "message number" not in page
    assert '/change/">Long</a>' in page
    assert f'/admin/streaming/message/?conversation__id__exact={long.pk}">300 messages</a>' in page
    assert "<li>Messages: 300</li>" in page
    assert len(queries) < 10  # the session, the user, the conversation: not a message each
    # The bulk action on both: each named, the messages counted, none listed.
    action = {"action": "delete_selected", "_selected_action": [str(long.pk), str(empty.pk)]}
    page = admin_client.post(ADMIN, action).text
    assert "message number" not in page and "Empty</a>" in page
    assert "<li>Conversations: 2</li>" in page and "<li>Messages: 300</li>" in page
    done = admin_client.post(ADMIN, {**action, "post": "yes"})
    assert done.status_code == 302
    assert not Conversation.objects.exists() and not Message.objects.exists()


def test_the_delete_confirmation_asks_for_the_messages_delete_permission(
    client: Client, django_user_model: type[Any]
) -> None:
    """As Django's own does: deleting a conversation deletes its messages."""
    from django.contrib.auth.models import Permission

    conversation = chat("user:1", "Kept", ["a message"])
    staff = django_user_model.objects.create_user("staff", password="x", is_staff=True)
    staff.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_conversation", "delete_conversation"])
    )
    client.force_login(staff)
    page = client.get(f"{ADMIN}{conversation.pk}/delete/").text
    assert "permission to delete the following types of objects" in page
    assert "<li>message</li>" in page
    client.post(f"{ADMIN}{conversation.pk}/delete/", {"post": "yes"})
    assert Conversation.objects.filter(pk=conversation.pk).exists()
