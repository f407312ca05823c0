"""The ``useChat`` endpoints over a real daphne with the scripted model: the UI message
stream, stored conversations, resume, stop (the model's stream closes), ownership, bad
input, and the WebSocket transport's frames. tests/js runs the real AI SDK client."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from .conftest import probe, wait_for_probe
from .servers import daphne_server, sqlite_database
from .transport_views import XML_REPLY, XML_TEXT

API = "/sse/chat-ui"
LIMIT = 10.0


@pytest.fixture
def url(live_url: str) -> str:
    return live_url


@contextmanager
def browser(url: str) -> Iterator[httpx.Client]:
    """A client with a visitor's cookies (CSRF, a session with its owner token) and CSRF header."""
    with httpx.Client(base_url=url, timeout=LIMIT) as client:
        assert client.get("/visitor").status_code == 204
        client.headers["X-CSRFToken"] = client.cookies["csrftoken"]
        yield client


@pytest.fixture
def http(url: str) -> Iterator[httpx.Client]:
    with browser(url) as client:
        yield client


def body(chat_id: str, text: str = "Hello", **params: Any) -> dict[str, Any]:
    return {
        "id": chat_id,
        "trigger": "submit-message",
        "messageId": None,
        "messages": [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": text}]}],
        **params,
    }


def chunks_of(lines: list[str]) -> list[dict[str, Any]]:
    """The chunks of a UI message stream's ``data:`` lines; it must end with ``[DONE]``."""
    data = [line[6:] for line in lines if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    return [json.loads(item) for item in data[:-1]]


def text_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["delta"] for c in chunks if c["type"] == "text-delta")


def post(
    http: httpx.Client, payload: dict[str, Any]
) -> tuple[httpx.Response, list[dict[str, Any]]]:
    response = http.post(API, json=payload)
    assert response.status_code == 200, response.text
    return response, chunks_of(response.text.splitlines())


def messages_of(http: httpx.Client, conversation: str) -> list[tuple[str, str, str]]:
    """The conversation's stored messages (role, content, status), from its API."""
    response = http.get(f"/chat/conversations/{conversation}")
    assert response.status_code == 200, response.text
    return [(m["role"], m["content"], m["status"]) for m in response.json()["messages"]]


def generations_of(http: httpx.Client, conversation: str) -> list[str | None]:
    response = http.get(f"/chat/conversations/{conversation}")
    return [m["generation"] for m in response.json()["messages"]]


def key() -> str:
    return uuid.uuid4().hex


def test_the_reply_as_a_ui_message_stream_and_stored(
    http: httpx.Client,
) -> None:
    chat_id = str(uuid.uuid4())
    response, chunks = post(http, body(chat_id, "Hi there", key=key(), size=2))
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-conversation-id"] == chat_id
    start, finish = chunks[0], chunks[-1]
    assert start["type"] == "start" and len(start["messageId"]) == 32
    assert finish == {"type": "finish", "finishReason": "stop"}
    assert text_of(chunks) == XML_TEXT
    reasoning = "".join(c["delta"] for c in chunks if c["type"] == "reasoning-delta")
    assert reasoning == "The user greets me; secret plan."
    kinds = [c["type"] for c in chunks if not c["type"].endswith("-delta")]
    assert kinds == [
        "start",
        "reasoning-start",
        "reasoning-end",
        "text-start",
        "text-end",
        "finish",
    ]
    assert "<thought>" not in response.text and "<text>" not in response.text
    assert messages_of(http, chat_id) == [
        ("user", "Hi there", "complete"),
        ("assistant", XML_TEXT, "complete"),
    ]
    assert generations_of(http, chat_id)[-1] == start["messageId"]


def test_a_chat_id_that_is_no_uuid_names_the_owners_own_conversation(
    http: httpx.Client, url: str
) -> None:
    chat_id = "my-chat-" + key()
    response, _ = post(http, body(chat_id, key=key()))
    mine = response.headers["x-conversation-id"]
    assert uuid.UUID(mine)
    again, _ = post(http, body(chat_id, key=key()))
    assert again.headers["x-conversation-id"] == mine
    with browser(url) as other:
        theirs, _ = post(other, body(chat_id, key=key()))
    assert theirs.headers["x-conversation-id"] != mine


def test_history_comes_from_the_database(http: httpx.Client) -> None:
    chat_id, first, second = str(uuid.uuid4()), key(), key()
    post(http, body(chat_id, "one", key=first))
    forged = body(chat_id, "two", key=second)
    forged["messages"] = [
        {"id": "x", "role": "assistant", "parts": [{"type": "text", "text": "forged"}]},
        *forged["messages"],
    ]
    post(http, forged)
    assert probe(http, second) == [
        "prompt:two",
        f"history:user=one|assistant={XML_TEXT}",
        "started",
        "finally",
    ]


def test_regenerate_runs_the_last_turn_again(
    http: httpx.Client,
) -> None:
    chat_id, again = str(uuid.uuid4()), key()
    post(http, body(chat_id, "one", key=key()))
    post(http, body(chat_id, "two", key=key()))
    post(
        http,
        {
            "id": chat_id,
            "trigger": "regenerate-message",
            "messageId": "m",
            "messages": [],
            "key": again,
        },
    )
    assert probe(http, again)[:2] == ["prompt:two", f"history:user=one|assistant={XML_TEXT}"]
    assert [role for role, _, _ in messages_of(http, chat_id)] == [
        "user",
        "assistant",
        "user",
        "assistant",
    ]


def test_stop_cancels_the_reply_and_closes_the_models_stream(
    http: httpx.Client,
) -> None:
    chat_id, probe_key = str(uuid.uuid4()), key()
    lines: list[str] = []
    with http.stream("POST", API, json=body(chat_id, key=probe_key, delay=0.05)) as response:
        assert response.status_code == 200
        reading = response.iter_lines()
        for line in reading:
            lines.append(line)
            if '"text-delta"' in line:
                break
        stop = http.delete(f"{API}/{chat_id}/stream")
        assert stop.status_code == 204
        lines += list(reading)
    chunks = chunks_of(lines)
    assert chunks[-1] == {"type": "abort", "reason": "The reply was cancelled"}
    assert chunks[-2]["type"] == "text-end"
    wait_for_probe(http, probe_key, ["prompt:Hello", "history:", "started", "finally"])
    partial = text_of(chunks)
    assert partial and XML_TEXT.startswith(partial) and partial != XML_TEXT
    assert messages_of(http, chat_id)[-1] == ("assistant", partial, "stopped")
    assert http.get(f"{API}/{chat_id}/stream").status_code == 204
    assert http.delete(f"{API}/{chat_id}/stream").status_code == 204  # nothing to stop


def test_resume_replays_the_running_reply_from_its_start(http: httpx.Client) -> None:
    chat_id = str(uuid.uuid4())
    first: list[str] = []
    with http.stream("POST", API, json=body(chat_id, key=key(), delay=0.03)) as response:
        for line in response.iter_lines():
            first.append(line)
            if '"text-delta"' in line:
                break  # the connection drops; the reply runs on
    resumed = http.get(f"{API}/{chat_id}/stream")
    assert resumed.status_code == 200
    assert resumed.headers["x-vercel-ai-ui-message-stream"] == "v1"
    chunks = chunks_of(resumed.text.splitlines())
    original_start = chunks_of([*first, "data: [DONE]"])[0]
    assert chunks[0] == original_start
    assert text_of(chunks) == XML_TEXT
    assert http.get(f"{API}/{chat_id}/stream").status_code == 204  # over now


def test_a_failing_model_ends_with_an_error_chunk(
    http: httpx.Client,
) -> None:
    chat_id = str(uuid.uuid4())
    _, chunks = post(http, body(chat_id, key=key(), fail="upstream", fail_after=20))
    assert chunks[-1] == {"type": "error", "errorText": "The upstream model failed"}
    assert messages_of(http, chat_id)[-1][2] == "failed"
    _, chunks = post(http, body(str(uuid.uuid4()), key=key(), fail="crash", fail_after=20))
    assert chunks[-1] == {"type": "error", "errorText": "The model stream failed"}


def test_nobody_takes_or_probes_the_conversation_another_owners_chat_id_names(
    http: httpx.Client, url: str
) -> None:
    """Derived ids are version-5 UUIDs, and one names itself only for its owner: a
    stranger who sends one (computed from the owner and a chat id, or seen) gets a
    conversation derived for them. Before, the id was theirs to create ahead of its
    owner, whose chat was then NOT_FOUND for good, and a 404 told them it existed."""
    from django.contrib.sessions.backends.signed_cookies import SessionStore

    from streaming.chat_turns import CHAT_NAMESPACE
    from streaming.owners import OWNER_SESSION_KEY

    token = SessionStore(http.cookies["sessionid"]).load()[OWNER_SESSION_KEY]
    chat_id = "support-" + key()
    ahead = str(uuid.uuid5(CHAT_NAMESPACE, f"session:{token}\n{chat_id}"))
    with browser(url) as stranger:
        taken, _ = post(stranger, body(ahead, "Mine now", key=key()))
        assert taken.headers["x-conversation-id"] != ahead
        response, _ = post(http, body(chat_id, "Hi", key=key()))
        assert response.headers["x-conversation-id"] == ahead  # the owner's, as derived
        again, _ = post(stranger, body(ahead, "And now?", key=key()))
        assert again.headers["x-conversation-id"] == taken.headers["x-conversation-id"]
        assert stranger.get(f"/chat/conversations/{ahead}").status_code == 404
    assert [role for role, _, _ in messages_of(http, ahead)] == ["user", "assistant"]
    # The owner may name it by its id too.
    by_id, _ = post(http, body(ahead, "Again", key=key()))
    assert by_id.headers["x-conversation-id"] == ahead


def test_another_visitor_cannot_continue_resume_or_stop_a_chat(
    http: httpx.Client, url: str
) -> None:
    chat_id = str(uuid.uuid4())
    with http.stream("POST", API, json=body(chat_id, key=key(), delay=0.02)) as response:
        with browser(url) as stranger:
            refused = stranger.post(API, json=body(chat_id, key=key()))
            assert refused.status_code == 404
            assert refused.json() == {
                "error": "No such conversation",
                "code": "NOT_FOUND",
            }
            assert stranger.get(f"{API}/{chat_id}/stream").status_code == 204
            assert stranger.delete(f"{API}/{chat_id}/stream").status_code == 204
        chunks = chunks_of(list(response.iter_lines()))
    assert chunks[-1]["type"] == "finish"  # the stranger's DELETE stopped nothing
    assert text_of(chunks) == XML_TEXT


def test_a_second_message_while_a_reply_runs_is_refused(http: httpx.Client) -> None:
    chat_id = str(uuid.uuid4())
    with http.stream("POST", API, json=body(chat_id, key=key(), delay=0.02)) as response:
        reading = response.iter_lines()
        next(reading)
        busy = http.post(API, json=body(chat_id, "again", key=key()))
        assert busy.status_code == 409
        assert busy.json() == {
            "error": "A reply is still running in this conversation; wait for it or stop it",
            "code": "CONVERSATION_BUSY",
        }
        list(reading)
    post(http, body(chat_id, "again", key=key()))


def test_csrf_is_required(url: str) -> None:
    with browser(url) as client:
        del client.headers["X-CSRFToken"]
        assert client.post(API, json=body(str(uuid.uuid4()))).status_code == 403
        assert client.delete(f"{API}/{uuid.uuid4()}/stream").status_code == 403


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({}, "BAD_REQUEST"),
        ({"id": "", "trigger": "submit-message", "messages": []}, "BAD_REQUEST"),
        ({"id": "x" * 201, "trigger": "submit-message", "messages": []}, "BAD_REQUEST"),
        ({"id": "x", "trigger": "resume", "messages": []}, "BAD_REQUEST"),
        ({"id": "x", "trigger": "submit-message", "messages": []}, "BAD_REQUEST"),
        ({"id": "x", "trigger": "submit-message", "messages": "hello"}, "BAD_REQUEST"),
        ({"id": "x", "trigger": "submit-message", "messages": [{"role": "user"}]}, "BAD_REQUEST"),
        (
            {
                "id": "x",
                "trigger": "submit-message",
                "messages": [{"role": "assistant", "parts": []}],
            },
            "BAD_REQUEST",
        ),
        (body("x", " "), "BAD_REQUEST"),
        (body("x", "a" * 40_000), "PROMPT_TOO_LARGE"),
        (body("x", pipeline="nope"), "UNKNOWN_PIPELINE"),
        ({"id": "new-chat", "trigger": "regenerate-message", "messages": []}, "NOT_FOUND"),
        ({**body("x"), "trigger": ["submit-message"]}, "BAD_REQUEST"),
        ({**body("x"), "trigger": {"a": 1}}, "BAD_REQUEST"),
        (body("a/b"), "BAD_REQUEST"),  # no chat/ui/<id>/stream could resume or stop it
        (body("."), "BAD_REQUEST"),
        (body(".."), "BAD_REQUEST"),
        (body("chat\u00e9"), "BAD_REQUEST"),
    ],
)
def test_bad_requests_are_refused_with_a_reason(
    http: httpx.Client, payload: dict[str, Any], code: str
) -> None:
    if payload.get("id") == "new-chat":
        payload = {**payload, "id": key()}
    response = http.post(API, json=payload)
    assert response.status_code in (400, 404)
    assert response.json()["code"] == code


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", API, "POST, OPTIONS"),
        ("DELETE", API, "POST, OPTIONS"),
        ("POST", f"{API}/chat/stream", "GET, DELETE, OPTIONS"),
        ("PUT", f"{API}/chat/stream", "GET, DELETE, OPTIONS"),
    ],
)
def test_each_url_takes_its_own_methods(
    http: httpx.Client, method: str, path: str, allowed: str
) -> None:
    """``chat/ui`` takes a new message, ``chat/ui/<id>/stream`` a resume or a stop (a POST
    there started a reply in the body's chat, not the path's)."""
    response = http.request(method, path, json=body("other"))
    assert response.status_code == 405
    assert response.headers["Allow"] == allowed
    assert response.json()["code"] == "METHOD_NOT_ALLOWED"


@pytest.mark.parametrize(
    "parts",
    [
        [{"type": "file", "url": "data:,x", "mediaType": "text/plain"}],
        [{"type": "text", "text": " "}],
    ],
)
def test_a_new_message_without_text_says_so(http: httpx.Client, parts: list[Any]) -> None:
    payload = body(key())
    payload["messages"][0]["parts"] = parts
    response = http.post(API, json=payload)
    assert response.status_code == 400
    assert response.json() == {
        "error": "The user's new message has no text (no 'text' part)",
        "code": "BAD_REQUEST",
    }


def test_a_body_that_is_no_json_object(http: httpx.Client) -> None:
    response = http.post(API, content=b"[1, 2]", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["code"] == "BAD_REQUEST"


# ---------------------------------------------------------------- WebSocket transport
def ws_url(url: str) -> str:
    return url.replace("http://", "ws://") + "/ws/chat-ui/"


@pytest.fixture
def cookie(http: httpx.Client) -> dict[str, str]:
    """The handshake headers of a page's socket: its session cookie (its owner)."""
    return {"Cookie": "; ".join(f"{name}={value}" for name, value in http.cookies.items())}


async def frame(socket: ClientConnection) -> dict[str, Any]:
    return dict(json.loads(await asyncio.wait_for(socket.recv(), LIMIT)))


async def until_end(socket: ClientConnection, request_id: str) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    while not frames or frames[-1]["type"] not in {"end", "error", "no-active"}:
        received = await frame(socket)
        if received["requestId"] == request_id:
            frames.append(received)
    return frames


def send_frame(request_id: str, chat_id: str, text: str = "Hello", **body: Any) -> str:
    return json.dumps(
        {
            "type": "send",
            "requestId": request_id,
            "id": chat_id,
            "trigger": "submit-message",
            "messageId": None,
            "messages": [{"id": "u", "role": "user", "parts": [{"type": "text", "text": text}]}],
            "headers": {},
            "body": body,
        }
    )


async def test_ws_send_abort_resume_and_no_active(url: str, cookie: dict[str, str]) -> None:
    chat_id, probe_key = str(uuid.uuid4()), key()
    async with connect(ws_url(url), origin=url, additional_headers=cookie) as socket:
        await socket.send(send_frame("r1", chat_id, key=probe_key, delay=0.05))
        assert await frame(socket) == {"type": "start", "requestId": "r1"}
        first = await frame(socket)
        assert first["sequence"] == 0 and first["chunk"]["type"] == "start"
        await socket.send(json.dumps({"type": "abort", "requestId": "r1"}))
        rest = await until_end(socket, "r1")
        assert [f["sequence"] for f in rest[:-1]] == list(range(1, len(rest)))
        assert rest[-2]["chunk"]["type"] == "abort"
        assert rest[-1] == {"type": "end", "requestId": "r1"}
        await socket.send(
            json.dumps(
                {"type": "resume", "requestId": "r2", "id": chat_id, "headers": {}, "body": {}}
            )
        )
        assert await frame(socket) == {"type": "no-active", "requestId": "r2"}
    with httpx.Client(base_url=url) as client:
        wait_for_probe(client, probe_key, ["prompt:Hello", "history:", "started", "finally"])


async def test_ws_resume_after_last_sequence_and_multiplexing(
    url: str, cookie: dict[str, str]
) -> None:
    chat_a, chat_b = str(uuid.uuid4()), str(uuid.uuid4())
    async with connect(ws_url(url), origin=url, additional_headers=cookie) as socket:
        await socket.send(send_frame("a", chat_a, key=key(), delay=0.02))
        await socket.send(send_frame("b", chat_b, key=key(), delay=0.02))
        frames: dict[str, list[dict[str, Any]]] = {"a": [], "b": []}
        while len(frames["a"]) < 6:
            received = await frame(socket)
            frames[received["requestId"]].append(received)
    # The socket is gone; both replies run on. Resume "a" after sequence 3, "b" whole.
    async with connect(ws_url(url), origin=url, additional_headers=cookie) as socket:
        await socket.send(
            json.dumps(
                {"type": "resume", "requestId": "a2", "id": chat_a, "lastSequence": 3,
                 "headers": {}, "body": {}}
            )
        )  # fmt: skip
        await socket.send(
            json.dumps(
                {"type": "resume", "requestId": "b2", "id": chat_b, "headers": {}, "body": {}}
            )
        )
        answers: dict[str, list[dict[str, Any]]] = {"a2": [], "b2": []}
        while any(not got or got[-1]["type"] != "end" for got in answers.values()):
            received = await frame(socket)
            answers[received["requestId"]].append(received)
        a2, b2 = answers["a2"], answers["b2"]
    assert a2[0] == {"type": "start", "requestId": "a2"}
    assert [f["sequence"] for f in a2[1:-1]] == list(range(4, 4 + len(a2) - 2))
    before = [f["chunk"] for f in frames["a"][1:5]]  # sequences 0 to 3
    assert text_of(before + [f["chunk"] for f in a2[1:-1]]) == XML_TEXT
    assert [f["sequence"] for f in b2[1:-1]] == list(range(len(b2) - 2))
    assert text_of([f["chunk"] for f in b2[1:-1]]) == XML_TEXT


async def test_ws_bad_frames_are_answered_and_the_socket_stays(
    url: str, cookie: dict[str, str]
) -> None:
    async with connect(ws_url(url), origin=url, additional_headers=cookie) as socket:
        await socket.send(json.dumps({"type": "send", "requestId": "x", "id": "c"}))
        assert (await frame(socket))["type"] == "error"
        for request_id in (None, "", "r" * 201):  # each of a reply's frames would carry it
            sent = {**json.loads(send_frame("x", str(uuid.uuid4()))), "requestId": request_id}
            await socket.send(json.dumps(sent))
            assert await frame(socket) == {
                "type": "error",
                "requestId": "",
                "errorText": "'requestId' must be a string of 1 to 200 characters",
            }
        await socket.send(json.dumps({"type": "ping", "requestId": "p" * 201}))
        assert (await frame(socket))["requestId"] == ""
        await socket.send(
            json.dumps({"type": "resume", "requestId": "r", "id": "c", "lastSequence": -1})
        )
        assert (await frame(socket))["errorText"] == "'lastSequence' must be a non-negative integer"
        await socket.send(
            json.dumps({"type": "prompt", "prompt": "old protocol", "requestId": "p"})
        )
        assert await frame(socket) == {
            "type": "error",
            "requestId": "p",
            "errorText": "Unknown message type 'prompt'",
        }
        for kind in ("ping", "cancel"):  # the chat consumer's frames, named as they are
            await socket.send(json.dumps({"type": kind, "requestId": kind}))
            assert await frame(socket) == {
                "type": "error",
                "requestId": kind,
                "errorText": f"Unknown message type {kind!r}",
            }
        await socket.send(json.dumps({"type": "ping", "requestId": {"x": 1}}))
        assert (await frame(socket))["requestId"] == ""
        bad_trigger = {**json.loads(send_frame("t", key())), "trigger": ["submit-message"]}
        await socket.send(json.dumps(bad_trigger))
        assert await frame(socket) == {
            "type": "error",
            "requestId": "t",
            "errorText": "'trigger' must be 'submit-message' or 'regenerate-message'",
        }
        await socket.send(send_frame("s", str(uuid.uuid4()), self=1))  # as over HTTP
        assert await frame(socket) == {
            "type": "error",
            "requestId": "s",
            "errorText": "'self' cannot be a parameter's name",
        }
        await socket.send(send_frame("ok", str(uuid.uuid4()), key=key()))
        frames = await until_end(socket, "ok")
        assert frames[-1]["type"] == "end"


async def test_ws_requests_at_once_are_limited(url: str, cookie: dict[str, str]) -> None:
    async with connect(ws_url(url), origin=url, additional_headers=cookie) as socket:
        for n in range(5):  # WS_MAX_PENDING is 4
            await socket.send(send_frame(f"r{n}", str(uuid.uuid4()), key=key(), delay=0.05))
        refused = None
        while refused is None:
            received = await frame(socket)
            if received["type"] == "error":
                refused = received
        assert refused == {
            "type": "error",
            "requestId": "r4",
            "errorText": "Too many requests at once on this socket",
        }


async def test_ws_abort_right_after_send_stops_the_reply_as_it_starts(
    url: str, cookie: dict[str, str]
) -> None:
    probe_key = key()
    async with connect(ws_url(url), origin=url, additional_headers=cookie) as socket:
        await socket.send(send_frame("r", str(uuid.uuid4()), key=probe_key, delay=0.05))
        await socket.send(json.dumps({"type": "abort", "requestId": "r"}))
        frames = await until_end(socket, "r")
    assert frames[-1] == {"type": "end", "requestId": "r"}
    assert frames[-2]["chunk"] == {"type": "abort", "reason": "The reply was cancelled"}
    assert text_of([f["chunk"] for f in frames[1:-1]]) != XML_TEXT
    # The model's stream never started, or it was closed.
    with httpx.Client(base_url=url) as client:
        deadline = asyncio.get_running_loop().time() + LIMIT
        while probe(client, probe_key)[2:] == ["started"]:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
        assert probe(client, probe_key)[2:] in ([], ["started", "finally"])


@contextmanager
def small_replies_visitor() -> Iterator[tuple[str, dict[str, str]]]:
    """A daphne whose ``MAX_REPLY_CHARS`` is 400 (``tests.settings_small_replies``), and the
    ``Cookie`` header of a visitor of it."""
    env = {"DJANGO_SETTINGS_MODULE": "tests.settings_small_replies"}
    with (
        sqlite_database() as database,
        daphne_server("tests.asgi:application", {**env, **database}) as base,
    ):
        with browser(base) as client:
            cookie = {"Cookie": "; ".join(f"{k}={v}" for k, v in client.cookies.items())}
        yield base, cookie


async def resumes_then_one_more(
    socket: ClientConnection, chat_id: str, request_ids: str, last: str
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """Resume chat ``chat_id`` on ``socket`` once per request id at once, each read to its
    end, then once more (``last``): the frames of each, and the answer to the last."""
    for request_id in request_ids:
        await socket.send(json.dumps({"type": "resume", "requestId": request_id, "id": chat_id}))
    resumed: dict[str, list[dict[str, Any]]] = {request_id: [] for request_id in request_ids}
    while any(not got or got[-1]["type"] != "end" for got in resumed.values()):
        received = await frame(socket)
        resumed[received["requestId"]].append(received)
    await socket.send(json.dumps({"type": "resume", "requestId": last, "id": chat_id}))
    return resumed, await frame(socket)


async def test_ws_resumes_of_one_socket_resend_at_most_about_max_reply_chars() -> None:
    """As on the chat's socket: past ``MAX_REPLY_CHARS`` (400 here) of text resent by its
    resumes, a socket's next resume is refused; a reply here is 159 characters."""
    with small_replies_visitor() as (base, cookie):
        chat_id = str(uuid.uuid4())
        slow = {"key": key(), "delay": 0.01, "size": 1, "pipeline": "passthrough"}
        async with (
            connect(ws_url(base), origin=base, additional_headers=cookie) as first,
            connect(ws_url(base), origin=base, additional_headers=cookie) as second,
        ):
            await first.send(send_frame("r", chat_id, **slow))
            assert await frame(first) == {"type": "start", "requestId": "r"}
            resumed, refused = await resumes_then_one_more(second, chat_id, "abc", "d")
    for request_id, frames in resumed.items():
        assert text_of([f["chunk"] for f in frames[1:-1]]) == XML_REPLY, request_id
    assert refused["type"] == "error" and refused["requestId"] == "d"
    assert "open a new one to resume more" in refused["errorText"]


async def test_ws_resumes_count_the_reasoning_they_resend() -> None:
    """A reply that is mostly reasoning (300 characters of it, "Ok." of text; the chat's
    own socket and model): two resumes resend it twice, past ``MAX_REPLY_CHARS`` (400
    here), so the next is refused. Counting its text alone, they would not be."""
    with small_replies_visitor() as (base, cookie):
        chat_id = str(uuid.uuid4())
        url = base.replace("http://", "ws://") + "/ws/chat/ui/"
        async with (
            connect(url, origin=base, additional_headers=cookie) as first,
            connect(url, origin=base, additional_headers=cookie) as second,
        ):
            await first.send(send_frame("r", chat_id, "think: a while"))
            assert await frame(first) == {"type": "start", "requestId": "r"}
            resumed, refused = await resumes_then_one_more(second, chat_id, "ab", "c")
    for frames in resumed.values():
        chunks = [f["chunk"] for f in frames if f["type"] == "chunk"]
        reasoning = [c["delta"] for c in chunks if c["type"] == "reasoning-delta"]
        assert "".join(reasoning) == "Hmm. " * 60
    assert refused["type"] == "error" and refused["requestId"] == "c"
    assert "open a new one to resume more" in refused["errorText"]
