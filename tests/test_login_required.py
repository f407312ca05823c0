"""A project that requires a login everywhere (Django's ``LoginRequiredMiddleware``,
``tests.settings_login_required``), over a real daphne with database sessions: anonymous
users start no reply on any transport and are told, in JSON or an error frame, to log in
(never an HTML login page read as a stream); a logged-in user chats as anywhere else."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from .hostile import daphne_process, migrate, sqlite_database

LIMIT = 15.0
SETTINGS = "tests.settings_login_required"
PROMPT = json.dumps({"type": "prompt", "prompt": "Hi", "pipeline": "passthrough"})
LOGIN_REQUIRED = "This site requires a login: log in again"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    env = migrate(sqlite_database(tmp_path / "db.sqlite3"))
    env = {**env, "DJANGO_SETTINGS_MODULE": SETTINGS}
    with daphne_process(settings=SETTINGS, env=env) as (url, _):
        yield url


def cookie_header(client: httpx.Client) -> str:
    return "; ".join(f"{name}={value}" for name, value in client.cookies.items())


def ws_url(server: str, path: str) -> str:
    return server.replace("http://", "ws://") + path


def socket_to(server: str, path: str = "/ws/chat/", client: httpx.Client | None = None) -> Any:
    """A WebSocket connection to ``path`` from the site's own page, with ``client``'s
    cookies (none: anonymous); to use with ``async with``."""
    headers = {"Cookie": cookie_header(client)} if client is not None else {}
    return connect(ws_url(server, path), origin=server, additional_headers=headers)  # type: ignore[arg-type]


async def frames_until_end(socket: ClientConnection) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    while not frames or frames[-1]["type"] not in {"complete", "error", "cancelled"}:
        frames.append(json.loads(await asyncio.wait_for(socket.recv(), LIMIT)))
    return frames


async def refusal_and_close(socket: ClientConnection) -> tuple[dict[str, Any], int | None]:
    """The error frame the server sends, and the code it then closes the socket with."""
    refused = json.loads(await asyncio.wait_for(socket.recv(), LIMIT))
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(socket.recv(), LIMIT)
    received = closed.value.rcvd
    return refused, received.code if received is not None else None


@contextmanager
def logged_in(server: str) -> Iterator[httpx.Client]:
    """A client logged in as alice, with the chat page's CSRF cookie."""
    with httpx.Client(base_url=server, timeout=LIMIT) as client:
        assert client.get("/h/login", params={"name": "alice"}).status_code == 200
        assert client.get("/").status_code == 200
        yield client


@pytest.mark.parametrize("path", ["/ws/chat/", "/ws/chat/ui/"])
async def test_an_anonymous_socket_is_told_to_log_in_and_closed(server: str, path: str) -> None:
    async with socket_to(server, path) as socket:
        refused, code = await refusal_and_close(socket)
    assert refused["type"] == "error"
    assert refused.get("message", refused.get("errorText")) == LOGIN_REQUIRED
    if path == "/ws/chat/":
        assert refused["code"] == "UNAUTHENTICATED"
    assert code == 4001


async def test_an_anonymous_prompt_on_the_socket_starts_no_reply(server: str) -> None:
    """The prompt a client sends as the socket opens meets a closed socket: no conversation
    is stored (the one who logs in afterwards finds none)."""
    async with socket_to(server) as socket:
        with suppress(ConnectionClosed):  # the server may have closed it already
            await socket.send(PROMPT)
        refused, _ = await refusal_and_close(socket)
    assert refused["code"] == "UNAUTHENTICATED"
    with logged_in(server) as alice:
        assert alice.get("/chat/conversations").json()["conversations"] == []


async def test_a_logged_in_user_chats_over_the_socket(server: str) -> None:
    with logged_in(server) as alice:
        async with socket_to(server, client=alice) as socket:
            await socket.send(PROMPT)
            frames = await frames_until_end(socket)
    assert frames[-1]["type"] == "complete" and frames[-1]["fullResponse"]


async def test_a_socket_whose_user_logged_out_is_told_to_log_in_again(server: str) -> None:
    with logged_in(server) as alice:
        async with socket_to(server, client=alice) as socket:
            assert alice.post("/h/logout").status_code == 200
            await socket.send(PROMPT)
            refused, code = await refusal_and_close(socket)
    assert refused["code"] == "UNAUTHENTICATED" and refused["message"] == LOGIN_REQUIRED
    assert code == 4003


ANONYMOUS_REQUESTS = [
    ("POST", "/chat/stream", {"prompt": "Hi"}),
    ("GET", "/chat/stream?prompt=Hi", None),
    ("DELETE", "/chat/stream?id=x", None),
    ("POST", "/chat/ui", {"id": "c1", "messages": []}),
    ("GET", "/chat/ui/c1/stream", None),
    ("GET", "/chat/conversations", None),
    ("POST", "/chat/conversations", {}),
    ("GET", "/chat/conversations/00000000-0000-0000-0000-000000000000", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ANONYMOUS_REQUESTS)
def test_an_anonymous_request_to_the_api_is_a_json_401(
    server: str, method: str, path: str, body: dict[str, Any] | None
) -> None:
    """Not the middleware's redirect, which ``fetch`` follows to the login page and the
    client then reads as the reply: a refusal the page can tell the user about."""
    with httpx.Client(base_url=server, timeout=LIMIT) as anonymous:
        response = anonymous.request(method, path, json=body)
    assert response.status_code == 401
    assert response.json() == {"error": LOGIN_REQUIRED, "code": "UNAUTHENTICATED"}


def test_an_anonymous_visitor_of_the_chat_page_is_sent_to_log_in(server: str) -> None:
    with httpx.Client(base_url=server, timeout=LIMIT) as anonymous:
        response = anonymous.get("/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/h/login-page?next=/"


def test_a_logged_in_user_chats_over_sse(server: str) -> None:
    with logged_in(server) as alice:
        token = alice.cookies["csrftoken"]
        headers = {"X-CSRFToken": token, "Origin": server}
        reply = alice.post("/chat/stream", json={"prompt": "Hi"}, headers=headers)
        conversations = alice.get("/chat/conversations").json()["conversations"]
    assert reply.status_code == 200
    assert reply.headers["Content-Type"].startswith("text/event-stream")
    assert '"done":true' in reply.text
    assert len(conversations) == 1


async def test_a_stream_the_project_opened_to_anyone_serves_anonymous_users(server: str) -> None:
    """``login_not_required = True`` on an ``SSEView`` or a ``StreamConsumer``."""
    with httpx.Client(base_url=server, timeout=LIMIT) as anonymous:
        reply = anonymous.get("/h/open", params={"prompt": "Hi"})
    assert reply.status_code == 200 and '"done":true' in reply.text
    async with socket_to(server, "/ws/h/open/") as socket:
        await socket.send(json.dumps({"type": "prompt", "prompt": "Hi"}))
        frames = await frames_until_end(socket)
    assert frames[-1]["type"] == "complete"
