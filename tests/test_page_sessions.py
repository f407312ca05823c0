"""The chat page stores no session: over Django's test client, with the sessions in the
database (the deploy's ``db`` backend), a client that only looks (a crawler, an uptime
check; ``GET`` or ``HEAD`` of the page, the conversation list) adds no row to
``django_session``. The visitor's first chat (``POST`` of a conversation, or a prompt)
makes their owner token, in one session, which every later request shares."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.test import AsyncClient, Client

from streaming.models import Conversation
from streaming.owners import OWNER_SESSION_KEY
from streaming.testing import read_sse

from .db_threads import own_db_thread

API = "/chat/conversations"
LOOKS = 5

pytestmark = pytest.mark.django_db


@pytest.fixture
def db_sessions(settings: Any) -> None:
    """Sessions in the database, through pytest-django's ``settings`` as the tests' other
    settings are: restored in order (an ``override_settings`` around a test that also
    sets ``settings`` had its engine restored after it, and kept for later tests)."""
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.db"


def owned(page: Any) -> str:
    found = re.search(r'data-owned="(\w+)"', page.content.decode())
    assert found, "the page says nothing of its owner"
    return found.group(1)


def owner_token(client: Client) -> str:
    return str(SessionStore(client.cookies["sessionid"].value)[OWNER_SESSION_KEY])


@pytest.mark.parametrize("save_every_request", [False, True])
@pytest.mark.usefixtures("db_sessions")
def test_page_views_and_listings_by_a_client_that_never_chats_store_no_session(
    save_every_request: bool, settings: Any
) -> None:
    """``SESSION_SAVE_EVERY_REQUEST`` too: Django saves no empty session."""
    settings.SESSION_SAVE_EVERY_REQUEST = save_every_request
    for _ in range(LOOKS):
        crawler = Client()  # no cookie, ever
        for response in (crawler.get("/"), crawler.head("/"), crawler.get(API)):
            assert response.status_code == 200
            assert "sessionid" not in response.cookies
        assert owned(crawler.get("/")) == "false"
        assert crawler.get(API).json() == {"conversations": [], "next": None}
    assert Session.objects.count() == 0


@pytest.mark.django_db(transaction=True)  # the chat stores from threads of its own
@pytest.mark.usefixtures("db_sessions")
def test_the_first_chat_makes_one_session_which_the_page_and_the_api_then_share() -> None:
    visitor = Client()
    visitor.get("/")
    visitor.get(API)
    assert Session.objects.count() == 0
    created = visitor.post(API, {}, content_type="application/json")
    assert created.status_code == 201
    assert Session.objects.count() == 1
    token = owner_token(visitor)
    assert Conversation.objects.get(pk=created.json()["id"]).owner == f"session:{token}"
    assert owned(visitor.get("/")) == "true"
    assert [c["id"] for c in visitor.get(API).json()["conversations"]] == [created.json()["id"]]
    visitor.post(API, {}, content_type="application/json")
    assert Session.objects.count() == 1  # the same session, the same owner
    assert owner_token(visitor) == token


@pytest.mark.usefixtures("db_sessions")
def test_a_logged_in_users_page_is_owned_and_adds_nothing_to_their_session(
    client: Client, django_user_model: Any
) -> None:
    client.force_login(django_user_model.objects.create_user("me"))
    before = Session.objects.get().session_data
    assert owned(client.get("/")) == "true"
    assert Session.objects.get().session_data == before
    assert OWNER_SESSION_KEY not in client.session


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("db_sessions")
@own_db_thread
async def test_a_first_prompt_makes_the_session_its_reply_is_owned_by() -> None:
    visitor = AsyncClient()
    await visitor.get("/")
    assert await Session.objects.acount() == 0
    response = await visitor.post(
        "/chat/stream", json.dumps({"prompt": "Hi"}), content_type="application/json"
    )
    events = await read_sse(response)
    assert json.loads(events[-1].data) == {"done": True}
    assert await Session.objects.acount() == 1
    session = SessionStore(visitor.cookies["sessionid"].value)
    token = await session.aget(OWNER_SESSION_KEY)
    conversation = await Conversation.objects.aget(pk=response["X-Conversation-Id"])
    assert conversation.owner == f"session:{token}"


@pytest.mark.usefixtures("db_sessions")
def test_with_csrf_use_sessions_django_stores_each_views_csrf_token(settings: Any) -> None:
    """What the README says: ``CSRF_USE_SESSIONS`` keeps the page's CSRF token in a session,
    so there each view stores one, as Django means it to (not the owner token)."""
    settings.CSRF_USE_SESSIONS = True
    for _ in range(2):
        Client().get("/")
    assert Session.objects.count() == 2
    assert all(OWNER_SESSION_KEY not in s.get_decoded() for s in Session.objects.all())


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("db_sessions")
@own_db_thread
async def test_resumes_and_stops_without_an_owner_token_store_no_session() -> None:
    """A client without an owner token (a bot replaying a URL) that resumes or stops a
    reply owns none: it is told so (404; the AI SDK's endpoints say there is none running,
    204, as they do for any chat not one's own) and, as the page's lookers, stores no
    session."""
    unknown = "0" * 32
    stranger = AsyncClient()
    answers = [
        await stranger.get("/chat/stream", headers={"Last-Event-ID": f"{unknown}:0"}),
        await stranger.delete(f"/chat/stream?id={unknown}&shown=3"),
        await stranger.get(f"/chat/ui/{unknown}/stream"),
        await stranger.delete(f"/chat/ui/{unknown}/stream"),
    ]
    assert [a.status_code for a in answers] == [404, 404, 204, 204]
    assert all("sessionid" not in a.cookies for a in answers)
    assert await Session.objects.acount() == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("db_sessions")
@own_db_thread
async def test_refused_first_prompts_and_conversations_store_no_session() -> None:
    """A refusal takes back the owner token its request made: a client refused over and
    over adds no session row (over daphne, with a limit's refusal too, in
    ``test_limits_live.py``)."""
    bot = AsyncClient()
    refusals = [
        await bot.post("/chat/stream", "{not json", content_type="application/json"),
        await bot.post("/chat/stream", json.dumps({"prompt": ""}), content_type="application/json"),
        await bot.post(API, "[]", content_type="application/json"),
    ]
    assert [r.status_code for r in refusals] == [400, 400, 400]
    assert all("sessionid" not in r.cookies for r in refusals)
    assert await Session.objects.acount() == 0
    created = await bot.post(API, "{}", content_type="application/json")
    assert created.status_code == 201
    assert await Session.objects.acount() == 1
