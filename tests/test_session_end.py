"""A WebSocket acts for the session it was opened with only while that session lasts:
Channels resolves the session and the user once, at the handshake, so a socket opened
before a logout (or an expiry, a password change) would otherwise go on starting and
reading its former user's replies. Database sessions and logins, over a real daphne."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from .hostile import daphne_process, migrate, sqlite_database

LIMIT = 15.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    env = migrate(sqlite_database(tmp_path / "db.sqlite3"))
    with daphne_process(env=env) as (url, _):
        yield url


async def frames_until_end(socket: ClientConnection) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    while not frames or frames[-1]["type"] not in {"complete", "error", "cancelled"}:
        frames.append(json.loads(await asyncio.wait_for(socket.recv(), LIMIT)))
    return frames


def cookie_header(client: httpx.Client) -> str:
    return "; ".join(f"{name}={value}" for name, value in client.cookies.items())


PROMPT = json.dumps({"type": "prompt", "prompt": "Hi", "pipeline": "passthrough"})


@pytest.mark.parametrize("path", ["/ws/chat/", "/ws/chat/ui/"])
async def test_a_socket_whose_session_ended_starts_and_reads_nothing(
    server: str, path: str
) -> None:
    with httpx.Client(base_url=server, timeout=LIMIT) as alice:
        assert alice.get("/h/login", params={"name": "alice"}).status_code == 200
        url = server.replace("http://", "ws://") + path
        headers = {"Cookie": cookie_header(alice)}
        async with connect(url, origin=server, additional_headers=headers) as socket:  # type: ignore[arg-type]
            if path == "/ws/chat/":
                await socket.send(PROMPT)
                frames = await frames_until_end(socket)
                assert frames[-1]["type"] == "complete"  # acts for alice while she is in

            assert alice.post("/h/logout").status_code == 200
            if path == "/ws/chat/":
                await socket.send(PROMPT)
            else:
                await socket.send(json.dumps({"type": "resume", "requestId": "r1", "id": "c"}))
            refused = json.loads(await asyncio.wait_for(socket.recv(), LIMIT))
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(socket.recv(), LIMIT)
    assert refused["type"] == "error"
    if path == "/ws/chat/":
        assert refused["code"] == "FORBIDDEN"
    message = refused.get("message", refused.get("errorText"))
    assert message == "The session of this connection has ended (signed out or expired); reconnect"
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4003


async def test_a_user_another_middleware_resolved_is_not_taken_from_the_session() -> None:
    """A user set by middleware of the project's own (a token in the query string), next
    to a session that names no user: the socket acts for that user, prompt after prompt."""
    from types import SimpleNamespace

    from channels.testing import WebsocketCommunicator
    from django.contrib.sessions.backends.signed_cookies import SessionStore

    from streaming.testing import ws_reply

    from .transport_views import ScriptedConsumer

    communicator = WebsocketCommunicator(ScriptedConsumer.as_asgi(), "/ws/scripted/")
    communicator.scope["session"] = SessionStore()
    communicator.scope["user"] = SimpleNamespace(is_authenticated=True, pk=7)
    assert (await communicator.connect())[0]
    for _ in range(2):
        frames = await ws_reply(communicator, "Hi", pipeline="passthrough")
        assert frames[-1]["type"] == "complete"
    await communicator.disconnect()
