"""The ``cancel`` policy's unwatched timeout: a generation nobody follows (its client went
away before its follower started) is cancelled after ``CANCEL_GRACE`` seconds, not run to
its end and paid for."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from urllib.parse import urlencode, urlsplit

import httpx
from django.test import override_settings

from streaming.conf import DEFAULTS
from streaming.events import Cancelled
from streaming.extractors import Pipeline
from streaming.generations import WATCH_INTERVAL, Generations
from streaming.store import MemoryStore
from streaming.testing import parse_sse

from .conftest import Serve
from .generation_helpers import everything, paced
from .sources.upstream import WAIT_LIMIT
from .test_full_path import endless_reply
from .transport_views import XML_REPLY, XML_TEXT

CANCEL_GRACE = DEFAULTS["CANCEL_GRACE"]  # the test project keeps the default


async def start_long_reply(generations: Generations, finished: list[str]) -> str:
    """A reply that would run for 100 s; ``finished`` notes when its model is closed."""
    return await generations.start(paced(10_000, 0.01, finished), Pipeline(), owner="me")


async def test_a_reply_nobody_follows_is_cancelled_after_the_grace() -> None:
    finished: list[str] = []

    generations = Generations(MemoryStore())
    with override_settings(STREAMING={"CANCEL_GRACE": 0.3}):
        generation_id = await start_long_reply(generations, finished)
        task = generations.running[generation_id].task
        await asyncio.wait({task}, timeout=WAIT_LIMIT)
    assert task.done()
    events = [e async for batch in generations.follow(generation_id, "me") for e in batch]
    assert isinstance(events[-1], Cancelled)
    assert finished == ["finally"]


async def test_a_kept_reply_of_a_connection_owner_is_cancelled_when_unwatched() -> None:
    """No session, so the owner is the connection itself: once it is gone, nobody could
    ever resume, follow or stop a kept reply, so ``keep`` waits ``CANCEL_GRACE`` like
    ``cancel``, not ``KEEP_GRACE`` (a minute of model time nobody sees)."""
    generations = Generations(MemoryStore())
    with override_settings(STREAMING={"CANCEL_GRACE": 0.3, "KEEP_GRACE": 60.0}):
        kept = []
        for owner in ("connection:abc", "session:abc"):
            finished: list[str] = []
            generation_id = await generations.start(
                paced(10_000, 0.01, finished), Pipeline(), owner=owner, policy="keep"
            )
            kept.append(generations.running[generation_id].task)
        await asyncio.wait({kept[0]}, timeout=WAIT_LIMIT)
        assert kept[0].done() and not kept[1].done()
        await generations.cancel(generation_id)
        await asyncio.wait({kept[1]}, timeout=WAIT_LIMIT)


async def test_an_expected_follower_holds_the_reply_until_it_is_released() -> None:
    finished: list[str] = []
    generations = Generations(MemoryStore())
    with override_settings(STREAMING={"CANCEL_GRACE": 0.3}):
        generation_id = await start_long_reply(generations, finished)
        release = generations.expect_follower(generation_id)
        task = generations.running[generation_id].task
        await asyncio.sleep(0.3 + 2 * WATCH_INTERVAL)
        assert not task.done()
        await asyncio.to_thread(release)  # Django closes a response in a worker thread
        await asyncio.wait({task}, timeout=WAIT_LIMIT)
    assert task.done() and finished == ["finally"]
    assert generations.followers == {}


async def test_an_expected_follower_ends_with_the_request_that_dropped_it_unread() -> None:
    """A view (or middleware) cancelled after it made its response, its client gone: the
    response is never read nor closed, and may live on in a reference cycle until the
    collector runs. The end of the request's task stops counting it."""
    finished: list[str] = []
    generations = Generations(MemoryStore())
    dropped: list[object] = []  # the response, never closed

    async def request(generation_id: str) -> None:
        dropped.append(generations.expect_follower(generation_id))
        await asyncio.sleep(WAIT_LIMIT)  # a slow middleware, cancelled by the disconnect

    with override_settings(STREAMING={"CANCEL_GRACE": 0.3}):
        generation_id = await start_long_reply(generations, finished)
        handler = asyncio.create_task(request(generation_id))
        await asyncio.sleep(0.3 + 2 * WATCH_INTERVAL)
        task = generations.running[generation_id].task
        assert not task.done()  # held while the request runs
        handler.cancel()
        await asyncio.wait({task}, timeout=WAIT_LIMIT)
    assert task.done() and finished == ["finally"]
    assert generations.followers == {}


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


def test_a_response_read_late_by_a_busy_server_still_gets_the_whole_reply(
    live_url: str,
) -> None:
    """The server begins reading the response after ``CANCEL_GRACE``: its reply is not
    cancelled as unwatched meanwhile, since a response that will follow it exists."""
    name = uuid.uuid4().hex
    # The reply runs on for a second after the response is begun being read.
    delay = (float(CANCEL_GRACE) + 2 * WATCH_INTERVAL + 1.0) / len(XML_REPLY)
    params: dict[str, str | float] = {"key": name, "delay": delay, "size": 1}
    with httpx.Client(base_url=live_url, timeout=WAIT_LIMIT) as client:
        response = client.get("/sse/slow-to-read", params=params)
    received = [json.loads(event.data) for event in parse_sse(response.content)]
    assert "".join(m["chunk"] for m in received if "chunk" in m) == XML_TEXT
    assert received[-1] == {"done": True}


async def test_a_reply_cancelled_before_its_task_ran_still_ends_for_its_follower() -> None:
    # A loop busy for longer than CANCEL_GRACE lets the watcher cancel a generation whose
    # task has not taken its first step yet (its client's follower not there yet either):
    # here the cancel runs first in the loop's queue, as it did then.
    ends: list[str] = []

    async def on_end(end: str) -> None:
        ends.append(end)

    generations = Generations(MemoryStore())
    finished: list[str] = []
    loop = asyncio.get_running_loop()
    loop.call_soon(lambda: generations.running["early"].task.cancel())
    await generations.start(
        paced(10, 0.01, finished), Pipeline(), owner="me", generation_id="early", on_end=on_end
    )
    events = await asyncio.wait_for(everything(generations, "early"), WAIT_LIMIT)
    assert [type(event) for event in events] == [Cancelled]
    assert ends == ["cancelled"]
    assert not generations.running


async def test_the_watcher_looks_only_at_the_replies_nobody_here_follows() -> None:
    """Twice a second the watcher checks the unfollowed replies: it keeps them apart as
    followers come and go, so thousands of followed replies cost it nothing."""
    finished: list[str] = []
    generations = Generations(MemoryStore())
    followed = await start_long_reply(generations, finished)
    alone = await start_long_reply(generations, finished)
    assert generations.unfollowed == {followed, alone}
    following = aiter(generations.follow(followed, "me"))
    await anext(following)
    assert generations.unfollowed == {alone}
    release = generations.expect_follower(alone)
    assert generations.unfollowed == set()
    await asyncio.to_thread(release)
    await asyncio.sleep(0.01)
    assert generations.unfollowed == {alone}
    await following.aclose()
    assert generations.unfollowed == {followed, alone}
    await generations.cancel(alone)
    assert generations.unfollowed == {followed}
    await generations.cancel(followed)
    assert generations.unfollowed == set() and generations.running == {}
