"""``MAX_ACTIVE_PER_PROCESS``: a process running that many replies refuses new ones with
``SERVER_BUSY`` (503 and ``Retry-After``, an error frame on a WebSocket) before it
reserves or stores anything; in process, then over real sockets against daphne."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import pytest
from django.test import override_settings
from websockets.asyncio.client import connect

from streaming import StreamError
from streaming.extractors import Pipeline
from streaming.generations import Generations
from streaming.limits import ACTIVE_RETRY_AFTER, Limits
from streaming.store import MemoryStore
from streaming.store.base import Quota, QuotaRefusal

from .servers import project_server
from .slow_create_store import SlowCreateStore
from .test_limits_live import QUICK, SLOW, new_address, until, visitor

LIMIT = 20.0


async def forever() -> Any:
    """A model that sends one token, then nothing until it is cancelled."""
    yield "hello "
    await asyncio.Event().wait()


class CountingStore(MemoryStore):
    """A memory store that counts the reservations it was asked for."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.asked = 0

    async def acquire_quotas(self, holder: str, quotas: Sequence[Quota]) -> QuotaRefusal | None:
        self.asked += 1
        return await super().acquire_quotas(holder, quotas)


def busy(error: StreamError) -> None:
    assert str(error.code) == "SERVER_BUSY", error
    assert error.details == {"retry_after": ACTIVE_RETRY_AFTER}
    assert "too busy" in error.message


# ------------------------------------------------------------------- in process
@override_settings(STREAMING={"MAX_ACTIVE_PER_PROCESS": 2})
async def test_starts_past_the_limit_are_refused_until_a_reply_ends() -> None:
    generations = Generations(MemoryStore())
    first = await generations.start(forever(), Pipeline(), owner="me")
    await generations.start(forever(), Pipeline(), owner="me")
    with pytest.raises(StreamError) as refused:
        await generations.start(forever(), Pipeline(), owner="me")
    busy(refused.value)
    task = generations.running[first].task
    await generations.cancel(first)
    await asyncio.wait_for(task, 5)
    await asyncio.sleep(0)  # its done callback forgets it
    third = await generations.start(forever(), Pipeline(), owner="me")
    for generation_id in list(generations.running):
        await generations.cancel(generation_id)
    assert third


@override_settings(STREAMING={"MAX_ACTIVE_PER_PROCESS": 2})
async def test_starts_at_once_are_counted_while_their_log_is_created() -> None:
    """Five starts together, each waiting 0.2 s for the store: two start, three are
    refused (counting only the running ones, all five would pass before any ran)."""
    generations = Generations(SlowCreateStore(delay=0.2))
    results = await asyncio.gather(
        *(generations.start(forever(), Pipeline(), owner="me") for _ in range(5)),
        return_exceptions=True,
    )
    started = [r for r in results if isinstance(r, str)]
    refused = [r for r in results if isinstance(r, StreamError)]
    assert len(started) == 2 and len(refused) == 3, results
    for error in refused:
        busy(error)
    for generation_id in started:
        await generations.cancel(generation_id)


@override_settings(STREAMING={"MAX_ACTIVE_PER_PROCESS": 1})
async def test_a_full_process_refuses_before_the_store_counts_anything() -> None:
    store = CountingStore()
    generations = Generations(store)
    limits = Limits(max_active_per_owner=3, max_starts_per_minute=30)
    reservation = await generations.reserve(limits, owner="me", address="192.0.2.1")
    generation_id = await generations.start(
        forever(), Pipeline(), owner="me", reservation=reservation
    )
    assert store.asked == 1
    with pytest.raises(StreamError) as refused:
        await generations.reserve(limits, owner="me", address="192.0.2.1")
    busy(refused.value)
    assert store.asked == 1  # no place taken, no start counted against the address
    await generations.cancel(generation_id)


@override_settings(STREAMING={"MAX_ACTIVE_PER_PROCESS": 1})
async def test_refusals_are_logged_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    generations = Generations(MemoryStore())
    generation_id = await generations.start(forever(), Pipeline(), owner="me")
    with caplog.at_level(logging.WARNING, logger="streaming"):
        for _ in range(3):
            with pytest.raises(StreamError):
                generations.admit()
    messages = [record.getMessage() for record in caplog.records]
    warnings = [message for message in messages if "MAX_ACTIVE_PER_PROCESS" in message]
    assert warnings == [
        "New replies refused (SERVER_BUSY): 1 run in this process, "
        "STREAMING['MAX_ACTIVE_PER_PROCESS'] is 1"
    ]
    await generations.cancel(generation_id)


# ----------------------------------------------------------------- real sockets
@pytest.fixture(scope="module")
def busy_url() -> Iterator[str]:
    """The test project with the limits on and ``MAX_ACTIVE_PER_PROCESS`` = 2."""
    with project_server("tests.settings_busy") as url:
        yield url


def refused_busy(response: httpx.Response) -> None:
    assert response.status_code == 503, response.read()
    body = json.loads(response.read())
    assert body == {"error": "The server is too busy; try again shortly", "code": "SERVER_BUSY"}
    assert response.headers["Retry-After"] == str(ACTIVE_RETRY_AFTER)


async def test_a_full_process_refuses_every_transport_and_takes_replies_again(
    busy_url: str,
) -> None:
    """Two visitors' slow replies fill the process. A third visitor is refused on SSE, on
    a WebSocket (the socket stays usable) and in the chat (no conversation is stored);
    once one reply ends, the process starts replies again."""
    with contextlib.ExitStack() as running:
        streams = []
        for _ in range(2):
            client = running.enter_context(visitor(busy_url, new_address()))
            streams.append(
                running.enter_context(client.stream("GET", "/sse/scripted", params=SLOW))
            )
        assert [s.status_code for s in streams] == [200, 200]
        third = running.enter_context(visitor(busy_url, new_address()))
        with third.stream("GET", "/sse/scripted", params=QUICK) as response:
            refused_busy(response)
        headers = {"X-CSRFToken": third.cookies["csrftoken"]}
        with third.stream("POST", "/chat/stream", json={"prompt": "x"}, headers=headers) as chat:
            refused_busy(chat)
        assert third.get("/chat/conversations").json()["conversations"] == []

        ws_url = busy_url.replace("http://", "ws://") + "/ws/scripted/"
        address = {"X-Forwarded-For": new_address()}
        async with connect(ws_url, origin=busy_url, additional_headers=address) as socket:  # type: ignore[arg-type]
            await socket.send(json.dumps({"type": "prompt", "prompt": "go", **QUICK}))
            frame = json.loads(await asyncio.wait_for(socket.recv(), LIMIT))
            assert frame["type"] == "error" and frame["code"] == "SERVER_BUSY", frame
            assert frame["retry_after"] == ACTIVE_RETRY_AFTER
            await socket.send(json.dumps({"type": "ping"}))
            assert json.loads(await asyncio.wait_for(socket.recv(), LIMIT)) == {"type": "pong"}

        streams[0].close()  # its client goes away: the reply is cancelled, a place frees

        def starts() -> bool:
            return third.get("/sse/scripted", params=QUICK).status_code == 200

        assert until(starts)
