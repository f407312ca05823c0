"""The demo project uses the app as a user would: its page is the app's, overridden by
``templates/streaming/chat.html`` with files of its own from ``static/``; the admin shows
the stored conversations."""

from __future__ import annotations

import httpx
import pytest
from django.contrib.staticfiles import finders
from django.test import Client

from project import urls as project_urls
from streaming.models import Conversation, Message


def test_the_page_is_the_apps_template_overridden_by_the_project(http: httpx.Client) -> None:
    page = http.get("/").text
    assert "<title>Chat · streaming demo</title>" in page
    assert 'href="/static/demo/site.css"' in page
    assert 'class="back-to-site" href="/admin/"' in page
    assert 'src="/static/streaming/chat.js"' in page  # the rest is the app's page
    assert "csrftoken" in http.cookies


def test_the_static_files_are_found_by_the_finders() -> None:
    for path in (
        "demo/site.css",
        "streaming/chat.js",
        "streaming/chat.css",
        "streaming/streaming.js",
    ):
        assert finders.find(path), path


def test_the_project_has_no_view_of_its_own_for_the_page() -> None:
    names = {getattr(p, "name", None) for p in project_urls.urlpatterns}
    assert names == {None, "clock"}  # admin/, the include, and the sse_response example


@pytest.mark.django_db
def test_the_admin_lists_conversations_with_their_messages(admin_client: Client) -> None:
    conversation = Conversation.objects.create(owner="session:abc", title="About SSE")
    Message.objects.create(conversation=conversation, role="user", content="What is SSE?")
    Message.objects.create(
        conversation=conversation,
        role="assistant",
        content="Server-Sent Events.",
        status="stopped",
        generation="g1",
        reasoning="Keep it short.",
    )
    listing = admin_client.get("/admin/streaming/conversation/", {"q": "Server-Sent"})
    assert listing.status_code == 200
    assert "About SSE" in listing.text
    detail = admin_client.get(f"/admin/streaming/conversation/{conversation.pk}/change/")
    assert detail.status_code == 200
    for text in ("What is SSE?", "Server-Sent Events.", "Keep it short.", "session:abc"):
        assert text in detail.text
    assert admin_client.get("/admin/streaming/conversation/add/").status_code == 403
    messages = admin_client.get("/admin/streaming/message/", {"q": "g1"})
    assert "Server-Sent Events." in messages.text


def test_the_page_answers_only_get_and_head(http: httpx.Client) -> None:
    """Other methods are refused (after Django's CSRF check, which they pass here)."""
    assert http.head("/").status_code == 200
    http.get("/")
    token = {"X-CSRFToken": http.cookies["csrftoken"]}
    for method in ("POST", "PUT", "PATCH", "DELETE", "FOO"):
        refused = http.request(method, "/", headers=token)
        assert refused.status_code == 405, method
        assert refused.headers["Allow"] == "GET, HEAD"


def test_the_clock_streams_to_get_only(http: httpx.Client) -> None:
    """A HEAD got the ticks as a body, which a keep-alive client read as its next response."""
    for method in ("HEAD", "OPTIONS"):
        response = http.request(method, "/demo/clock")
        assert response.status_code == 405 and response.headers["Allow"] == "GET"
    assert http.get("/").status_code == 200  # the same connection reads right
