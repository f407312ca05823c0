"""``StreamConsumer`` over a real daphne (``websockets`` client) and in-process
(``WebsocketCommunicator``): the protocol, cancel, disconnect, bad input, origin."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from channels.testing import WebsocketCommunicator
from django.test import override_settings
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from streaming.testing import ws_reply

from .transport_views import PLAIN_REPLY, XML_REPLY, XML_TEXT

LIMIT = 10.0


def ws_url(live_url: str, path: str) -> str:
    return live_url.replace("http://", "ws://") + path


@pytest.fixture
async def ws(live_url: str) -> AsyncIterator[ClientConnection]:
    async with connect(ws_url(live_url, "/ws/scripted/"), origin=live_url) as socket:
        yield socket


async def receive(socket: ClientConnection) -> dict[str, Any]:
    return dict(json.loads(await asyncio.wait_for(socket.recv(), LIMIT)))


async def until_end(socket: ClientConnection) -> list[dict[str, Any]]:
    """Frames up to and including the first that is not a chunk."""
    frames = [await receive(socket)]
    while frames[-1]["type"] == "chunk":
        frames.append(await receive(socket))
    return frames


async def wait_for_probe(live_url: str, key: str, expected: list[str]) -> None:
    async with httpx.AsyncClient(base_url=live_url, timeout=LIMIT) as client:
        deadline = asyncio.get_running_loop().time() + LIMIT
        seen = (await client.get(f"/probe/{key}")).json()
        while seen != expected and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
            seen = (await client.get(f"/probe/{key}")).json()
        assert seen == expected


def chunks_text(frames: list[dict[str, Any]]) -> str:
    return "".join(frame["content"] for frame in frames if frame["type"] == "chunk")


@pytest.mark.parametrize("size", [1, 3, 1000])
async def test_a_prompt_streams_chunks_then_complete(ws: ClientConnection, size: int) -> None:
    await ws.send(json.dumps({"prompt": "Hi", "size": size}))
    frames = await until_end(ws)
    complete = frames[-1]
    assert complete["type"] == "complete"
    assert chunks_text(frames) == complete["fullResponse"] == XML_TEXT
    assert {frame["message_id"] for frame in frames} == {complete["message_id"]}


@pytest.mark.parametrize(
    ("pipeline", "expected"), [("passthrough", XML_REPLY), ("xml", XML_TEXT), ("action", XML_TEXT)]
)
async def test_the_typed_prompt_picks_a_pipeline(
    ws: ClientConnection, pipeline: str, expected: str
) -> None:
    await ws.send(json.dumps({"type": "prompt", "prompt": "Hi", "pipeline": pipeline}))
    frames = await until_end(ws)
    assert chunks_text(frames) == frames[-1]["fullResponse"] == expected


async def test_prompts_on_one_connection_are_answered_in_order(ws: ClientConnection) -> None:
    await ws.send(json.dumps({"prompt": "one", "reply": "plain", "pipeline": "passthrough"}))
    await ws.send(json.dumps({"prompt": "two", "size": 5}))
    first = await until_end(ws)
    second = await until_end(ws)
    assert first[-1]["fullResponse"] == PLAIN_REPLY
    assert second[-1]["fullResponse"] == XML_TEXT
    assert first[-1]["message_id"] != second[-1]["message_id"]


async def test_ping_is_answered_even_while_a_reply_streams(ws: ClientConnection) -> None:
    await ws.send(json.dumps({"prompt": "Hi", "delay": 0.02, "size": 1, "pipeline": "passthrough"}))
    assert (await receive(ws))["type"] == "chunk"
    await ws.send(json.dumps({"type": "ping"}))
    frame = await receive(ws)
    while frame["type"] == "chunk":
        frame = await receive(ws)
    assert frame == {"type": "pong"}


async def test_cancel_stops_the_reply_and_its_source(live_url: str, ws: ClientConnection) -> None:
    key = uuid.uuid4().hex
    await ws.send(
        json.dumps(
            {"prompt": "Hi", "delay": 0.02, "size": 1, "key": key, "pipeline": "passthrough"}
        )
    )
    first = await receive(ws)
    await ws.send(json.dumps({"type": "cancel"}))
    frame = await receive(ws)
    while frame["type"] == "chunk":
        frame = await receive(ws)
    assert frame == {"type": "cancelled", "message_id": first["message_id"]}
    await wait_for_probe(live_url, key, ["started", "finally"])
    # The connection stays usable.
    await ws.send(json.dumps({"prompt": "again", "size": 50}))
    assert (await until_end(ws))[-1]["fullResponse"] == XML_TEXT


async def test_a_cancel_sent_right_after_its_prompt_stops_the_reply(
    live_url: str, ws: ClientConnection
) -> None:
    """The cancel arrives while the reply is still starting (no id to cancel yet): the
    reply is stopped as it starts, not run to its end after a "Nothing to cancel"."""
    await ws.send(json.dumps({"type": "cancel"}))
    assert (await receive(ws))["message"] == "Nothing to cancel"
    for _ in range(3):
        key = uuid.uuid4().hex
        prompt = {"prompt": "Hi", "delay": 0.02, "size": 1, "key": key, "pipeline": "passthrough"}
        await ws.send(json.dumps(prompt))
        await ws.send(json.dumps({"type": "cancel"}))
        frames = await until_end(ws)
        assert frames[-1]["type"] == "cancelled", frames[-3:]
        await wait_for_probe(live_url, key, ["started", "finally"])


async def test_every_cancel_frame_is_answered_even_when_its_reply_ended_first(
    live_url: str,
) -> None:
    """A cancel that lands after its reply completed (here the ``stopping`` hook takes
    half a second, and the reply ends meanwhile) is answered all the same, by an ``error``
    after the ``complete``: a client counting its cancels' answers (``streaming.js``)
    would otherwise take the next reply's frames for the cancelled one's."""
    async with connect(ws_url(live_url, "/ws/slow-stop/"), origin=live_url) as socket:
        prompt = {"prompt": "Hi", "delay": 0.02, "size": 10, "pipeline": "passthrough"}
        await socket.send(json.dumps(prompt))
        first = await receive(socket)
        await socket.send(json.dumps({"type": "cancel", "shown": len(first["content"])}))
        frames = await until_end(socket)
        answer = await receive(socket)
        await wait_for_probe(
            live_url, f"stop-{first['message_id']}", [f"shown {len(first['content'])}"]
        )
        # The hook runs for a cancel that came while the reply was starting, too (a reply
        # that outlasts the hook).
        await socket.send(json.dumps({**prompt, "delay": 0.3}))
        await socket.send(json.dumps({"type": "cancel", "shown": 0}))
        stopped = await until_end(socket)
        await wait_for_probe(live_url, f"stop-{stopped[-1]['message_id']}", ["shown 0"])
    assert frames[-1]["type"] == "complete"
    assert answer == {
        "type": "error",
        "code": "BAD_REQUEST",
        "message": "Nothing to cancel: the reply ended",
        "message_id": first["message_id"],
    }
    assert stopped[-1]["type"] == "cancelled"


async def test_a_disconnect_mid_reply_runs_the_sources_finally(live_url: str) -> None:
    key = uuid.uuid4().hex
    async with connect(ws_url(live_url, "/ws/scripted/"), origin=live_url) as socket:
        await socket.send(
            json.dumps(
                {"prompt": "Hi", "delay": 0.02, "size": 1, "key": key, "pipeline": "passthrough"}
            )
        )
        assert (await receive(socket))["type"] == "chunk"
    await wait_for_probe(live_url, key, ["started", "finally"])


async def test_an_upstream_error_keeps_the_text_and_ends_with_an_error_frame(
    ws: ClientConnection,
) -> None:
    await ws.send(
        json.dumps(
            {
                "prompt": "Hi",
                "fail": "upstream",
                "fail_after": 12,
                "size": 4,
                "pipeline": "passthrough",
            }
        )
    )
    frames = await until_end(ws)
    assert chunks_text(frames) == XML_REPLY[:48]
    error = frames[-1]
    assert error["type"] == "error" and error["code"] == "UPSTREAM_ERROR"
    assert error["message"] == "The upstream model failed" and error["message_id"]


async def test_an_unexpected_exception_is_an_error_frame_without_details(
    ws: ClientConnection,
) -> None:
    await ws.send(json.dumps({"prompt": "Hi", "fail": "crash"}))
    frames = await until_end(ws)
    assert frames[-1]["code"] == "INTERNAL_ERROR"
    assert "secret internal detail" not in json.dumps(frames)


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "BAD_REQUEST"),
        ("[1, 2]", "BAD_REQUEST"),
        ('"text"', "BAD_REQUEST"),
        ('{"type": "dance"}', "BAD_REQUEST"),
        ('{"type": 7}', "BAD_REQUEST"),
        ("{}", "BAD_REQUEST"),
        ('{"prompt": 42}', "BAD_REQUEST"),
        ('{"prompt": ""}', "BAD_REQUEST"),
        ('{"type": "prompt"}', "BAD_REQUEST"),
        ('{"prompt": "Hi", "pipeline": "nope"}', "UNKNOWN_PIPELINE"),
        (json.dumps({"prompt": "x" * 40_000}), "PROMPT_TOO_LARGE"),
        ('{"type": "cancel"}', "BAD_REQUEST"),
    ],
)
async def test_bad_frames_get_an_error_frame_and_the_connection_stays_usable(
    ws: ClientConnection, frame: str, code: str
) -> None:
    await ws.send(frame)
    error = await receive(ws)
    assert error["type"] == "error" and error["code"] == code and error["message"]
    await ws.send(json.dumps({"type": "ping"}))
    assert await receive(ws) == {"type": "pong"}


async def test_a_binary_frame_gets_an_error_frame(ws: ClientConnection) -> None:
    await ws.send(b"\x00\x01")
    error = await receive(ws)
    assert error["code"] == "BAD_REQUEST" and "Binary" in error["message"]


async def test_too_many_queued_prompts_are_refused(ws: ClientConnection) -> None:
    for _ in range(6):
        await ws.send(json.dumps({"prompt": "Hi", "delay": 0.2, "size": 1000}))
    errors: list[dict[str, Any]] = []
    completes = 0
    while completes + len(errors) < 6:
        frame = await receive(ws)
        if frame["type"] == "error":
            errors.append(frame)
        elif frame["type"] == "complete":
            completes += 1
    assert completes == 5  # one running + WS_MAX_PENDING (4) waiting
    assert [e["code"] for e in errors] == ["QUEUE_FULL"]


async def test_a_flood_closes_the_connection_with_4008(live_url: str) -> None:
    async with connect(ws_url(live_url, "/ws/scripted/"), origin=live_url) as socket:
        for _ in range(200):
            try:
                await socket.send(json.dumps({"type": "ping"}))
            except ConnectionClosed:
                break
        frames: list[dict[str, Any]] = []
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                frames.append(await receive(socket))
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4008
    assert frames[-1]["code"] == "RATE_LIMITED"


async def test_a_foreign_origin_is_refused(live_url: str) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(ws_url(live_url, "/ws/scripted/"), origin="http://evil.example"):
            pass
    assert refused.value.response.status_code == 403


async def test_check_permissions_refuses_the_handshake_with_403(live_url: str) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(ws_url(live_url, "/ws/denied/"), origin=live_url):
            pass
    assert refused.value.response.status_code == 403


@pytest.mark.parametrize("path", ["/ws/permissions-fail/", "/ws/owner-fails/"])
async def test_a_database_failing_under_a_handshake_hook_refuses_it_with_403(
    live_url: str, path: str
) -> None:
    """``check_permissions`` or ``get_owner`` failing on the database: the handshake is
    refused (the client retries), not a 500; the server serves the next socket."""
    with pytest.raises(InvalidStatus) as refused:
        async with connect(ws_url(live_url, path), origin=live_url):
            pass
    assert refused.value.response.status_code == 403
    async with connect(ws_url(live_url, "/ws/scripted/"), origin=live_url) as socket:
        await socket.send(json.dumps({"type": "ping"}))
        assert (await receive(socket))["type"] == "pong"


async def test_the_chat_consumer_streams_the_demo_models_text(live_url: str) -> None:
    async with connect(ws_url(live_url, "/ws/chat/"), origin=live_url) as socket:
        await socket.send(json.dumps({"prompt": "Hi there"}))
        frames = []
        while not frames or frames[-1]["type"] in {"chunk", "event"}:  # reasoning events
            frames.append(await receive(socket))
    assert frames[-1]["type"] == "complete"
    text = chunks_text(frames)
    assert text == frames[-1]["fullResponse"]
    assert "“Hi there”" in text and "<" not in text


# ------------------------------------------------------------- in-process communicator
@pytest.fixture
async def communicator() -> AsyncIterator[WebsocketCommunicator]:
    from .asgi import websocket_application

    client = WebsocketCommunicator(
        websocket_application, "/ws/scripted/", headers=[(b"origin", b"http://127.0.0.1")]
    )
    connected, _ = await client.connect(timeout=LIMIT)
    assert connected
    yield client
    await client.disconnect(timeout=LIMIT)


async def test_communicator_full_exchange(communicator: WebsocketCommunicator) -> None:
    frames = await ws_reply(communicator, "Hi", size=2)
    assert chunks_text(frames) == frames[-1]["fullResponse"] == XML_TEXT


async def test_communicator_cancel(communicator: WebsocketCommunicator) -> None:
    await communicator.send_json_to(
        {"prompt": "Hi", "delay": 0.02, "size": 1, "pipeline": "passthrough"}
    )
    first = await communicator.receive_json_from(timeout=LIMIT)
    await communicator.send_json_to({"type": "cancel"})
    frame = await communicator.receive_json_from(timeout=LIMIT)
    while frame["type"] == "chunk":
        frame = await communicator.receive_json_from(timeout=LIMIT)
    assert frame == {"type": "cancelled", "message_id": first["message_id"]}
    assert await communicator.receive_nothing(timeout=0.3)


async def test_communicator_bad_input(communicator: WebsocketCommunicator) -> None:
    await communicator.send_to(text_data="{oops")
    assert (await communicator.receive_json_from(timeout=LIMIT))["code"] == "BAD_REQUEST"
    await communicator.send_to(bytes_data=b"\xff")
    assert (await communicator.receive_json_from(timeout=LIMIT))["code"] == "BAD_REQUEST"


async def test_communicator_prompt_limit_follows_the_setting() -> None:
    from .asgi import websocket_application

    with override_settings(STREAMING={"MAX_PROMPT_LENGTH": 5}):
        client = WebsocketCommunicator(
            websocket_application, "/ws/scripted/", headers=[(b"origin", b"http://127.0.0.1")]
        )
        assert (await client.connect(timeout=LIMIT))[0]
        await client.send_json_to({"prompt": "123456"})
        error = await client.receive_json_from(timeout=LIMIT)
        await client.disconnect(timeout=LIMIT)
    assert error["code"] == "PROMPT_TOO_LARGE"


async def test_a_socket_does_not_listen_on_the_channel_layer() -> None:
    """A reply needs no channel layer: listening on one cost every socket a task and a
    queue, and with Channels' in-memory layer (the test project's) every connect then
    passed over every open socket's channel, which made opening N sockets cost N²."""
    from channels.layers import get_channel_layer

    from .asgi import websocket_application

    in_memory = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    with override_settings(CHANNEL_LAYERS=in_memory):
        layer = get_channel_layer()
        assert layer is not None
        listening = len(layer.channels)
        client = WebsocketCommunicator(
            websocket_application, "/ws/scripted/", headers=[(b"origin", b"http://127.0.0.1")]
        )
        connected, _ = await client.connect(timeout=LIMIT)
        assert connected
        await client.send_json_to({"type": "ping"})
        assert await client.receive_json_from(timeout=LIMIT) == {"type": "pong"}
        assert len(layer.channels) == listening
        await client.disconnect(timeout=LIMIT)


async def test_a_handler_that_fails_answers_its_frame_and_the_socket_stays() -> None:
    """A bug in one ``on_<type>`` (here a subclass's) is an ``INTERNAL_ERROR`` frame and a
    logged traceback, not a closed socket: the replies streaming on it go on."""
    from streaming.consumers import StreamConsumer

    class Failing(StreamConsumer):
        def stream(self, prompt: str, **params: Any) -> Any:
            return iter(["one ", "two"])

        async def on_boom(self, content: dict[str, Any]) -> None:
            raise RuntimeError("a bug")

    client = WebsocketCommunicator(
        Failing.as_asgi(), "/ws/failing/", headers=[(b"origin", b"http://127.0.0.1")]
    )
    connected, _ = await client.connect(timeout=LIMIT)
    assert connected
    try:
        await client.send_json_to({"type": "boom"})
        assert await client.receive_json_from(timeout=LIMIT) == {
            "type": "error",
            "code": "INTERNAL_ERROR",
            "message": "The server failed on this frame",
        }
        frames = await ws_reply(client, "Hi")
        assert frames[-1]["type"] == "complete"
        assert frames[-1]["fullResponse"] == "one two"
    finally:
        await client.disconnect(timeout=LIMIT)


async def test_a_stopping_hook_that_hangs_holds_the_stop_back_only_so_long(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A hook that hangs (the chat's, on a database that does not answer) is given up on
    after ``STOPPING_TIMEOUT``, logged, so that the reply is stopped and no longer paid."""
    from streaming import requests

    monkeypatch.setattr(requests, "STOPPING_TIMEOUT", 0.1)

    async def hangs(generation_id: str, owner: str, shown: int | None) -> None:
        await asyncio.sleep(LIMIT)

    started = asyncio.get_running_loop().time()
    await requests.call_stopping(hangs, "reply", "me", 3)
    assert asyncio.get_running_loop().time() - started < LIMIT / 2
    assert "stopping() failed for reply reply" in caplog.text
