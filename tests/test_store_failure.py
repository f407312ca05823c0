"""A store that fails mid-reply ends the generation at once, with the store's error, for
every follower: in process, over SSE and over a WebSocket (a real daphne whose event
store's writes fail, ``tests/failing_store.py``), and with a real Redis stopped mid-reply."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from django.test import override_settings
from websockets.asyncio.client import connect

from streaming import StreamError
from streaming.extractors import Pipeline
from streaming.generations import Generations
from streaming.sse import SSEParser
from streaming.store.base import STORE_UNAVAILABLE, store_error

from .conftest import Serve
from .failing_store import MESSAGE, FailingStore
from .generation_helpers import paced
from .redis_server import RedisServer, needs_redis
from .servers import daphne_server, sqlite_database
from .sources.upstream import WAIT_LIMIT
from .test_full_path import endless_reply


async def test_a_failed_write_stops_the_model_and_reaches_the_follower() -> None:
    finished: list[str] = []
    generations = Generations(FailingStore(fail_at=3))
    generation_id = await generations.start(paced(10_000, 0.01, finished), Pipeline(), owner="me")
    task = generations.running[generation_id].task
    with pytest.raises(StreamError) as caught:
        async with asyncio.timeout(WAIT_LIMIT):
            async for _ in generations.follow(generation_id, "me"):
                pass
    assert (caught.value.code, caught.value.message) == ("STORE_UNAVAILABLE", MESSAGE)
    # The model was stopped (its 10,000 tokens take 100 s), maybe a turn after the
    # follower heard: it may have been handed the events of the failed write already.
    await asyncio.wait({task}, timeout=WAIT_LIMIT)
    assert finished == ["finally"]
    await asyncio.sleep(0)  # the task's done callback
    assert not generations.running


async def test_a_store_that_cannot_say_leaves_a_reply_named_and_a_delete_stops_it_here(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The conversations API while the event store hangs or is down: a reply it cannot
    see is still named as running (a page would otherwise call it gone and ask the model
    again), and deleting its conversation stops it when it runs here, without the store."""
    from streaming.conversations import running_generation, stop_reply
    from streaming.generations import get_generations

    finished: list[str] = []
    generations = get_generations()
    generation_id = await generations.start(paced(10_000, 0.01, finished), Pipeline(), owner="me")
    task = generations.running[generation_id].task

    async def down(*args: Any, **kwargs: Any) -> Any:
        raise store_error(STORE_UNAVAILABLE, "the event store is down", stream_id=generation_id)

    monkeypatch.setattr(generations.store, "owner", down)
    monkeypatch.setattr(generations.store, "request_cancel", down)
    assert await running_generation("me", generation_id) == generation_id
    await stop_reply("me", generation_id)
    await asyncio.wait({task}, timeout=WAIT_LIMIT)
    assert task.done() and finished == ["finally"]


async def test_a_reply_stopped_by_a_failed_write_ends_as_an_error_for_on_end() -> None:
    """``on_end`` hears "error" (a chat stores the reply as failed), not "cancelled" (which
    it stores as stopped by its user)."""
    ends: list[str] = []

    async def on_end(end: str) -> None:
        ends.append(end)

    generations = Generations(FailingStore(fail_at=3))
    generation_id = await generations.start(
        paced(10_000, 0.01, []), Pipeline(), owner="me", on_end=on_end
    )
    with pytest.raises(StreamError):
        async with asyncio.timeout(WAIT_LIMIT):
            async for _ in generations.follow(generation_id, "me"):
                pass
    async with asyncio.timeout(WAIT_LIMIT):  # the follower heard of the failure first
        while not ends:
            await asyncio.sleep(0.01)
    assert ends == ["error"]


class FailingToEnd(FailingStore):
    """Its writes fail, and so does ending a log, ``failures`` times."""

    def __init__(self, failures: int) -> None:
        super().__init__(fail_at=3)
        self.failures = failures

    async def finish(self, stream_id: str) -> None:
        if self.failures:
            self.failures -= 1
            raise store_error(STORE_UNAVAILABLE, MESSAGE, stream_id=stream_id)
        await super().finish(stream_id)


async def test_a_log_the_store_failed_to_end_is_ended_once_it_answers() -> None:
    """With a lease per process (``process_leases``), a log left unfinished would stay
    open while the process lives, its followers elsewhere waiting: the renewer ends it."""
    store = FailingToEnd(failures=2)
    with override_settings(STREAMING={"LEASE_SECONDS": 0.3}):
        generations = Generations(store)
        generation_id = await generations.start(paced(10_000, 0.01, []), Pipeline(), owner="me")
        with pytest.raises(StreamError):
            async with asyncio.timeout(WAIT_LIMIT):
                async for _ in generations.follow(generation_id, "me"):
                    pass
        async with asyncio.timeout(WAIT_LIMIT):
            while generation_id not in generations.unended:
                await asyncio.sleep(0.01)
        assert not await store.is_finished(generation_id)
        async with asyncio.timeout(WAIT_LIMIT):  # one renewal fails, the next ends it
            while generations.unended:
                await asyncio.sleep(0.05)
        assert await store.is_finished(generation_id)
        assert store.failures == 0
        await asyncio.wait_for(generations.renewer, WAIT_LIMIT)  # nothing left to do


@pytest.fixture(scope="module")
def failing_url() -> Iterator[str]:
    env = {"DJANGO_SETTINGS_MODULE": "tests.settings_failing_store"}
    with daphne_server("tests.asgi:application", env=env) as url:
        yield url


async def sse_messages(base: str, path: str, params: dict[str, str]) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=base, timeout=WAIT_LIMIT) as client:
        response = await client.get(path, params=params)
    parser = SSEParser()
    return [json.loads(e.data) for e in parser.feed(response.content) + parser.close()]


async def ws_frames(url: str, origin: str, prompt: dict[str, Any]) -> list[dict[str, Any]]:
    async with connect(url, origin=origin) as socket:
        await socket.send(json.dumps(prompt))
        frames = [json.loads(await asyncio.wait_for(socket.recv(), WAIT_LIMIT))]
        while frames[-1]["type"] == "chunk":
            frames.append(json.loads(await asyncio.wait_for(socket.recv(), WAIT_LIMIT)))
    return frames


async def test_sse_followers_get_the_store_error_and_the_model_stops(
    failing_url: str, serve: Serve
) -> None:
    upstream = await serve(endless_reply)
    params = {"prompt": "Hi", "base_url": f"{upstream.url}/v1"}
    messages = await sse_messages(failing_url, "/sse/openai-keep", params)
    assert messages[-1] == {"error": MESSAGE, "code": "STORE_UNAVAILABLE"}
    await asyncio.wait_for(upstream.client_gone.wait(), WAIT_LIMIT)


async def test_ws_followers_get_the_store_error_and_the_model_stops(
    failing_url: str, serve: Serve
) -> None:
    upstream = await serve(endless_reply)
    url = failing_url.replace("http://", "ws://") + "/ws/openai-keep/"
    frames = await ws_frames(url, failing_url, {"prompt": "Hi", "base_url": f"{upstream.url}/v1"})
    # ``seq``: the last event the client has, to resume after.
    delivered = max((frame["seq"] for frame in frames if frame["type"] == "chunk"), default=0)
    assert frames[-1] == {
        "type": "error",
        "code": "STORE_UNAVAILABLE",
        "message": MESSAGE,
        "message_id": frames[-1]["message_id"],
        "seq": delivered,
    }
    await asyncio.wait_for(upstream.client_gone.wait(), WAIT_LIMIT)


async def test_the_chat_socket_names_the_conversation_of_a_reply_the_store_cut() -> None:
    """``/ws/chat/``: the store's error ends the reply with its ``conversation``, as
    ``complete`` would: the client may have started that conversation with this prompt."""
    env = {"DJANGO_SETTINGS_MODULE": "tests.settings_failing_store"}
    with (
        sqlite_database() as database,
        daphne_server("tests.asgi:application", env={**env, **database}) as url,
    ):
        async with httpx.AsyncClient(base_url=url, timeout=WAIT_LIMIT) as page:
            await page.get("/visitor")
            cookie = "; ".join(f"{name}={value}" for name, value in page.cookies.items())
            async with connect(
                url.replace("http://", "ws://") + "/ws/chat/",
                origin=url,  # type: ignore[arg-type]
                additional_headers={"Cookie": cookie},
            ) as socket:
                await socket.send(json.dumps({"type": "prompt", "prompt": "Hello"}))
                frame = json.loads(await asyncio.wait_for(socket.recv(), WAIT_LIMIT))
                while frame["type"] not in {"complete", "error", "cancelled"}:
                    frame = json.loads(await asyncio.wait_for(socket.recv(), WAIT_LIMIT))
            assert (frame["type"], frame["code"]) == ("error", "STORE_UNAVAILABLE")
            stored = (await page.get(f"/chat/conversations/{frame['conversation']}")).json()
    assert [m["role"] for m in stored["messages"]] == ["user", "assistant"]
    assert stored["messages"][-1]["status"] == "failed"


async def sse_stopping(base: str, params: dict[str, str], redis: RedisServer) -> dict[str, Any]:
    """The last message of an SSE reply during which ``redis`` is stopped."""
    parser = SSEParser()
    messages: list[dict[str, Any]] = []
    async with (
        httpx.AsyncClient(base_url=base, timeout=WAIT_LIMIT) as client,
        client.stream("GET", "/sse/openai-keep", params=params) as response,
    ):
        async for raw in response.aiter_raw():
            if not messages:
                messages += [json.loads(e.data) for e in parser.feed(raw)]
                if messages:
                    await asyncio.to_thread(redis.stop)
            else:
                messages += [json.loads(e.data) for e in parser.feed(raw)]
    return messages[-1]


async def ws_stopping(base: str, prompt: dict[str, Any], redis: RedisServer) -> dict[str, Any]:
    """The last frame of a WebSocket reply during which ``redis`` is stopped."""
    async with connect(base.replace("http://", "ws://") + "/ws/openai-keep/", origin=base) as ws:
        await ws.send(json.dumps(prompt))
        frame = json.loads(await asyncio.wait_for(ws.recv(), WAIT_LIMIT))
        await asyncio.to_thread(redis.stop)
        while frame["type"] == "chunk":
            frame = json.loads(await asyncio.wait_for(ws.recv(), WAIT_LIMIT))
    return frame


@needs_redis
@pytest.mark.parametrize("transport", ["sse", "ws"])
async def test_a_redis_stopped_mid_reply_ends_it_with_the_store_error(
    serve: Serve, transport: str
) -> None:
    upstream = await serve(endless_reply)
    redis = RedisServer()
    redis.start()
    try:
        env = {"DJANGO_SETTINGS_MODULE": "tests.settings_redis", "STREAMING_TEST_REDIS": redis.url}
        with daphne_server("tests.asgi:application", env=env) as base:
            prompt = {"prompt": "Hi", "base_url": f"{upstream.url}/v1"}
            if transport == "sse":
                last = await sse_stopping(base, prompt, redis)
            else:
                last = await ws_stopping(base, prompt, redis)
                assert last["type"] == "error", last
            assert last["code"] == "STORE_UNAVAILABLE", last
            await asyncio.wait_for(upstream.client_gone.wait(), WAIT_LIMIT)
    finally:
        redis.close()
