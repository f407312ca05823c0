"""A browser's visits to the chat on a daphne whose database is behind Django's pool
(``tests.settings_postgres_pool``), over real sockets: for tests/test_pool.py and
tests/test_pool_restart.py."""

from __future__ import annotations

import json

import httpx
from websockets.asyncio.client import connect

SETTINGS = "tests.settings_postgres_pool"
API = "/chat/conversations"
#: Seconds any one request, socket opening or frame may take.
LIMIT = 60.0


class Visitor:
    """One browser: its session (in the database), its chats and its conversations."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = httpx.AsyncClient(base_url=url, timeout=LIMIT)

    async def arrive(self) -> None:
        assert (await self.client.get("/visitor")).status_code == 204

    async def sse_chat(self, prompt: str) -> str:
        """A reply over SSE, read to its end: its last data line."""
        headers = {"X-CSRFToken": self.client.cookies["csrftoken"]}
        response = await self.client.post("/chat/stream", json={"prompt": prompt}, headers=headers)
        assert response.status_code == 200, response.text
        return [line for line in response.text.splitlines() if line.startswith("data: ")][-1]

    async def socket_chat(self, prompt: str) -> str:
        """A reply over the chat's WebSocket, read to its last frame: that frame's type."""
        cookies = "; ".join(f"{k}={v}" for k, v in self.client.cookies.items())
        async with connect(
            self.url.replace("http", "ws") + "/ws/chat/",
            origin=self.url,
            additional_headers={"Cookie": cookies},
            open_timeout=LIMIT,
        ) as socket:
            await socket.send(json.dumps({"type": "prompt", "prompt": prompt}))
            while True:
                frame = json.loads(await socket.recv())
                if frame["type"] in {"complete", "error", "cancelled"}:
                    return str(frame["type"])

    async def stored_messages(self) -> list[tuple[str, str]]:
        """``(role, status)`` of every message of this visitor's conversations."""
        listed = await self.client.get(API)
        assert listed.status_code == 200, listed.text
        messages = []
        for conversation in listed.json()["conversations"]:
            opened = await self.client.get(f"{API}/{conversation['id']}")
            assert opened.status_code == 200, opened.text
            messages += [(m["role"], m["status"]) for m in opened.json()["messages"]]
        return messages
