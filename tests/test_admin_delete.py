"""Deleting conversations in Django's admin stops their running replies, as the
conversations API's DELETE does: over real sockets, a staff user deleting one
conversation (its delete page) and several (the changelist's bulk action) while their
replies stream to a visitor."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import httpx
import pytest

from .servers import ROOT, daphne_server, sqlite_database

ADMIN = "/admin/streaming/conversation/"


@pytest.fixture(scope="module")
def admin_server() -> Iterator[str]:
    with sqlite_database() as database:
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", **database}
        subprocess.run(
            [sys.executable, "-m", "django", "shell", "-c",
             "from django.contrib.auth.models import User; "
             "User.objects.create_superuser('admin', 'a@example.com', 'secret-pass'); "
             "User.objects.create_user('bob', password='bob-pass', is_staff=True)"],
            cwd=ROOT, env=env, check=True, timeout=120, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        with daphne_server("tests.asgi:application", env=database) as url:
            yield url


@contextmanager
def logged_in_admin(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=20) as client:
        yield log_in(client)


def log_in(
    client: httpx.Client, username: str = "admin", password: str = "secret-pass"
) -> httpx.Client:
    client.get("/admin/login/")
    response = client.post(
        "/admin/login/?next=/admin/",
        data={
            "username": username,
            "password": password,
            "csrfmiddlewaretoken": client.cookies["csrftoken"],
        },
    )
    assert response.status_code == 302, response.text[:300]
    return client


def form_token(client: httpx.Client, path: str) -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text[:300]
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert match
    return match.group(1)


def start_slow_reply(visitor: httpx.Client, running: ExitStack) -> tuple[str, Iterator[str]]:
    """A reply that streams for seconds: its conversation id and its remaining lines."""
    headers = {"X-CSRFToken": visitor.cookies["csrftoken"]}
    response = running.enter_context(
        visitor.stream("POST", "/chat/stream", json={"prompt": "slow: two"}, headers=headers)
    )
    assert response.status_code == 200
    lines = response.iter_lines()
    next(line for line in lines if line.startswith("data: "))
    return response.headers["X-Conversation-Id"], lines


def confirm_delete(staff: httpx.Client, page: str) -> None:
    """Answer an admin delete page's "Are you sure?" with yes."""
    deleted = staff.post(page, data={"post": "yes", "csrfmiddlewaretoken": form_token(staff, page)})
    assert deleted.status_code == 302, deleted.text[:300]


def assert_stopped(lines: Iterator[str]) -> None:
    """The reply's remaining lines end with its ``ABORTED`` error: it was stopped."""
    rest = list(lines)
    assert any('"code":"ABORTED"' in line for line in rest), rest[-3:]


def test_the_admin_delete_page_stops_the_reply(admin_server: str) -> None:
    with (
        logged_in_admin(admin_server) as staff,
        httpx.Client(base_url=admin_server, timeout=20) as visitor,
        ExitStack() as running,
    ):
        visitor.get("/")
        conversation_id, lines = start_slow_reply(visitor, running)
        page = f"{ADMIN}{conversation_id}/delete/"
        confirm_delete(staff, page)
        assert_stopped(lines)
        assert visitor.get(f"/chat/conversations/{conversation_id}").status_code == 404


def test_the_admin_bulk_delete_stops_every_reply(admin_server: str) -> None:
    with (
        logged_in_admin(admin_server) as staff,
        ExitStack() as running,
    ):
        replies = []
        for _ in range(2):  # two visitors, one reply each
            visitor = running.enter_context(httpx.Client(base_url=admin_server, timeout=20))
            visitor.get("/")
            replies.append(start_slow_reply(visitor, running))
        deleted = staff.post(
            ADMIN,
            data={
                "action": "delete_selected",
                "_selected_action": [conversation_id for conversation_id, _ in replies],
                "post": "yes",
                "csrfmiddlewaretoken": form_token(staff, ADMIN),
            },
        )
        assert deleted.status_code == 302, deleted.text[:300]
        for _, lines in replies:
            assert_stopped(lines)


def test_deleting_a_user_deletes_their_conversations_and_stops_their_replies(
    admin_server: str,
) -> None:
    """The owner is a string, not a foreign key: the user's deletion (here the admin's)
    deletes their conversations and stops their running replies, which nobody may
    follow any more."""
    with (
        logged_in_admin(admin_server) as staff,
        httpx.Client(base_url=admin_server, timeout=20) as bob,
        ExitStack() as running,
    ):
        log_in(bob, "bob", "bob-pass")
        conversation_id, lines = start_slow_reply(bob, running)
        found = re.search(
            r"/admin/auth/user/(\d+)/change/", staff.get("/admin/auth/user/?q=bob").text
        )
        assert found
        page = f"/admin/auth/user/{found.group(1)}/delete/"
        confirm_delete(staff, page)
        assert_stopped(lines)
        gone = staff.get(f"{ADMIN}{conversation_id}/change/")  # the admin's "no such object"
        assert gone.status_code == 302, gone.status_code
