"""The chat page served under a path prefix (daphne's ``--root-path``, as behind a proxy
that passes ``/app/…`` on): the page's WebSocket address carries the prefix, as its HTTP
addresses do, and a reply streams over it."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator

import httpx
import pytest

from .servers import free_port, run_server, sqlite_database
from .test_new_project import socket_reply

PREFIX = "/app"


@pytest.fixture(scope="module")
def prefixed_server() -> Iterator[str]:
    """The test project under daphne with the root path ``/app``; its URL (without it)."""
    port = free_port()
    command = [
        sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
        "--root-path", PREFIX, "tests.asgi:application",
    ]  # fmt: skip
    with sqlite_database() as database, run_server(command, port, database) as url:
        yield url


async def test_the_page_names_its_websocket_under_the_prefix(prefixed_server: str) -> None:
    async with httpx.AsyncClient(base_url=prefixed_server, timeout=30) as client:
        page = (await client.get(f"{PREFIX}/")).text
        urls = dict(re.findall(r'data-(sse|ws)-url="([^"]*)"', page))
        assert urls == {"sse": f"{PREFIX}/chat/stream", "ws": f"{PREFIX}/ws/chat/"}
        frames = await socket_reply(
            prefixed_server, urls["ws"], client.cookies, "Hello under a prefix"
        )
    assert frames[-1]["type"] == "complete", frames[-1]
    assert "Hello under a prefix" in frames[-1]["fullResponse"]
