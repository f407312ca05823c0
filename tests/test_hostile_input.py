"""Hostile input and broken parts over real sockets: JSON nested too deeply for the
parser, non-JSON numbers, lone surrogates from the client and from the model (memory and
Redis stores), error events that carry their reply's id, and a Redis that stops without
telling clients where it runs, or that keeps a process's one store connection busy."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from streaming.sse import ParsedEvent, SSEParser
from streaming.testing import parse_sse

from .redis_server import RedisServer, needs_redis, redis_daphnes, redis_server

LIMIT = 10.0
DEEP = 100_000
SLOW = {"delay": "0.02", "size": "1", "pipeline": "passthrough"}
QUICK = {"delay": "0", "size": "1", "pipeline": "passthrough"}
#: A prompt with a lone surrogate, as the JSON escape sends it.
SURROGATE_BODY = b'{"prompt": "hi \\ud800 there"}'
#: What ``EchoView`` streams for it: the prompt back, then the model's own lone surrogate.
ECHOED = "You said: hi \ufffd there and \ufffd!"


@pytest.fixture
def browser(live_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_url, timeout=LIMIT) as client:
        client.get("/")
        yield client


def post(client: httpx.Client, path: str, body: bytes) -> httpx.Response:
    headers = {"X-CSRFToken": client.cookies["csrftoken"], "Content-Type": "application/json"}
    return client.post(path, content=body, headers=headers)


def ws(live_url: str, path: str) -> Any:
    return connect(live_url.replace("http://", "ws://") + path, origin=live_url)  # type: ignore[arg-type]


async def frames_until_end(socket: ClientConnection) -> list[dict[str, Any]]:
    frames = [json.loads(await socket.recv())]
    while frames[-1]["type"] == "chunk":
        frames.append(json.loads(await socket.recv()))
    return frames


def sse_text(events: list[ParsedEvent]) -> str:
    return "".join(json.loads(event.data).get("chunk", "") for event in events)


# ------------------------------------------------------------------------ deep JSON
@pytest.mark.parametrize(
    "body",
    [
        b"[" * DEEP + b"]" * DEEP,
        b'{"prompt": "hi", "options": ' + b'{"a": ' * DEEP + b"1" + b"}" * DEEP + b"}",
        b'{"prompt": "hi", "temperature": NaN}',
        b'{"prompt": "hi", "temperature": 1e999}',
        b'{"prompt": "hi", "n": ' + b"9" * 5000 + b"}",
    ],
    ids=["nested-array", "nested-object", "nan", "infinite", "huge-integer"],
)
def test_a_post_body_json_cannot_break_the_view(browser: httpx.Client, body: bytes) -> None:
    response = post(browser, "/sse/scripted", body)
    assert response.status_code == 400, response.text[:200]
    assert response.json()["code"] == "BAD_REQUEST"
    assert "must be a JSON object" in response.json()["error"]


def test_a_huge_integer_is_refused_without_pythons_advice_to_the_server(
    browser: httpx.Client,
) -> None:
    response = post(browser, "/sse/scripted", b'{"prompt": "hi", "n": ' + b"9" * 5000 + b"}")
    assert response.json()["error"] == (
        "The request body must be a JSON object: The number 99999999999999999999… is too large"
    )


#: More parameters than Django parses (``DATA_UPLOAD_MAX_NUMBER_FIELDS``, 1,000).
MANY_FIELDS = "&".join(f"a{n}=" for n in range(1001))


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"/chat/stream?prompt=x&{MANY_FIELDS}"),
        ("GET", f"/chat/conversations?{MANY_FIELDS}"),
        ("DELETE", f"/chat/stream?id=x&{MANY_FIELDS}"),
        ("POST", "/chat/stream"),
        ("POST", "/chat/conversations"),
        ("POST", "/chat/ui"),
    ],
)
def test_too_many_fields_or_a_form_body_get_a_json_400(
    browser: httpx.Client, method: str, path: str
) -> None:
    """Django refuses to parse 1,001 parameters, and a multipart body read as a form
    leaves the body unreadable: a JSON 400 either way, never an HTML page."""
    headers = {"X-CSRFToken": browser.cookies["csrftoken"]}
    if method == "POST":
        for form in (
            {"data": {f"a{n}": "" for n in range(1001)}},
            {"files": {"f": ("f.txt", b"x")}, "data": {"prompt": "x"}},
        ):
            response = browser.request(method, path, headers=headers, **form)  # type: ignore[arg-type]
            assert response.status_code == 400, response.text[:300]
            assert response.json()["code"] == "BAD_REQUEST"
            assert "must be a JSON object" in response.json()["error"]
        return
    response = browser.request(method, path, headers=headers)
    assert response.status_code == 400, response.text[:300]
    assert response.json() == {
        "error": "The query string cannot be read: The number of GET/POST parameters "
        "exceeded settings.DATA_UPLOAD_MAX_NUMBER_FIELDS.",
        "code": "BAD_REQUEST",
    }


@pytest.mark.parametrize("pipeline", [{}, [], 0, False, ["passthrough"]])
def test_a_pipeline_that_is_no_string_is_refused(browser: httpx.Client, pipeline: Any) -> None:
    response = post(
        browser, "/sse/scripted", json.dumps({"prompt": "hi", "pipeline": pipeline}).encode()
    )
    assert response.status_code == 400
    assert response.json()["code"] == "UNKNOWN_PIPELINE"


def test_an_unknown_pipeline_name_is_not_echoed_in_full(browser: httpx.Client) -> None:
    body = json.dumps({"prompt": "hi", "pipeline": "z" * 100_000}).encode()
    response = post(browser, "/sse/scripted", body)
    assert response.status_code == 400
    assert response.json()["code"] == "UNKNOWN_PIPELINE"
    assert len(response.json()["error"]) < 300


@pytest.mark.parametrize(
    "event_id",
    [b"x:\xb2", b"x:" + b"9" * 4400, "x:\u0661".encode()],
    ids=["superscript-two", "4400-digits", "arabic-indic-one"],
)
def test_a_last_event_id_that_is_no_reply_is_a_404(browser: httpx.Client, event_id: bytes) -> None:
    """Digits that ``str.isdigit`` takes and ``int`` does not, and more digits than
    ``int`` parses: no reply, not a 500."""
    response = browser.get("/sse/scripted", headers={"Last-Event-ID": event_id})
    assert response.status_code == 404, response.text[:200]
    assert response.json()["code"] == "NOT_FOUND"


async def test_a_frame_over_the_servers_message_size_closes_only_its_socket(
    live_url: str,
) -> None:
    """Past daphne's 1 MiB, the server drops the connection (what the README says); just
    under it, the prompt is too large and the socket stays. The drop may come while the
    client still writes the frame, so the send or the next read sees it."""
    from websockets.exceptions import ConnectionClosed

    async with ws(live_url, "/ws/chat/") as socket:
        await socket.send(json.dumps({"prompt": "a" * (1024 * 1024 - 100)}))
        refused = json.loads(await asyncio.wait_for(socket.recv(), LIMIT))
        assert refused["code"] == "PROMPT_TOO_LARGE"
        with pytest.raises(ConnectionClosed):
            await socket.send(json.dumps({"prompt": "a" * (1024 * 1024 + 100)}))
            await asyncio.wait_for(socket.recv(), LIMIT)
    async with ws(live_url, "/ws/chat/") as socket:
        await socket.send(json.dumps({"type": "ping"}))
        assert json.loads(await asyncio.wait_for(socket.recv(), LIMIT)) == {"type": "pong"}


async def test_a_deeply_nested_frame_gets_an_error_frame_and_the_socket_stays(
    live_url: str,
) -> None:
    async with ws(live_url, "/ws/scripted/") as socket:
        await socket.send('{"type": "prompt", "prompt": ' + "[" * DEEP + "]" * DEEP + "}")
        frame = json.loads(await socket.recv())
        assert frame["type"] == "error" and frame["code"] == "BAD_REQUEST"
        assert "nested too deeply" in frame["message"]
        await socket.send(json.dumps({"type": [[[["not", "a", "type"]]]]}))
        frame = json.loads(await socket.recv())
        assert frame["code"] == "BAD_REQUEST" and "must be a string" in frame["message"]
        await socket.send(json.dumps({"regenerate": True}))  # no type, and not a prompt
        frame = json.loads(await socket.recv())
        assert frame["code"] == "BAD_REQUEST" and "needs a 'type'" in frame["message"]
        # A resume's cursor of 4,000 digits is refused as such, not echoed back.
        await socket.send('{"type": "resume", "message_id": "x", "after": ' + "9" * 4000 + "}")
        frame = json.loads(await socket.recv())
        assert frame["code"] == "BAD_REQUEST" and "at most 18 digits" in frame["message"]
        assert len(frame["message"]) < 200
        await socket.send('{"type": "prompt", "prompt": "hi", "temperature": NaN}')
        assert json.loads(await socket.recv())["code"] == "BAD_REQUEST"
        await socket.send(json.dumps({"type": "ping"}))
        assert json.loads(await socket.recv()) == {"type": "pong"}


# ------------------------------------------------------------- hook parameters
def test_a_parameter_the_stream_hook_cannot_take_is_a_json_error(browser: httpx.Client) -> None:
    """``self`` would collide with the hook's own argument (400); a parameter a
    subclass's ``stream`` does not take is the client's mistake (400 naming it, never a
    500 and a traceback in the log), but for ``pipeline``, which the view reads itself; a
    sync ``get_limits`` is called as an async one is."""
    refused = post(browser, "/sse/echo", b'{"prompt": "hi", "self": 1}')
    assert refused.status_code == 400
    assert refused.json() == {"error": "'self' cannot be a parameter's name", "code": "BAD_REQUEST"}
    refused = post(browser, "/chat/stream", b'{"prompt": "hi", "self": 1}')
    assert refused.json()["code"] == "BAD_REQUEST"
    failed = post(browser, "/sse/echo", b'{"prompt": "hi", "extra": 1}')
    assert failed.status_code == 400
    assert failed.json() == {"error": "Unknown parameter 'extra'", "code": "BAD_REQUEST"}
    for body in (b'{"prompt": "hi"}', b'{"prompt": "hi", "pipeline": ""}'):
        answered = post(browser, "/sse/echo", body)
        assert sse_text(parse_sse(answered.content)) == "You said: hi and \ufffd!"


async def test_a_prompt_frame_the_stream_hook_cannot_take_is_answered_and_the_queue_goes_on(
    live_url: str,
) -> None:
    async with ws(live_url, "/ws/echo/") as socket:
        for frame in ({"prompt": "A", "self": 1}, {"prompt": "B", "extra": 1}, {"prompt": "C"}):
            await socket.send(json.dumps(frame))
        refused = json.loads(await asyncio.wait_for(socket.recv(), LIMIT))
        assert refused["code"] == "BAD_REQUEST" and "'self'" in refused["message"]
        failed = json.loads(await asyncio.wait_for(socket.recv(), LIMIT))
        assert (failed["code"], failed["message"]) == ("BAD_REQUEST", "Unknown parameter 'extra'")
        frames = await asyncio.wait_for(frames_until_end(socket), LIMIT)
    assert frames[-1]["type"] == "complete"
    assert frames[-1]["fullResponse"] == "You said: C and \ufffd!"


# ----------------------------------------------------------------- lone surrogates
def check_sse_echo(client: httpx.Client) -> None:
    response = post(client, "/sse/echo", SURROGATE_BODY)
    assert response.status_code == 200
    events = parse_sse(response.content)
    assert sse_text(events) == ECHOED
    assert json.loads(events[-1].data) == {"done": True}


async def check_ws_echo(url: str) -> None:
    async with ws(url, "/ws/echo/") as socket:
        await socket.send('{"type": "prompt", "prompt": "hi \\ud800 there"}')
        frames = await frames_until_end(socket)
    assert frames[-1]["type"] == "complete", frames[-1]
    assert frames[-1]["fullResponse"] == ECHOED
    assert "".join(f["content"] for f in frames if f["type"] == "chunk") == ECHOED


def test_lone_surrogates_reach_an_sse_client_as_replacement_characters(
    browser: httpx.Client,
) -> None:
    check_sse_echo(browser)


async def test_lone_surrogates_reach_a_websocket_client_as_replacement_characters(
    live_url: str,
) -> None:
    await check_ws_echo(live_url)


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture(scope="module")
def redis_url(redis: RedisServer) -> Iterator[str]:
    with redis_daphnes("tests.settings_redis", redis) as (url,):
        yield url


@needs_redis
async def test_lone_surrogates_pass_through_the_redis_store(redis_url: str) -> None:
    with httpx.Client(base_url=redis_url, timeout=LIMIT) as client:
        client.get("/")
        check_sse_echo(client)
    await check_ws_echo(redis_url)


# ------------------------------------------------------------------ error event ids
def test_an_sse_error_event_carries_the_reply_id(http: httpx.Client) -> None:
    events = parse_sse(http.get("/sse/scripted", params={"size": 10, "fail": "crash"}).content)
    assert json.loads(events[-1].data)["code"] == "INTERNAL_ERROR"
    ids = [event.id or "" for event in events]
    generation = ids[0].split(":")[0]
    assert all(i.startswith(f"{generation}:") for i in ids)
    seqs = [int(i.split(":")[1]) for i in ids]
    assert seqs == sorted(set(seqs))


async def test_a_websocket_error_frame_carries_the_reply_id_and_seq(live_url: str) -> None:
    async with ws(live_url, "/ws/scripted/") as socket:
        await socket.send(
            json.dumps({"prompt": "hi", "size": 10, "fail": "upstream", "pipeline": "passthrough"})
        )
        frames = await frames_until_end(socket)
    error = frames[-1]
    assert error["type"] == "error" and error["code"] == "UPSTREAM_ERROR"
    assert error["message_id"] == frames[0]["message_id"]
    assert error["seq"] > frames[-2]["seq"]


# ---------------------------------------------------------------- a stopped store
@pytest.fixture
def own_redis_url() -> Iterator[tuple[RedisServer, str]]:
    with redis_server() as server, redis_daphnes("tests.settings_redis", server) as (url,):
        yield server, url


def no_address(text: str, server: RedisServer) -> None:
    assert "127.0.0.1" not in text and str(server.port) not in text and "redis://" not in text


@needs_redis
async def test_a_stopped_store_tells_clients_nothing_of_where_it_runs(
    own_redis_url: tuple[RedisServer, str],
) -> None:
    server, url = own_redis_url
    with httpx.Client(base_url=url, timeout=LIMIT) as client:
        client.get("/")
        with client.stream("GET", "/sse/scripted", params=SLOW) as response:
            parser = SSEParser()
            events: list[ParsedEvent] = []
            for chunk in response.iter_raw():
                events += parser.feed(chunk)
                if len(events) == 3 and server.process is not None:
                    server.stop()
        last = json.loads(events[-1].data)
        assert last["code"] in {"STORE_UNAVAILABLE", "NOT_FOUND"}, last
        no_address(last["error"], server)
        # Even this failure names the reply and where to resume after.
        generation, seq = (events[-1].id or "").split(":")
        assert generation == (events[0].id or "").split(":")[0] and int(seq) >= 3
        refused = client.get("/sse/scripted", params=SLOW)
        assert refused.status_code == 503
        assert refused.json() == {
            "error": "The event store is unavailable",
            "code": "STORE_UNAVAILABLE",
        }
    async with ws(url, "/ws/scripted/") as socket:
        await socket.send(json.dumps({"prompt": "hi"}))
        frame = json.loads(await socket.recv())
    assert frame["code"] == "STORE_UNAVAILABLE"
    no_address(frame["message"], server)


@needs_redis
async def test_a_process_out_of_store_connections_says_it_is_busy_not_that_the_store_failed() -> (
    None
):
    """One command hangs (Redis paused) on the process's only pooled connection: the next
    requests wait the pool's 0.3 s and get ``SERVER_BUSY`` with ``Retry-After``; once Redis
    answers again (before the socket timeout) the hung reply and new ones complete."""
    busy = {"error": "The server is too busy; try again shortly", "code": "SERVER_BUSY"}
    with (
        redis_server() as server,
        redis_daphnes("tests.settings_redis_one_connection", server) as (url,),
    ):
        async with httpx.AsyncClient(base_url=url, timeout=LIMIT) as client:
            assert (await client.get("/sse/scripted", params=QUICK)).status_code == 200
            server.pause()
            try:
                hung = asyncio.create_task(client.get("/sse/scripted", params=QUICK))
                await asyncio.sleep(0.5)
                refused = await client.get("/sse/scripted", params=QUICK)
                assert (refused.status_code, refused.json()) == (503, busy)
                assert refused.headers["Retry-After"] == "1"
                async with ws(url, "/ws/scripted/") as socket:
                    await socket.send(json.dumps({"prompt": "hi"}))
                    frame = json.loads(await asyncio.wait_for(socket.recv(), LIMIT))
                assert (frame["code"], frame["message"], frame["retry_after"]) == (
                    "SERVER_BUSY",
                    busy["error"],
                    1,
                )
                assert not hung.done()
            finally:
                server.resume()
            for response in (await hung, await client.get("/sse/scripted", params=QUICK)):
                assert response.status_code == 200
                assert json.loads(parse_sse(response.content)[-1].data) == {"done": True}
