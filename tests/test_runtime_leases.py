"""A process that dies without warning (kill -9) leaves no reply running forever: the
process that runs a reply renews its lease, and a follower on another process that sees
it lapse gets ``INTERRUPTED``; the reply is ended in the store (two daphne processes
sharing a real redis-server)."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from streaming.chat import START_GRACE
from streaming.sse import ParsedEvent, SSEParser
from streaming.testing import parse_sse

from .hostile import daphne_process, migrate, sqlite_database
from .redis_server import RedisServer, needs_redis, redis_server

pytestmark = [
    needs_redis,
    # Two daphne processes, a lease to lapse: more than the default 120 s on a loaded machine.
    pytest.mark.timeout(300),
]

LIMIT = 30.0
#: The issue's bound: a resume learns of the dead process within 15 s (default lease 10 s).
WITHIN = 15.0
SLOW = {"prompt": "Hi", "delay": "0.2", "size": "1"}


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture(params=[False, True], ids=["lease-per-reply", "lease-per-process"])
def env(tmp_path: Path, redis: RedisServer, request: pytest.FixtureRequest) -> dict[str, str]:
    """Both forms of leases (``process_leases``): either lapses when its process dies."""
    options = {"url": redis.url, "process_leases": request.param}
    store = {"BACKEND": "streaming.store.redis.RedisStore", "OPTIONS": options}
    database = migrate(sqlite_database(tmp_path / "db.sqlite3"))
    return {**database, "STREAMING_TEST_SETTINGS": json.dumps({"STORE": store})}


def page_view(client: httpx.Client) -> tuple[dict[str, str], dict[str, str]]:
    """A visitor gets their owner token (``/visitor``): its cookies, and its CSRF header."""
    client.get("/visitor")
    return dict(client.cookies), {"X-CSRFToken": client.cookies["csrftoken"]}


def test_a_resume_of_a_reply_whose_process_was_killed_gets_interrupted(
    env: dict[str, str],
) -> None:
    with daphne_process(env=env) as (first, process), daphne_process(env=env) as (second, _):
        with httpx.Client(base_url=first, timeout=LIMIT) as client:
            client.get("/h/login")
            cookies = dict(client.cookies)
            with client.stream("GET", "/h/slow", params=SLOW) as response:
                parser = SSEParser()
                events: list[ParsedEvent] = []
                chunks = response.iter_raw()
                while not events:
                    events += parser.feed(next(chunks))
                process.kill()
                process.wait(LIMIT)
        started = time.monotonic()
        with httpx.Client(base_url=second, timeout=LIMIT, cookies=cookies) as client:
            resumed = parse_sse(
                client.get("/h/slow", headers={"Last-Event-ID": events[-1].id or ""}).content
            )
            elapsed = time.monotonic() - started
            again = parse_sse(
                client.get("/h/slow", headers={"Last-Event-ID": events[-1].id or ""}).content
            )
    assert json.loads(resumed[-1].data)["code"] == "INTERRUPTED"
    assert elapsed < WITHIN
    assert json.loads(again[-1].data)["code"] == "INTERRUPTED"  # ended in the store


def test_a_websocket_resume_of_a_killed_reply_gets_interrupted(env: dict[str, str]) -> None:
    with daphne_process(env=env) as (first, process), daphne_process(env=env) as (second, _):
        with httpx.Client(base_url=first, timeout=LIMIT) as client:
            client.get("/h/login")
            cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
        headers = {"Cookie": cookie}
        with connect(
            first.replace("http", "ws") + "/ws/h/slow/", origin=first, additional_headers=headers
        ) as socket:
            socket.send(json.dumps(SLOW))
            frame: dict[str, Any] = json.loads(socket.recv(LIMIT))
            process.kill()
            process.wait(LIMIT)
        started = time.monotonic()
        with connect(
            second.replace("http", "ws") + "/ws/h/slow/", origin=second, additional_headers=headers
        ) as socket:
            socket.send(
                json.dumps(
                    {"type": "resume", "message_id": frame["message_id"], "after": frame["seq"]}
                )
            )
            frames = [json.loads(socket.recv(LIMIT))]
            while frames[-1]["type"] == "chunk":
                frames.append(json.loads(socket.recv(LIMIT)))
        elapsed = time.monotonic() - started
    assert frames[-1]["type"] == "error" and frames[-1]["code"] == "INTERRUPTED", frames[-1]
    assert elapsed < WITHIN


def test_a_conversation_whose_reply_died_with_its_process_takes_a_new_prompt(
    env: dict[str, str],
) -> None:
    """After a ``kill -9`` of the process running a chat reply, once its lease lapsed: the
    conversation names no running reply, keeps the cut reply as failed with the text
    stored, and takes the next prompt (it answered "A reply is still running" until the
    store expired the reply, an hour later). The text stored is what the client saw, but
    for the last token at most: it went out before it was stored (``STORE_BATCH_MS``),
    and the process was killed at once."""
    settings = json.loads(env["STREAMING_TEST_SETTINGS"])
    settings.update(
        {"MODEL": "streaming.sources.demo_model", "DEMO_TOKEN_DELAY": 0.2, "LEASE_SECONDS": 2}
    )
    slow = {**env, "STREAMING_TEST_SETTINGS": json.dumps(settings)}
    quick = {**env, "STREAMING_TEST_SETTINGS": json.dumps({**settings, "DEMO_TOKEN_DELAY": 0.001})}
    with daphne_process(env=slow) as (first, process), daphne_process(env=quick) as (second, _):
        with httpx.Client(base_url=first, timeout=LIMIT) as client:
            cookies, headers = page_view(client)
            with client.stream(
                "POST", "/chat/stream", json={"prompt": "Hi"}, headers=headers
            ) as response:
                conversation = response.headers["X-Conversation-Id"]
                parser = SSEParser()
                seen = before_last = ""
                for chunk in response.iter_raw():
                    for event in parser.feed(chunk):
                        if event.event == "message" and "chunk" in json.loads(event.data):
                            before_last = seen
                            seen += json.loads(event.data)["chunk"]
                    if len(seen) > 20:
                        break
                process.kill()
                process.wait(LIMIT)
        time.sleep(3.0)  # past the lease
        with httpx.Client(base_url=second, timeout=LIMIT, cookies=cookies) as client:
            stored = client.get(f"/chat/conversations/{conversation}").json()
            again = client.post(
                "/chat/stream",
                json={"prompt": "Again", "conversation": conversation},
                headers=headers,
            )
            after = client.get(f"/chat/conversations/{conversation}").json()
    assert stored["running"] is None
    [user, cut] = stored["messages"]
    assert (user["role"], cut["role"], cut["status"]) == ("user", "assistant", "failed")
    assert seen.startswith(cut["content"])
    assert cut["content"].startswith(before_last)
    assert again.status_code == 200, again.text
    assert json.loads(parse_sse(again.content)[-1].data) == {"done": True}
    assert [m["status"] for m in after["messages"]] == [
        "complete",
        "failed",
        "complete",
        "complete",
    ]


def lose_a_turn(database: Path, conversation: str, age: float) -> None:
    """What a process killed between storing a turn and starting its reply leaves: the
    prompt stored ``age`` seconds ago, the conversation naming a reply no store knows."""
    stored = (datetime.now(UTC) - timedelta(seconds=age)).strftime("%Y-%m-%d %H:%M:%S.%f")
    key = uuid.UUID(conversation).hex
    with sqlite3.connect(database) as db:
        db.execute(
            "INSERT INTO streaming_message (conversation_id, role, content, status, reasoning,"
            " created) VALUES (?, 'user', 'Lost', 'complete', '', ?)",
            (key, stored),
        )
        db.execute(
            "UPDATE streaming_conversation SET generation = ?, updated = ? WHERE id = ?",
            (uuid.uuid4().hex, stored, key),
        )


def backdate(database: Path, conversation: str, age: float) -> None:
    """Make the conversation's last change ``age`` seconds old."""
    stored = (datetime.now(UTC) - timedelta(seconds=age)).strftime("%Y-%m-%d %H:%M:%S.%f")
    with sqlite3.connect(database) as db:
        db.execute(
            "UPDATE streaming_conversation SET updated = ? WHERE id = ?",
            (stored, uuid.UUID(conversation).hex),
        )


def test_a_turn_the_shared_store_does_not_know_is_starting_then_lost(
    env: dict[str, str], tmp_path: Path
) -> None:
    """With Redis another process may be between storing a turn and starting its reply:
    a turn the store does not know counts as starting (a prompt beside it is refused,
    not a second reply) for ``START_GRACE`` after it was stored; after that it was lost,
    and is stored as failed so the conversation takes the next prompt."""
    with (
        daphne_process(env=env) as (url, _),
        httpx.Client(base_url=url, timeout=LIMIT) as client,
    ):
        _, headers = page_view(client)
        answered = client.post("/chat/stream", json={"prompt": "Hi"}, headers=headers)
        conversation = answered.headers["X-Conversation-Id"]
        path = f"/chat/conversations/{conversation}"
        again = {"prompt": "Again", "conversation": conversation}

        lose_a_turn(tmp_path / "db.sqlite3", conversation, age=1.0)
        starting = client.get(path).json()
        refused = client.post("/chat/stream", json=again, headers=headers)
        assert starting["running"] is None
        assert [m["role"] for m in starting["messages"]] == ["user", "assistant", "user"]
        assert (refused.status_code, refused.json()["code"]) == (409, "CONVERSATION_BUSY")

        backdate(tmp_path / "db.sqlite3", conversation, age=START_GRACE + 1)
        answered = client.post("/chat/stream", json=again, headers=headers)
        assert answered.status_code == 200, answered.text
        after = client.get(path).json()
        assert [(m["role"], m["status"], m["content"] != "") for m in after["messages"][2:]] == [
            ("user", "complete", True),
            ("assistant", "failed", False),
            ("user", "complete", True),
            ("assistant", "complete", True),
        ]


def test_with_the_memory_store_a_reply_killed_with_its_process_is_stored_as_failed(
    tmp_path: Path,
) -> None:
    """The memory store dies with its process: the next process knows nothing of the
    reply, and no other process can be starting it. The first look at the conversation
    (here a prompt) stores it as failed, with no text, and the prompt is answered at
    once, with no grace to wait out: never a prompt left without a reply, nor two
    prompts in a row."""
    database = migrate(sqlite_database(tmp_path / "db.sqlite3"))
    settings = {"MODEL": "streaming.sources.demo_model", "DEMO_TOKEN_DELAY": 0.2}
    env = {**database, "STREAMING_TEST_SETTINGS": json.dumps(settings)}
    with (
        daphne_process(env=env) as (first, process),
        httpx.Client(base_url=first, timeout=LIMIT) as client,
    ):
        cookies, headers = page_view(client)
        with client.stream(
            "POST", "/chat/stream", json={"prompt": "Hi"}, headers=headers
        ) as response:
            conversation = response.headers["X-Conversation-Id"]
            next(line for line in response.iter_lines() if line.startswith("data: "))
            process.kill()
            process.wait(LIMIT)
    quick = {**env, "STREAMING_TEST_SETTINGS": json.dumps({**settings, "DEMO_TOKEN_DELAY": 0.001})}
    with (
        daphne_process(env=quick) as (second, _),
        httpx.Client(base_url=second, timeout=LIMIT, cookies=cookies) as client,
    ):
        # The first look is a prompt: the lost reply is stored, and the prompt answered.
        again = {"prompt": "Again", "conversation": conversation}
        answered = client.post("/chat/stream", json=again, headers=headers)
        assert answered.status_code == 200, answered.text
        after = client.get(f"/chat/conversations/{conversation}").json()
    assert [(m["role"], m["status"], m["content"] != "") for m in after["messages"]] == [
        ("user", "complete", True),
        ("assistant", "failed", False),
        ("user", "complete", True),
        ("assistant", "complete", True),
    ]
