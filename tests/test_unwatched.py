"""The ``cancel`` policy's unwatched timeout: a generation nobody follows (its client went
away before its follower started) is cancelled after ``CANCEL_GRACE`` seconds, not run to
its end and paid for."""

from __future__ import annotations

import asyncio
import socket
from urllib.parse import urlencode, urlsplit

from django.test import override_settings

from streaming.events import Cancelled
from streaming.extractors import Pipeline
from streaming.generations import Generations
from streaming.store import MemoryStore

from .conftest import Serve
from .generation_helpers import paced
from .sources.upstream import WAIT_LIMIT
from .test_full_path import endless_reply


async def test_a_reply_nobody_follows_is_cancelled_after_the_grace() -> None:
    finished: list[str] = []

    generations = Generations(MemoryStore())
    with override_settings(STREAMING={"CANCEL_GRACE": 0.3}):
        generation_id = await generations.start(
            paced(10_000, 0.01, finished), Pipeline(), owner="me"
        )
        task = generations.running[generation_id].task
        await asyncio.wait({task}, timeout=WAIT_LIMIT)
    assert task.done()
    events = [e async for batch in generations.follow(generation_id, "me") for e in batch]
    assert isinstance(events[-1], Cancelled)
    assert finished == ["finally"]


async def test_a_client_gone_before_its_follower_started_stops_the_model(
    live_url: str, serve: Serve
) -> None:
    upstream = await serve(endless_reply)
    query = urlencode({"prompt": "Hi", "base_url": f"{upstream.url}/v1"})
    address = urlsplit(live_url)
    with socket.create_connection((address.hostname, address.port), timeout=WAIT_LIMIT) as client:
        request = f"GET /sse/openai-late?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        client.sendall(request.encode())
        while not upstream.requests:  # the reply has started
            await asyncio.sleep(0.01)
    # The view answers a second later, to nobody: no follower ever reads the reply.
    await asyncio.wait_for(upstream.client_gone.wait(), WAIT_LIMIT)
