"""``manage.py clearconversations``: anonymous visitors' conversations nobody can open any
more are deleted with their messages; a live session, a user's and a recent conversation
keep theirs. In process on SQLite for the rules, then over real sockets on SQLite and on
PostgreSQL: visitors chat through daphne, one session ends, the command runs as cron would
run it."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from streaming import abandoned
from streaming.models import Conversation, Message
from streaming.owners import OWNER_SESSION_KEY

from .conftest import migrated_postgres_database
from .postgres_server import PostgresServer
from .servers import ROOT, daphne_server, sqlite_database

DB_SESSIONS = "django.contrib.sessions.backends.db"


def conversation(owner: str, idle_days: float, messages: int = 2) -> Conversation:
    """A conversation of ``owner`` last updated ``idle_days`` ago, with its messages."""
    made = Conversation.objects.create(owner=owner, title=owner)
    for n in range(messages):
        made.messages.create(role="user" if n % 2 == 0 else "assistant", content=f"turn {n}")
    Conversation.objects.filter(pk=made.pk).update(
        updated=timezone.now() - timedelta(days=idle_days)
    )
    return made


def session_holding(token: str, live: bool = True) -> None:
    """A database session whose visitor holds ``token``; expired unless ``live``."""
    session = SessionStore()
    session[OWNER_SESSION_KEY] = token
    session.create()
    if not live:
        Session.objects.filter(session_key=session.session_key).update(
            expire_date=timezone.now() - timedelta(seconds=1)
        )


def clear(*args: str) -> str:
    out = io.StringIO()
    call_command("clearconversations", *args, stdout=out)
    return out.getvalue()


def remaining() -> set[str]:
    return set(Conversation.objects.values_list("owner", flat=True))


@pytest.mark.django_db
@override_settings(SESSION_ENGINE=DB_SESSIONS)
def test_idle_conversations_of_ended_sessions_go_with_their_messages() -> None:
    session_holding("ended", live=False)
    session_holding("live")
    gone = [
        conversation("session:ended", 20),
        conversation("session:never-had-a-row", 20),
        conversation("connection:abc", 20, messages=1),
    ]
    conversation("session:live", 20)
    conversation("session:ended", 3)  # idle, but not for long enough
    conversation("user:7", 400)
    conversation("session:live", 1)

    output = clear()

    assert remaining() == {"session:live", "session:ended", "user:7"}
    assert Conversation.objects.filter(owner="session:ended").count() == 1
    assert not Message.objects.filter(conversation__in=gone).exists()
    assert Message.objects.count() == 8
    assert output == (
        "Deleted 3 conversations (5 messages) of anonymous visitors idle for over 14 days.\n"
        "Kept 1 idle conversation of visitors with a live session.\n"
    )


@pytest.mark.django_db
@override_settings(SESSION_ENGINE=DB_SESSIONS)
def test_a_dry_run_counts_and_deletes_nothing() -> None:
    conversation("session:gone", 20)
    conversation("session:gone", 30, messages=3)
    assert clear("--dry-run") == (
        "Would delete 2 conversations (5 messages) of anonymous visitors idle for over 14 days.\n"
    )
    assert Conversation.objects.count() == 2
    assert Message.objects.count() == 5


@pytest.mark.django_db
@override_settings(SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies")
def test_sessions_that_cannot_be_listed_leave_the_idle_time_to_decide() -> None:
    session_holding("in-a-cookie-elsewhere")  # a row the cookie engine never reads
    conversation("session:in-a-cookie-elsewhere", 20)
    conversation("session:recent", 2)
    output = clear()
    assert remaining() == {"session:recent"}
    assert output.endswith(
        "Sessions (django.contrib.sessions.backends.signed_cookies) cannot be listed: "
        "the idle time alone decided.\n"
    )


@pytest.mark.django_db
@override_settings(SESSION_ENGINE="django.contrib.sessions.backends.cached_db")
def test_cached_database_sessions_are_listed_too() -> None:
    session_holding("live")
    conversation("session:live", 20)
    conversation("session:ended", 20)
    assert "Kept 1 idle conversation of" in clear()
    assert remaining() == {"session:live"}


@pytest.mark.django_db
@override_settings(SESSION_ENGINE=DB_SESSIONS, SESSION_COOKIE_AGE=3600)
def test_the_idle_time_is_the_session_age_unless_days_are_given() -> None:
    conversation("session:two-hours", 2 / 24)
    conversation("session:half-an-hour", 0.5 / 24)
    conversation("session:ten-minutes", 10 / 1440)
    assert "idle for over 0.0416667 days" in clear()
    assert remaining() == {"session:half-an-hour", "session:ten-minutes"}
    clear("--days", str(0.25 / 24))
    assert remaining() == {"session:ten-minutes"}


@pytest.mark.django_db
@override_settings(SESSION_ENGINE=DB_SESSIONS)
def test_a_corrupted_session_holds_no_token() -> None:
    session_holding("tampered")
    Session.objects.update(session_data="not-signed-data")
    conversation("session:tampered", 20)
    clear()
    assert remaining() == set()


@pytest.mark.django_db
@override_settings(SESSION_ENGINE=DB_SESSIONS)
def test_more_owners_than_a_batch_are_all_deleted() -> None:
    count = abandoned.BATCH * 2 + 7
    Conversation.objects.bulk_create(
        Conversation(owner=f"session:{n}", updated=timezone.now() - timedelta(days=20))
        for n in range(count)
    )
    assert clear().startswith(f"Deleted {count} conversations (0 messages)")
    assert not Conversation.objects.exists()


@pytest.mark.django_db
@override_settings(SESSION_ENGINE=DB_SESSIONS)
def test_more_live_visitors_than_a_batch_are_all_counted_as_kept() -> None:
    count = abandoned.BATCH * 2 + 7
    for n in range(count):
        session_holding(str(n))
    Conversation.objects.bulk_create(
        Conversation(owner=f"session:{n}", updated=timezone.now() - timedelta(days=20))
        for n in range(count)
    )
    assert clear().endswith(f"Kept {count} idle conversations of visitors with a live session.\n")
    assert Conversation.objects.count() == count


@pytest.mark.parametrize("days", ["0", "-1", "nan", "inf", "1e12"])
def test_days_must_be_a_positive_number_within_the_calendar(days: str) -> None:
    with pytest.raises(CommandError, match="--days"):
        clear("--days", days)


@pytest.fixture(params=["sqlite", "postgres"])
def database_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """The env of a migrated database with sessions in it, on each database."""
    if request.param == "sqlite":
        with sqlite_database() as env:
            yield {"DJANGO_SETTINGS_MODULE": "tests.settings_db_sessions", **env}
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    yield migrated_postgres_database(server, "tests.settings_postgres_sessions")


def manage(env: dict[str, str], *args: str) -> str:
    """Run ``manage.py``-style as cron would: a process of its own on the same database."""
    done = subprocess.run(
        [sys.executable, "-m", "django", *args],
        cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=120,
        stdin=subprocess.DEVNULL, check=True,
    )  # fmt: skip
    return done.stdout


def chat(client: httpx.Client) -> str:
    """A visitor's first turn through the chat endpoint: its conversation's id."""
    assert client.get("/").status_code == 200
    with client.stream(
        "POST",
        "/chat/stream",
        json={"prompt": "hello"},
        headers={"X-CSRFToken": client.cookies["csrftoken"]},
    ) as response:
        assert response.status_code == 200
        assert response.read().endswith(b'data: {"done":true}\n\n')
        return response.headers["X-Conversation-Id"]


def test_a_visitor_whose_session_ended_loses_their_chats_and_a_live_one_keeps_them(
    database_env: dict[str, str],
) -> None:
    with (
        daphne_server("tests.asgi:application", env=database_env) as url,
        httpx.Client(base_url=url, timeout=20) as kept,
        httpx.Client(base_url=url, timeout=20) as ended,
    ):
        kept_chat, ended_chat = chat(kept), chat(ended)
        manage(
            database_env, "shell", "--no-imports", "-c",
            "from datetime import timedelta; from django.utils import timezone; "
            "from django.contrib.sessions.models import Session; "
            "from streaming.models import Conversation; "
            "Conversation.objects.update(updated=timezone.now() - timedelta(days=15)); "
            f"Session.objects.filter(session_key={ended.cookies['sessionid']!r})"
            ".update(expire_date=timezone.now() - timedelta(seconds=1))",
        )  # fmt: skip

        output = manage(database_env, "clearconversations")

        assert output == (
            "Deleted 1 conversation (2 messages) of anonymous visitors idle for over "
            "14 days.\nKept 1 idle conversation of visitors with a live session.\n"
        )
        detail = kept.get(f"/chat/conversations/{kept_chat}")
        assert detail.status_code == 200
        assert [m["role"] for m in detail.json()["messages"]] == ["user", "assistant"]
        assert manage(
            database_env, "shell", "--no-imports", "-c",
            "from streaming.models import Conversation, Message; "
            f"print(Conversation.objects.filter(pk={ended_chat!r}).exists(), "
            f"Message.objects.filter(conversation_id={ended_chat!r}).count())",
        ) == "False 0\n"  # fmt: skip


@pytest.mark.django_db
@override_settings(SESSION_ENGINE=DB_SESSIONS)
def test_conversations_go_a_few_at_a_time_and_owners_are_read_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An owner's thousands of conversations are deleted in transactions of
    ``DELETE_BATCH`` (with their messages), not in one; the owners are read one row each."""
    monkeypatch.setattr(abandoned, "DELETE_BATCH", 2)
    for _ in range(5):
        conversation("session:many", idle_days=20, messages=3)
    conversation("session:one", idle_days=20)
    with CaptureQueriesContext(connection) as queries:
        assert clear().startswith("Deleted 6 conversations (17 messages)")
    assert not Conversation.objects.exists() and not Message.objects.exists()
    sql = [q["sql"] for q in queries.captured_queries]
    deletes = [s for s in sql if s.startswith('DELETE FROM "streaming_conversation"')]
    assert len(deletes) == 3, deletes
    owners = next(s for s in sql if "DISTINCT" in s)
    assert '"updated"' not in owners.split(" FROM ")[0], owners
