"""Limits on paid replies over real sockets: daphne with the default limits
(``tests.settings_limits``), one process with the memory store and two sharing a real
redis-server. 127.0.0.1 is a trusted proxy there, so each test plays its own clients with
``X-Forwarded-For`` and no test uses up another's places or minute."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from websockets.asyncio.client import connect

from streaming.sse import SSEParser
from streaming.testing import parse_sse

from .conftest import probe
from .redis_server import RedisServer, needs_redis, redis_daphnes, redis_server
from .servers import project_server

LIMIT = 20.0
#: A reply that runs for about 15 s unless it is cancelled.
SLOW = {"delay": "0.1", "size": "1", "pipeline": "passthrough"}
#: A reply that ends at once.
QUICK = {"size": "500", "pipeline": "passthrough"}
_addresses = itertools.count(1)


def new_address() -> str:
    """A client address of its own for one test (forwarded by the trusted 127.0.0.1)."""
    n = next(_addresses)
    return f"198.51.{100 + n // 250}.{n % 250 + 1}"


@pytest.fixture(scope="module")
def limited_url() -> Iterator[str]:
    """The test project with the limits on, on a migrated SQLite file (the chat's)."""
    with project_server("tests.settings_limits") as url:
        yield url


@contextlib.contextmanager
def visitor(url: str, address: str) -> Iterator[httpx.Client]:
    """A browser-like client: a session (so an owner) and its own address."""
    with httpx.Client(base_url=url, timeout=LIMIT, headers={"X-Forwarded-For": address}) as client:
        client.get("/visitor")
        yield client


def refused(response: httpx.Response, code: str) -> dict[str, Any]:
    """Check a 429 refusal: JSON ``{"error", "code"}`` and a ``Retry-After``."""
    assert response.status_code == 429, response.read()
    body = json.loads(response.read())
    assert body["code"] == code and body["error"]
    assert int(response.headers["Retry-After"]) >= 1
    return body


def first_event_id(response: httpx.Response) -> str:
    parser = SSEParser()
    for chunk in response.iter_raw():
        for event in parser.feed(chunk):
            return event.id or ""
    raise AssertionError("no event")


def until(condition: Any, timeout: float = 10.0) -> Any:
    """Poll ``condition()`` until it returns something true (bounded)."""
    deadline = time.monotonic() + timeout
    while not (result := condition()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return result


# ------------------------------------------------------------------ concurrency
async def test_200_concurrent_anonymous_gets_start_at_most_the_address_limit(
    limited_url: str,
) -> None:
    """The issue's measurement: 200 concurrent anonymous GETs started 200 replies. Each
    request is its own raw connection without cookies (a new visitor, a new owner)."""
    key = uuid.uuid4().hex
    host, port = limited_url.removeprefix("http://").split(":")
    request = (
        f"GET /sse/scripted?{urlencode({**SLOW, 'key': key})} HTTP/1.1\r\nHost: {host}\r\n"
        f"X-Forwarded-For: {new_address()}\r\n\r\n"
    ).encode()
    heads: list[bytes] = []
    everyone_answered = asyncio.Event()

    async def one() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write(request)
            heads.append(await reader.readuntil(b"\r\n\r\n"))
            if len(heads) == 200:
                everyone_answered.set()
            await everyone_answered.wait()
        finally:
            writer.close()

    await asyncio.wait_for(asyncio.gather(*(one() for _ in range(200))), LIMIT * 3)
    statuses = [int(head.split()[1]) for head in heads]
    assert statuses.count(200) == 10
    assert statuses.count(429) == 190
    assert all(b"\r\nRetry-After: " in head for head in heads if b" 429 " in head)
    with httpx.Client(base_url=limited_url, timeout=LIMIT) as client:
        assert probe(client, key).count("started") == 10


def test_an_owner_runs_at_most_three_and_a_cancelled_one_frees_its_place(
    limited_url: str,
) -> None:
    with visitor(limited_url, new_address()) as client, contextlib.ExitStack() as running:
        streams = [
            running.enter_context(client.stream("GET", "/sse/scripted", params=SLOW))
            for _ in range(3)
        ]
        assert [s.status_code for s in streams] == [200, 200, 200]
        with client.stream("GET", "/sse/scripted", params=SLOW) as fourth:
            body = refused(fourth, "TOO_MANY_REPLIES")
        assert "for you" in body["error"]
        streams[0].close()  # the client goes away: the reply is cancelled

        def starts() -> bool:
            response = client.get("/sse/scripted", params=QUICK)
            return response.status_code == 200

        assert until(starts)


def test_places_are_free_as_soon_as_replies_end_or_fail(limited_url: str) -> None:
    """A reply gives its place back before its end is sent: the next one starts at once."""
    with visitor(limited_url, new_address()) as client:
        failing = {"size": "50", "fail_after": "1", "pipeline": "passthrough"}
        for params in (QUICK, {**failing, "fail": "crash"}, {**failing, "fail": "upstream"}):
            for _ in range(2):
                for response in [client.get("/sse/scripted", params=params) for _ in range(3)]:
                    assert response.status_code == 200
                    last = json.loads(parse_sse(response.content)[-1].data)
                    assert ("done" in last) == ("fail" not in params), last


def test_the_start_rate_per_address_is_limited(limited_url: str) -> None:
    address = new_address()
    with httpx.Client(base_url=limited_url, timeout=LIMIT) as client:
        headers = {"X-Forwarded-For": address}
        for _ in range(30):
            assert client.get("/sse/scripted", params=QUICK, headers=headers).status_code == 200
        with client.stream("GET", "/sse/scripted", params=QUICK, headers=headers) as response:
            body = refused(response, "RATE_LIMITED")
            assert 1 <= int(response.headers["Retry-After"]) <= 60
        assert "a minute" in body["error"]
        other = {"X-Forwarded-For": new_address()}
        assert client.get("/sse/scripted", params=QUICK, headers=other).status_code == 200


def test_a_refused_start_is_no_start(limited_url: str) -> None:
    """Prompts the chat refuses after taking their place (a conversation that does not
    exist, one whose reply still runs) give their start back: past 30 of them, a good
    prompt still starts."""
    with visitor(limited_url, new_address()) as client:
        headers = {"X-CSRFToken": client.cookies["csrftoken"]}
        unknown = {"prompt": "x", "conversation": str(uuid.uuid4())}
        for _ in range(31):
            assert client.post("/chat/stream", json=unknown, headers=headers).status_code == 404
        with client.stream("POST", "/chat/stream", json={"prompt": "x"}, headers=headers) as first:
            assert first.status_code == 200
            busy = {"prompt": "again", "conversation": first.headers["X-Conversation-Id"]}
            for _ in range(30):
                assert client.post("/chat/stream", json=busy, headers=headers).status_code == 409
        response = client.post("/chat/stream", json={"prompt": "y"}, headers=headers)
        assert response.status_code == 200, response.text


def test_refusals_of_a_client_without_a_session_store_none(limited_url: str) -> None:
    """A client that keeps only the CSRF cookie (a bot), refused over and over (its
    address's starts used up, a bad prompt, a bad conversation), is given no session by a
    refusal (no cookie here, signed; no row with database sessions): its owner token is
    taken back. The prompt that starts a reply gets its session, as before."""
    address = new_address()
    with httpx.Client(base_url=limited_url, timeout=LIMIT) as page:
        page.get("/")
        token = page.cookies["csrftoken"]
    headers = {"X-CSRFToken": token, "X-Forwarded-For": address}

    def post(path: str, **body: Any) -> httpx.Response:
        """One request from a client that stored nothing but the CSRF cookie."""
        with httpx.Client(base_url=limited_url, timeout=LIMIT) as bot:
            bot.cookies.set("csrftoken", token)
            return bot.post(path, headers=headers, **body)

    for _ in range(30):
        quick = httpx.get(f"{limited_url}/sse/scripted", params=QUICK, headers=headers)
        assert quick.status_code == 200
    refusals = [
        (post("/chat/stream", json={"prompt": "Hi"}), 429),
        (post("/chat/ui", json={"id": "c1", "messages": []}), 400),
        (post("/chat/stream", json={"prompt": ""}), 400),
        (post("/chat/stream", content=b"{not json"), 400),
        (post("/chat/conversations", json=[]), 400),
    ]
    for response, status in refusals:
        assert response.status_code == status, response.text
        assert "sessionid" not in response.cookies, response.text
    headers["X-Forwarded-For"] = new_address()
    started = post("/chat/stream", json={"prompt": "Hi"})
    assert started.status_code == 200
    assert "sessionid" in started.cookies


def test_resuming_starts_nothing_and_is_not_limited(limited_url: str) -> None:
    with visitor(limited_url, new_address()) as client, contextlib.ExitStack() as running:
        streams = [
            running.enter_context(client.stream("GET", "/sse/keep", params=SLOW)) for _ in range(3)
        ]
        event_id = first_event_id(streams[0])
        with client.stream("GET", "/sse/keep", headers={"Last-Event-ID": event_id}) as resumed:
            assert resumed.status_code == 200
            assert first_event_id(resumed).startswith(event_id.split(":")[0])
            with client.stream("GET", "/sse/keep", params=SLOW) as fourth:
                refused(fourth, "TOO_MANY_REPLIES")


def test_get_limits_exempts_a_request(limited_url: str) -> None:
    with visitor(limited_url, new_address()) as client, contextlib.ExitStack() as running:
        key = {"X-Api-Key": "partner"}
        streams = [
            running.enter_context(client.stream("GET", "/sse/api-key", params=SLOW, headers=key))
            for _ in range(5)
        ]
        assert {s.status_code for s in streams} == {200}
        with client.stream("GET", "/sse/api-key", params=SLOW) as limited:
            # The exempt replies took no place: three more fit, then the limit.
            assert limited.status_code == 200
            with (
                client.stream("GET", "/sse/api-key", params=SLOW),
                client.stream("GET", "/sse/api-key", params=SLOW),
                client.stream("GET", "/sse/api-key", params=SLOW) as fourth,
            ):
                refused(fourth, "TOO_MANY_REPLIES")


async def test_a_websocket_prompt_over_the_limit_gets_an_error_frame(limited_url: str) -> None:
    ws_url = limited_url.replace("http://", "ws://") + "/ws/scripted/"
    headers = {"X-Forwarded-For": new_address()}
    prompt = json.dumps({"type": "prompt", "prompt": "go", **SLOW})
    async with contextlib.AsyncExitStack() as sockets:
        for _ in range(10):
            socket = await sockets.enter_async_context(
                connect(ws_url, origin=limited_url, additional_headers=headers)  # type: ignore[arg-type]
            )
            await socket.send(prompt)
            frame = json.loads(await asyncio.wait_for(socket.recv(), LIMIT))
            assert frame["type"] == "chunk", frame
        eleventh = await sockets.enter_async_context(
            connect(ws_url, origin=limited_url, additional_headers=headers)  # type: ignore[arg-type]
        )
        await eleventh.send(prompt)
        frame = json.loads(await asyncio.wait_for(eleventh.recv(), LIMIT))
        assert frame["type"] == "error" and frame["code"] == "TOO_MANY_REPLIES", frame
        assert frame["retry_after"] >= 1
        # The connection stays usable.
        await eleventh.send(json.dumps({"type": "ping"}))
        assert json.loads(await asyncio.wait_for(eleventh.recv(), LIMIT)) == {"type": "pong"}


# ------------------------------------------------------------- several processes
@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture(scope="module")
def two_limited_processes(redis: RedisServer) -> Iterator[tuple[str, str]]:
    with redis_daphnes("tests.settings_limits", redis, 2) as (first, second):
        yield first, second


@needs_redis
def test_with_redis_the_address_limit_counts_across_processes(
    two_limited_processes: tuple[str, str],
) -> None:
    """Twelve new visitors from one address, alternately on each process: ten start."""
    headers = {"X-Forwarded-For": new_address()}

    def start_twelve(running: contextlib.ExitStack) -> list[int]:
        statuses = []
        for n in range(12):
            url = two_limited_processes[n % 2]
            client = running.enter_context(httpx.Client(base_url=url, timeout=LIMIT))
            response = running.enter_context(
                client.stream("GET", "/sse/scripted", params=SLOW, headers=headers)
            )
            statuses.append(response.status_code)
        return statuses

    with contextlib.ExitStack() as running:
        assert start_twelve(running) == [200] * 10 + [429] * 2
    # Every reply was cancelled with its connection: the places are free again.

    def all_fit() -> bool:
        with contextlib.ExitStack() as again:
            return start_twelve(again)[:10] == [200] * 10

    assert until(all_fit)


@needs_redis
def test_with_redis_an_owner_is_limited_across_processes(
    two_limited_processes: tuple[str, str],
) -> None:
    first, second = two_limited_processes
    with visitor(first, new_address()) as client, contextlib.ExitStack() as running:
        for url in (first, second, first):
            response = running.enter_context(
                client.stream("GET", f"{url}/sse/scripted", params=SLOW)
            )
            assert response.status_code == 200
        with client.stream("GET", f"{second}/sse/scripted", params=SLOW) as fourth:
            refused(fourth, "TOO_MANY_REPLIES")


# ------------------------------------------------------------------ conversations


def test_the_conversations_one_address_creates_are_limited_whatever_its_sessions(
    limited_url: str,
) -> None:
    """20 a minute from one address (``MAX_CONVERSATIONS_PER_MINUTE``), even when each
    comes from a new session: a conversation costs no model time, but each is a row."""
    address = new_address()

    def create(client: httpx.Client) -> httpx.Response:
        headers = {"X-CSRFToken": client.cookies["csrftoken"]}
        return client.post("/chat/conversations", json={}, headers=headers)

    for _ in range(20):
        with visitor(limited_url, address) as client:
            assert create(client).status_code == 201
    with visitor(limited_url, address) as client:
        response = create(client)
        assert response.status_code == 429, response.text
        assert response.json()["code"] == "RATE_LIMITED"
        assert "conversations created from this address" in response.json()["error"]
        assert 1 <= int(response.headers["Retry-After"]) <= 60
        listed = client.get("/chat/conversations").json()
        assert listed["conversations"] == []
    with visitor(limited_url, new_address()) as client:
        assert create(client).status_code == 201


def test_an_owner_keeps_at_most_max_conversations_per_owner(limited_url: str) -> None:
    """25 here (``tests.settings_limits``): the 26th, by the API, a prompt or a new AI SDK
    chat, is a 409 ``TOO_MANY_CONVERSATIONS``; deleting one makes room."""
    with visitor(limited_url, new_address()) as client:
        headers = {"X-CSRFToken": client.cookies["csrftoken"]}
        created = []
        for n in range(25):
            forwarded = {**headers, "X-Forwarded-For": new_address()}  # under the rate
            response = client.post("/chat/conversations", json={}, headers=forwarded)
            assert response.status_code == 201, (n, response.text)
            created.append(response.json()["id"])
        refusals = [
            client.post("/chat/conversations", json={}, headers=headers),
            client.post("/chat/stream", json={"prompt": "hello"}, headers=headers),
            client.post(
                "/chat/ui",
                json={
                    "id": "a-new-chat",
                    "trigger": "submit-message",
                    "messages": [{"role": "user", "parts": [{"type": "text", "text": "hi"}]}],
                },
                headers=headers,
            ),
        ]
        for response in refusals:
            assert response.status_code == 409, response.text
            assert response.json()["code"] == "TOO_MANY_CONVERSATIONS"
            assert "delete one" in response.json()["error"]
        assert len(client.get("/chat/conversations").json()["conversations"]) == 25
        # An existing conversation still takes prompts.
        prompt = {"prompt": "still here", "conversation": created[0]}
        assert client.post("/chat/stream", json=prompt, headers=headers).status_code == 200
        deleted = client.delete(f"/chat/conversations/{created[1]}", headers=headers)
        assert deleted.status_code == 204
        response = client.post("/chat/stream", json={"prompt": "hello"}, headers=headers)
        assert response.status_code == 200, response.text
