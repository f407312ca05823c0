"""A WebSocket its client closes mid-reply (the chat page closes one whenever it leaves a
chat): over a real daphne, many at once with the closing handshake, as a browser closes.
The server stops sending quietly: no traceback and no "failed on a prompt" in its log
(daphne refuses a send between the client's close and the consumer's ``disconnect``)."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

from .servers import daphne_server, sqlite_database
from .test_chat_ui import send_frame

SOCKETS = 40
LIMIT = 20


async def close_mid_reply(url: str, path: str, cookie: str, prompt: str) -> None:
    """Open a socket, send ``prompt``, read a few frames of the reply, then close it
    with the closing handshake."""
    async with connect(
        url.replace("http://", "ws://") + path,
        origin=url,  # type: ignore[arg-type]
        additional_headers={"Cookie": cookie},
    ) as socket:
        await socket.send(prompt)
        for _ in range(5):
            await asyncio.wait_for(socket.recv(), LIMIT)


async def test_sockets_closed_mid_reply_leave_no_error_in_the_log(tmp_path: Path) -> None:
    log = tmp_path / "daphne.log"
    with sqlite_database() as env, daphne_server("tests.asgi:application", env=env, log=log) as url:
        with httpx.Client(base_url=url) as page:
            page.get("/")
            cookie = "; ".join(f"{name}={value}" for name, value in page.cookies.items())
        chat = json.dumps({"type": "prompt", "prompt": "Hello"})
        await asyncio.gather(
            *(close_mid_reply(url, "/ws/chat/", cookie, chat) for _ in range(SOCKETS)),
            *(
                close_mid_reply(url, "/ws/chat/ui/", cookie, send_frame("r", str(uuid.uuid4())))
                for _ in range(SOCKETS)
            ),
        )
        await asyncio.sleep(1)  # the replies run on (``keep``): the log stays clean
    text = log.read_text()
    assert "Traceback" not in text
    assert "failed on a prompt" not in text
