"""Replies stored in their conversations, over real sockets, on SQLite and PostgreSQL.

Every transport takes ``conversation`` (absent: a new one) and ``regenerate``; the model
gets the stored turns; the user's message is stored at the start and the reply's at the
end with its status and the text so far; SSE says the conversation in
``X-Conversation-Id``, the WebSocket's last frames in ``conversation``. On PostgreSQL, no
database connection stays open while the model streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from streaming.sources import DemoModel

from .conftest import ChatServer

API = "/chat/conversations"


class Browser:
    """One visitor with its cookies: SSE requests, the API, and a WebSocket."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = httpx.Client(base_url=url, timeout=20)
        self.client.get("/visitor")

    @property
    def headers(self) -> dict[str, str]:
        return {"X-CSRFToken": self.client.cookies["csrftoken"]}

    def post(self, **body: Any) -> httpx.Response:
        return self.client.post("/chat/stream", json=body, headers=self.headers)

    def events(self, response: httpx.Response) -> list[tuple[str, Any, str]]:
        """``(event, data, id)`` of each message of an SSE body."""
        out = []
        for block in response.text.split("\n\n"):
            fields = dict(
                line.split(": ", 1)
                for line in block.splitlines()
                if ": " in line and line[0] != ":"
            )
            if "data" in fields:
                out.append(
                    (
                        fields.get("event", "message"),
                        json.loads(fields["data"]),
                        fields.get("id", ""),
                    )
                )
        return out

    def conversation(self, conversation_id: str) -> dict[str, Any]:
        response = self.client.get(f"{API}/{conversation_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def websocket(self) -> Any:
        cookies = "; ".join(f"{k}={v}" for k, v in self.client.cookies.items())
        return connect(
            self.url.replace("http", "ws") + "/ws/chat/",
            origin=self.url,
            additional_headers={"Cookie": cookies},
        )


def text_of(events: list[tuple[str, Any, str]]) -> str:
    return "".join(
        data["chunk"] for event, data, _ in events if event == "message" and "chunk" in data
    )


def demo_text(prompt: str, history: list[dict[str, str]] | None = None) -> str:
    reply = DemoModel(xml=True).reply(prompt, history)
    return reply[reply.index("<text>") + 6 : reply.index("</text>")]


def demo_thought(prompt: str, history: list[dict[str, str]] | None = None) -> str:
    reply = DemoModel(xml=True).reply(prompt, history)
    return reply[reply.index("<thought>") + 9 : reply.index("</thought>")]


@pytest.fixture
def browser(chat_server: ChatServer) -> Iterator[Browser]:
    made = Browser(chat_server.url)
    yield made
    made.client.close()


async def frames_until_end(socket: ClientConnection) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    while not frames or frames[-1]["type"] not in {"complete", "error", "cancelled"}:
        frames.append(json.loads(await socket.recv()))
    return frames


def test_an_sse_reply_starts_a_conversation_and_is_stored(browser: Browser) -> None:
    response = browser.post(prompt="What is SSE?")
    assert response.status_code == 200
    events = browser.events(response)
    assert events[-1][1] == {"done": True}
    conversation_id = response.headers["X-Conversation-Id"]
    generation = events[-1][2].split(":")[0]
    stored = browser.conversation(conversation_id)
    assert stored["title"] == "What is SSE?"
    assert stored["running"] is None
    user, assistant = stored["messages"]
    assert (user["role"], user["content"], user["status"], user["generation"]) == (
        "user", "What is SSE?", "complete", None,
    )  # fmt: skip
    assert assistant["role"] == "assistant" and assistant["status"] == "complete"
    assert assistant["content"] == text_of(events) == demo_text("What is SSE?")
    assert assistant["reasoning"] == demo_thought("What is SSE?")
    assert assistant["generation"] == generation
    assert [c["id"] for c in browser.client.get(API).json()["conversations"]] == [conversation_id]


def test_the_reasoning_streams_as_named_events(browser: Browser) -> None:
    events = browser.events(browser.post(prompt="Think first"))
    reasoning = [data for event, data, _ in events if event == "reasoning"]
    assert reasoning and all(set(data) == {"text"} for data in reasoning)
    assert "".join(data["text"] for data in reasoning) == demo_thought("Think first")


def test_the_second_turn_is_sent_the_stored_first_one(browser: Browser) -> None:
    first = browser.post(prompt="First question")
    conversation_id = first.headers["X-Conversation-Id"]
    second = browser.post(prompt="Second question", conversation=conversation_id)
    assert second.headers["X-Conversation-Id"] == conversation_id
    history = [
        {"role": "user", "content": "First question"},
        {"role": "assistant", "content": demo_text("First question")},
    ]
    assert text_of(browser.events(second)) == demo_text("Second question", history)
    assert "Before that you wrote “First question”" in text_of(browser.events(second))
    stored = browser.conversation(conversation_id)
    assert [m["role"] for m in stored["messages"]] == ["user", "assistant"] * 2
    assert stored["title"] == "First question"


def test_a_get_stream_takes_the_conversation_in_the_query(browser: Browser) -> None:
    created = browser.client.post(API, json={"title": "Mine"}, headers=browser.headers).json()
    response = browser.client.get(
        "/chat/stream", params={"prompt": "Hi", "conversation": created["id"]}
    )
    assert response.headers["X-Conversation-Id"] == created["id"]
    stored = browser.conversation(created["id"])
    assert stored["title"] == "Mine"  # a title given stays
    assert stored["messages"][0]["content"] == "Hi"


async def test_the_websocket_reply_is_stored_and_its_frames_carry_the_conversation(
    browser: Browser,
) -> None:
    async with browser.websocket() as socket:
        await socket.send(json.dumps({"type": "prompt", "prompt": "Over the socket"}))
        frames = await frames_until_end(socket)
        conversation_id = frames[-1]["conversation"]
        await socket.send(
            json.dumps({"type": "prompt", "prompt": "Again", "conversation": conversation_id})
        )
        second = await frames_until_end(socket)
        await socket.send(
            json.dumps({"type": "prompt", "regenerate": True, "conversation": conversation_id})
        )
        again = await frames_until_end(socket)
    assert again[-1]["type"] == "complete" and again[-1]["conversation"] == conversation_id
    assert again[-1]["message_id"] != second[-1]["message_id"]
    assert frames[-1]["type"] == "complete"
    assert second[-1]["type"] == "complete" and second[-1]["conversation"] == conversation_id
    reasoning = [f for f in frames if f["type"] == "event" and f["name"] == "reasoning"]
    assert "".join(f["data"]["text"] for f in reasoning) == demo_thought("Over the socket")
    stored = browser.conversation(conversation_id)
    contents = [m["content"] for m in stored["messages"]]
    assert contents[0] == "Over the socket" and contents[2] == "Again"
    assert contents[1] == frames[-1]["fullResponse"]
    assert "Before that you wrote “Over the socket”" in contents[3]
    assert len(contents) == 4  # the regenerated reply replaced the last one
    assert stored["messages"][3]["generation"] == again[-1]["message_id"]


async def test_a_stopped_reply_keeps_what_it_said(
    browser: Browser, chat_server: ChatServer
) -> None:
    async with browser.websocket() as socket:
        await socket.send(json.dumps({"type": "prompt", "prompt": "slow: talk"}))
        frames = [json.loads(await socket.recv())]
        while sum(f["type"] == "chunk" for f in frames) < 3:
            frames.append(json.loads(await socket.recv()))
        await socket.send(json.dumps({"type": "cancel"}))
        frames += await frames_until_end(socket)
    assert frames[-1]["type"] == "cancelled"
    said = "".join(f["content"] for f in frames if f["type"] == "chunk")
    stored = browser.conversation(frames[-1]["conversation"])
    reply = stored["messages"][-1]
    assert reply["status"] == "stopped"
    assert reply["content"].startswith(said) and reply["content"].startswith("word0 word1")
    assert stored["running"] is None


def chunk_texts(frames: list[dict[str, Any]]) -> list[str]:
    return [f["content"] for f in frames if f["type"] == "chunk"]


async def test_a_stopped_reply_is_stored_as_its_client_showed_it_over_the_socket(
    browser: Browser,
) -> None:
    """``shown`` on the cancel frame: the characters the client had shown (three chunks;
    three more came meanwhile, unshown). The reply is stored cut there, not with the text
    the model wrote while the stop travelled."""
    async with browser.websocket() as socket:
        await socket.send(json.dumps({"type": "prompt", "prompt": "slow: emoji"}))
        frames = [json.loads(await socket.recv())]
        while len(chunk_texts(frames)) < 6:
            frames.append(json.loads(await socket.recv()))
        shown = "".join(chunk_texts(frames)[:3])
        await socket.send(json.dumps({"type": "cancel", "shown": "3"}))
        refused = json.loads(await socket.recv())
        while refused["type"] == "chunk":  # the reply goes on: the bad frame stopped nothing
            refused = json.loads(await socket.recv())
        await socket.send(json.dumps({"type": "cancel", "shown": len(shown)}))
        frames += await frames_until_end(socket)
    assert refused["type"] == "error" and "'shown' must be" in refused["message"]
    assert frames[-1]["type"] == "cancelled"
    assert "🙂" in shown and len("".join(chunk_texts(frames))) > len(shown)
    reply = browser.conversation(frames[-1]["conversation"])["messages"][-1]
    assert (reply["content"], reply["status"]) == (shown, "stopped")


def test_a_stopped_reply_is_stored_as_its_client_showed_it_over_sse(browser: Browser) -> None:
    """``DELETE ?id=…&shown=N``, as the JavaScript client sends it; a bad ``shown`` is a
    400 that stops nothing."""
    with browser.client.stream(
        "POST", "/chat/stream", json={"prompt": "slow: emoji"}, headers=browser.headers
    ) as response:
        conversation_id = response.headers["X-Conversation-Id"]
        lines = response.iter_lines()
        chunks: list[str] = []
        while len(chunks) < 6:
            line = next(lines)
            if line.startswith("id: "):
                generation = line[4:].split(":")[0]
            elif line.startswith("data: ") and '"chunk"' in line:
                chunks.append(json.loads(line[6:])["chunk"])
        shown = "".join(chunks[:3])
        for bad in ("-1", "1.5", "", "9" * 19, "٣"):
            refused = browser.client.delete(
                "/chat/stream", params={"id": generation, "shown": bad}, headers=browser.headers
            )
            assert refused.status_code == 400 and "'shown' must be" in refused.json()["error"]
        assert browser.conversation(conversation_id)["running"] == generation
        stopped = browser.client.delete(
            "/chat/stream",
            params={"id": generation, "shown": str(len(shown))},
            headers=browser.headers,
        )
        assert stopped.status_code == 204
        rest = list(lines)
    assert any('"code":"ABORTED"' in line for line in rest)
    reply = browser.conversation(conversation_id)["messages"][-1]
    assert (reply["content"], reply["status"]) == (shown, "stopped")


def test_a_failed_reply_keeps_what_it_said(browser: Browser) -> None:
    response = browser.post(prompt="fail: now")
    events = browser.events(response)
    assert events[-1][1]["code"] == "UPSTREAM_ERROR"
    reply = browser.conversation(response.headers["X-Conversation-Id"])["messages"][-1]
    assert reply["status"] == "failed"
    assert reply["content"] == text_of(events) == "".join(f"word{n} " for n in range(30))


def test_nul_characters_are_stored_as_replacement_characters(browser: Browser) -> None:
    """PostgreSQL's text columns refuse NUL: in a prompt, a reply and a title it becomes
    U+FFFD on both databases, not a 503 as if the database were down."""
    response = browser.post(prompt="nul: a\x00b", pipeline="passthrough")
    assert response.status_code == 200, response.text[:300]
    assert text_of(browser.events(response)) == "before\x00after"  # the client gets it as sent
    conversation_id = response.headers["X-Conversation-Id"]
    stored = browser.conversation(conversation_id)
    assert [(m["content"], m["status"]) for m in stored["messages"]] == [
        ("nul: a\ufffdb", "complete"),
        ("before\ufffdafter", "complete"),
    ]
    assert stored["title"] == "nul: a\ufffdb"
    renamed = browser.client.patch(
        f"{API}/{conversation_id}", json={"title": "x\x00y"}, headers=browser.headers
    )
    assert renamed.status_code == 200 and renamed.json()["title"] == "x\ufffdy"
    created = browser.client.post(API, json={"title": "\x00"}, headers=browser.headers)
    assert created.status_code == 201 and created.json()["title"] == "\ufffd"


async def test_a_model_source_that_cannot_be_made_leaves_its_prompt_answered_as_failed(
    browser: Browser,
) -> None:
    """The factory raises when called, after the turn is stored: the prompt is answered
    by a failed reply (never left waiting for one), on every transport, and the
    conversation takes the next prompt."""
    refused = browser.post(prompt="broken: now")
    assert refused.status_code == 500
    assert refused.json() == {"error": "The reply could not start", "code": "INTERNAL_ERROR"}
    conversation_id = refused.headers["X-Conversation-Id"]
    async with browser.websocket() as socket:
        prompt = {"type": "prompt", "prompt": "broken: again", "conversation": conversation_id}
        await socket.send(json.dumps(prompt))
        frame = json.loads(await socket.recv())
        assert frame["type"] == "error" and frame["code"] == "INTERNAL_ERROR"
    stored = browser.conversation(conversation_id)
    assert [(m["role"], m["status"]) for m in stored["messages"]] == [
        ("user", "complete"),
        ("assistant", "failed"),
    ] * 2
    assert stored["running"] is None
    assert browser.post(prompt="Hello", conversation=conversation_id).status_code == 200
    assert len(browser.conversation(conversation_id)["messages"]) == 6


def test_two_prompts_sent_together_to_one_conversation_start_one_reply(
    browser: Browser,
) -> None:
    """The second finds the first's turn stored but its reply not yet in the event store:
    that is a reply starting, not one that ended (both used to start, now and then)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        for _ in range(12):
            conversation_id = browser.post(prompt="first").headers["X-Conversation-Id"]
            prompts = [
                pool.submit(browser.post, prompt=f"m{n}", conversation=conversation_id)
                for n in range(2)
            ]
            statuses = sorted(prompt.result().status_code for prompt in prompts)
            assert statuses == [200, 409], statuses
            stored = browser.conversation(conversation_id)["messages"]
            assert [m["role"] for m in stored] == ["user", "assistant"] * 2


def test_a_model_that_ignores_the_xml_is_shown_whole_not_blank(browser: Browser) -> None:
    """Plain text to the ``response`` pipeline, which reads ``<text>``: the reply is its
    text, sent when it ends, not an empty reply."""
    response = browser.post(prompt="plain: no tags at all")
    assert response.status_code == 200
    assert text_of(browser.events(response)) == "no tags at all "
    stored = browser.conversation(response.headers["X-Conversation-Id"])["messages"]
    assert (stored[-1]["content"], stored[-1]["status"]) == ("no tags at all ", "complete")


def test_regenerate_replaces_the_last_reply(browser: Browser) -> None:
    first = browser.post(prompt="Tell me something")
    conversation_id = first.headers["X-Conversation-Id"]
    before = browser.conversation(conversation_id)["messages"]
    again = browser.post(regenerate=True, conversation=conversation_id)
    assert again.status_code == 200
    assert text_of(browser.events(again)) == demo_text("Tell me something")
    after = browser.conversation(conversation_id)["messages"]
    assert [m["role"] for m in after] == ["user", "assistant"]
    assert after[0] == before[0]
    assert after[1]["generation"] != before[1]["generation"]
    for body in (
        {"regenerate": True},
        {"regenerate": True, "conversation": conversation_id, "prompt": "x"},
    ):
        refused = browser.post(**body)
        assert refused.status_code == 400 and refused.json()["code"] == "BAD_REQUEST"
    empty = browser.client.post(API, json={}, headers=browser.headers).json()
    refused = browser.post(regenerate=True, conversation=empty["id"])
    assert refused.json() == {"error": "There is no prompt to regenerate", "code": "BAD_REQUEST"}
    for value in (1, 0, "yes", [], {}):
        refused = browser.post(regenerate=value, conversation=conversation_id)
        assert refused.json() == {
            "error": "'regenerate' must be true or false",
            "code": "BAD_REQUEST",
        }, value
    assert browser.post(regenerate=False, prompt="x", conversation=conversation_id).is_success
    stored = browser.conversation(conversation_id)["messages"]
    query = {"regenerate": "1", "conversation": conversation_id}
    assert text_of(browser.events(browser.client.get("/chat/stream", params=query)))
    regenerated = browser.conversation(conversation_id)["messages"]
    assert [m["content"] for m in regenerated][:3] == [m["content"] for m in stored][:3]
    assert regenerated[3]["generation"] != stored[3]["generation"]


def test_a_running_reply_is_named_and_a_second_prompt_is_refused(
    browser: Browser, chat_server: ChatServer
) -> None:
    with browser.client.stream(
        "POST", "/chat/stream", json={"prompt": "slow: one"}, headers=browser.headers
    ) as response:
        conversation_id = response.headers["X-Conversation-Id"]
        lines = response.iter_lines()
        event_id = next(line for line in lines if line.startswith("id: "))[4:]
        generation = event_id.split(":")[0]
        stored = browser.conversation(conversation_id)
        assert stored["running"] == generation
        assert [m["role"] for m in stored["messages"]] == ["user"]
        if chat_server.database == "postgres":
            # The reply streams; the server holds no connection to the database meanwhile.
            from .postgres_server import wait_for_connections

            assert wait_for_connections(chat_server.postgres, chat_server.name, 0) == 0
            assert next(line for line in lines if line)  # still streaming
        busy = browser.post(prompt="meanwhile", conversation=conversation_id)
        assert busy.status_code == 409 and busy.json()["code"] == "CONVERSATION_BUSY"
        browser.client.delete("/chat/stream", params={"id": generation}, headers=browser.headers)
        rest = list(lines)
    assert any('"code":"ABORTED"' in line for line in rest)
    stored = browser.conversation(conversation_id)
    assert stored["running"] is None
    assert stored["messages"][-1]["status"] == "stopped"


def test_deleting_a_conversation_stops_its_reply(browser: Browser) -> None:
    with browser.client.stream(
        "POST", "/chat/stream", json={"prompt": "slow: two"}, headers=browser.headers
    ) as response:
        conversation_id = response.headers["X-Conversation-Id"]
        lines = response.iter_lines()
        next(line for line in lines if line.startswith("data: "))
        deleted = browser.client.delete(f"{API}/{conversation_id}", headers=browser.headers)
        assert deleted.status_code == 204
        rest = list(lines)
    assert any('"code":"ABORTED"' in line for line in rest)
    assert browser.client.get(f"{API}/{conversation_id}").status_code == 404


async def test_another_owners_conversation_is_not_found_on_every_transport(
    chat_server: ChatServer,
) -> None:
    owner, stranger = Browser(chat_server.url), Browser(chat_server.url)
    theirs = owner.post(prompt="Private").headers["X-Conversation-Id"]
    for body in (
        {"prompt": "Mine now", "conversation": theirs},
        {"regenerate": True, "conversation": theirs},
    ):
        refused = stranger.post(**body)
        assert refused.status_code == 404
        assert refused.json() == {"error": "No such conversation", "code": "NOT_FOUND"}
    async with stranger.websocket() as socket:
        await socket.send(json.dumps({"type": "prompt", "prompt": "Mine", "conversation": theirs}))
        frame = json.loads(await socket.recv())
    assert frame == {"type": "error", "code": "NOT_FOUND", "message": "No such conversation"}
    assert len(owner.conversation(theirs)["messages"]) == 2
    assert stranger.client.get(API).json()["conversations"] == []
    owner.client.close()
    stranger.client.close()


async def socket_answer(browser: Browser) -> str:
    """A prompt over the chat's socket: the code of its first frame, or the status of a
    refused handshake."""
    try:
        async with browser.websocket() as socket:
            await socket.send(json.dumps({"type": "prompt", "prompt": "During"}))
            return str(json.loads(await socket.recv())["code"])
    except InvalidStatus as refused:
        return f"HTTP {refused.response.status_code}"


@pytest.mark.parametrize("sessions", ["signed cookies", "database"])
def test_a_database_that_is_down_gets_a_json_503_and_then_works_again(
    sessions: str, tmp_path: Path
) -> None:
    """Also with the sessions in that database (the deploy's): every request then fails
    to load its session, and still gets the JSON 503, not Django's HTML 500 page; so does
    a stop or a resume of a reply, and the chat page gets a short 503 page of its own. A
    WebSocket handshake that cannot load its session is refused (HTTP 403, the page's
    client retries), not Channels' 500 and a traceback; one that can gets its prompt's
    error frame."""
    from .postgres_server import postgres_server, require_postgres
    from .servers import daphne_server, migrate

    require_postgres()
    settings = (
        "tests.settings_postgres_sessions" if sessions == "database" else "tests.settings_postgres"
    )
    with postgres_server() as server:
        server.create_database("chat")
        env = {
            "DJANGO_SETTINGS_MODULE": settings,
            "STREAMING_TEST_POSTGRES": f"{server.host}:{server.port}",
            "DJANGO_DB": "chat",
        }
        migrate(env)
        log = tmp_path / "daphne.log"
        with daphne_server("tests.asgi:application", env=env, log=log) as url:
            browser = Browser(url)
            before = browser.post(prompt="Before")
            conversation = before.headers["X-Conversation-Id"]
            event_id = browser.events(before)[-1][2]  # its end: a resume has nothing more
            server.stop()
            down = {"error": "The database is unavailable", "code": "STORE_UNAVAILABLE"}
            for response in (
                browser.client.get(API),
                browser.client.get(f"{API}/{conversation}"),
                browser.post(prompt="During", conversation=conversation),
            ):
                assert (response.status_code, response.json()) == (503, down)
            # The finished reply's resume and stop need no database, but a session in it.
            for response in (
                browser.client.get("/chat/stream", headers={"Last-Event-ID": event_id}),
                browser.client.delete(
                    "/chat/stream", params={"id": event_id.split(":")[0]}, headers=browser.headers
                ),
            ):
                if sessions == "database":
                    assert (response.status_code, response.json()) == (503, down)
                else:
                    assert response.status_code == 204
            # The page: a visitor's session is in the database; a new visitor's page needs
            # none (it stores none), and its calls get the JSON 503.
            for page, known in ((browser.client.get("/"), True), (httpx.get(f"{url}/"), False)):
                if sessions == "database" and known:
                    assert page.status_code == 503
                    assert "<h1>The chat is unavailable</h1>" in page.text
                    assert "/static/streaming/unavailable.css" in page.text  # no inline style
                    assert "sessionid" not in page.headers.get("set-cookie", "")
                else:  # the page itself needs no database; its calls get the JSON 503
                    assert "sessionid" not in page.headers.get("set-cookie", "")
                    assert page.status_code == 200
            refusal = "HTTP 403" if sessions == "database" else "STORE_UNAVAILABLE"
            assert asyncio.run(socket_answer(browser)) == refusal
            server.start()
            assert browser.client.get("/").status_code == 200
            assert len(browser.conversation(conversation)["messages"]) == 2
            assert browser.post(prompt="After", conversation=conversation).status_code == 200
            assert len(browser.conversation(conversation)["messages"]) == 4
            browser.client.close()
    logged = log.read_text()
    assert "Traceback" not in logged
    handshakes = logged.count("The database failed under the WebSocket handshake")
    assert handshakes == (1 if sessions == "database" else 0)


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_a_database_never_migrated_gets_a_503_and_a_log_line_that_says_migrate(
    database: str, tmp_path: Path
) -> None:
    from .postgres_server import postgres_server, require_postgres
    from .servers import daphne_server

    with contextlib.ExitStack() as stack:
        if database == "sqlite":
            env = {"DJANGO_DB": str(tmp_path / "never-migrated.sqlite3")}
        else:
            require_postgres()
            server = stack.enter_context(postgres_server())
            server.create_database("never_migrated")
            env = {
                "DJANGO_SETTINGS_MODULE": "tests.settings_postgres",
                "STREAMING_TEST_POSTGRES": f"{server.host}:{server.port}",
                "DJANGO_DB": "never_migrated",
            }
        log = tmp_path / "daphne.log"
        with daphne_server("tests.asgi:application", env=env, log=log) as url:
            browser = Browser(url)
            down = {"error": "The database is unavailable", "code": "STORE_UNAVAILABLE"}
            for response in (browser.client.get(API), browser.post(prompt="Hello")):
                assert (response.status_code, response.json()) == (503, down)
            browser.client.close()
    assert log.read_text().count("tables are missing: run `manage.py migrate`") == 2
