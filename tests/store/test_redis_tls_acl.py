"""``RedisStore`` on a managed Redis's terms, against a real redis-server: TLS alone
(``rediss://``, a CA of the test's own) and an ACL user allowed only the store's commands
(``STORE_COMMANDS``) on its own keys. The chat's reply path runs through two daphne
processes on each, and a wrong CA or password is the clean ``STORE_UNAVAILABLE``.

The event store contract runs as such an ACL user too (``make_store`` in conftest.py)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from itertools import islice
from pathlib import Path

import httpx
import pytest

from streaming.errors import StreamError
from streaming.sse import ParsedEvent, SSEParser
from tests.redis_server import Certificates, RedisServer, make_certificates, redis_server
from tests.servers import daphne_server, sqlite_database

from .conftest import ACL_PASSWORD, STORE_COMMANDS, needs_redis, store_user
from .test_redis import busy_at_first_connect

pytest.importorskip("redis", reason="the redis package is not installed")
from redis.asyncio.connection import SSLConnection

from streaming.store.redis import RedisStore, _ConnectTriedTwice

pytestmark = needs_redis

#: Seconds any one request of these tests may take.
LIMIT = 20.0
README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_redis(certificates: Certificates) -> Iterator[RedisServer]:
    """A redis-server that listens on TLS alone: a connection in plain TCP gets nowhere."""
    with redis_server(tls=certificates) as server:
        yield server


@pytest.fixture(scope="module")
def acl_redis() -> Iterator[RedisServer]:
    """A redis-server with the user ``streaming`` of the README's ACL."""
    with redis_server(users=[store_user("streaming", "streaming:")]) as server:
        yield server


def as_user(server: RedisServer, password: str) -> str:
    return server.url.replace("redis://", f"redis://streaming:{password}@")


@contextmanager
def chat_daphnes(store_url: str, count: int, log: Path | None = None) -> Iterator[list[str]]:
    """``count`` daphne processes of the test project sharing one SQLite file and the
    Redis event store at ``store_url`` (the first one's output in ``log``)."""
    with sqlite_database() as database, ExitStack() as stack:
        env = {
            "DJANGO_SETTINGS_MODULE": "tests.settings_redis",
            "STREAMING_TEST_REDIS": store_url,
            **database,
        }
        yield [
            stack.enter_context(
                daphne_server("tests.asgi:application", env=env, log=log if n == 0 else None)
            )
            for n in range(count)
        ]


def sse_events(response: httpx.Response) -> Iterator[ParsedEvent]:
    """The events of an SSE response as they come."""
    parser = SSEParser()
    for chunk in response.iter_raw():
        yield from parser.feed(chunk)


def text_of(events: list[ParsedEvent]) -> str:
    return "".join(json.loads(event.data).get("chunk", "") for event in events)


def check_chat_reply_resumed_elsewhere(first: str, second: str) -> None:
    """A chat reply started on ``first`` and dropped is resumed on ``second`` (through the
    shared reader there) from its last event, exactly, then stopped there (a cancel
    request through the store); its message is stored with the text its client saw."""
    with httpx.Client(base_url=first, timeout=LIMIT) as page:
        page.get("/visitor")
        headers = {"X-CSRFToken": page.cookies["csrftoken"]}
        body = {"prompt": f"slow: {uuid.uuid4().hex}"}
        with page.stream("POST", "/chat/stream", json=body, headers=headers) as reply:
            assert reply.status_code == 200
            conversation = reply.headers["X-Conversation-Id"]
            before = list(islice(sse_events(reply), 6))
        cookies = dict(page.cookies)
    last_id = before[-1].id or ""
    generation, _, seq = last_id.partition(":")
    with httpx.Client(base_url=second, timeout=LIMIT, cookies=cookies) as page:
        resume = {"Last-Event-ID": last_id}
        with page.stream("GET", "/chat/stream", headers=resume) as resumed:
            assert resumed.status_code == 200
            events = sse_events(resumed)
            after = list(islice(events, 4))
            seqs = [int((event.id or "").split(":")[1]) for event in after]
            assert int(seq) < seqs[0] and seqs == sorted(set(seqs))
            shown = text_of(before) + text_of(after)
            # The slow reply's "word0 word1 …" from its start: nothing lost or twice.
            assert shown == "".join(f"word{n} " for n in range(len(shown)))[: len(shown)]
            stop = {"id": generation, "shown": str(len(shown))}
            assert page.delete("/chat/stream", params=stop, headers=headers).status_code == 204
            rest = list(events)
        assert json.loads(rest[-1].data)["code"] == "ABORTED"
        stored = page.get(f"/chat/conversations/{conversation}").json()["messages"]
    assert [(m["role"], m["status"]) for m in stored] == [
        ("user", "complete"),
        ("assistant", "stopped"),
    ]
    assert stored[-1]["content"] == shown


def check_refused(base: str) -> None:
    """A chat's reply is refused with the JSON 503 ``STORE_UNAVAILABLE``, at once."""
    with httpx.Client(base_url=base, timeout=LIMIT) as page:
        page.get("/visitor")
        headers = {"X-CSRFToken": page.cookies["csrftoken"]}
        refused = page.post("/chat/stream", json={"prompt": "Hello"}, headers=headers)
    assert refused.status_code == 503
    assert refused.json() == {
        "error": "The event store is unavailable",
        "code": "STORE_UNAVAILABLE",
    }


def test_a_chat_reply_streams_resumes_and_is_stored_over_tls(tls_redis: RedisServer) -> None:
    assert tls_redis.url.startswith("rediss://")
    with chat_daphnes(tls_redis.url, 2) as (first, second):
        check_chat_reply_resumed_elsewhere(first, second)


def test_a_store_that_does_not_trust_the_servers_certificate_refuses_cleanly(
    tls_redis: RedisServer, certificates: Certificates, tmp_path: Path
) -> None:
    stranger = make_certificates(tmp_path).ca
    log = tmp_path / "daphne.log"
    store_url = tls_redis.url.replace(str(certificates.ca), str(stranger))
    with chat_daphnes(store_url, 1, log) as (url,):
        check_refused(url)
    assert "CERTIFICATE_VERIFY_FAILED" in log.read_text()
    assert "Traceback" not in log.read_text()


async def test_every_connection_of_the_store_is_tls_and_connects_twice(
    tls_redis: RedisServer,
) -> None:
    """The short commands' pool, the batched writes' connection and the shared reader's
    each connect over TLS (the server has no plain port) with ``_ConnectTriedTwice``."""
    store = RedisStore(url=tls_redis.url, key_prefix=f"test:{uuid.uuid4().hex[:8]}:")
    try:
        await store.create("s", owner="me")
        await store.append_batches({"s": [{"type": "chunk", "text": "hi"}]}, finish=["s"])
        reader = store.streams_reader()
        reader.read_from("s", 0)
        tail = (await reader.wait(timeout=1.0))["s"]
        assert not isinstance(tail, StreamError)
        assert [event.data["text"] for event in tail.events] == ["hi"]
        pools = [store._pool, reader._connection._pool, store._own_connection()._pool]
        for pool in pools:
            assert issubclass(pool.connection_class, SSLConnection)
            assert issubclass(pool.connection_class, _ConnectTriedTwice)
    finally:
        await store.close()


async def test_a_tls_connect_that_a_busy_event_loop_timed_out_is_made_again(
    tls_redis: RedisServer,
) -> None:
    """As over plain TCP (tests/store/test_redis.py): the TLS handshake timed out while
    the loop was busy, and the connect is made once more."""
    async with busy_at_first_connect(tls_redis.port, busy=0.6) as (url, accepted):
        port = url.rsplit(":", 1)[1].split("/")[0]
        proxied = tls_redis.url.replace(f":{tls_redis.port}/", f":{port}/")
        store = RedisStore(url=proxied, key_prefix="test:", connect_timeout=0.2)
        try:
            assert await store.owner("s") is None
        finally:
            await store.close()
        assert accepted == [2]


def test_a_chat_reply_works_as_a_user_with_only_the_readmes_acl(acl_redis: RedisServer) -> None:
    with chat_daphnes(as_user(acl_redis, ACL_PASSWORD), 2) as (first, second):
        check_chat_reply_resumed_elsewhere(first, second)


def test_a_wrong_password_refuses_cleanly_and_the_log_names_why(
    acl_redis: RedisServer, tmp_path: Path
) -> None:
    wrong = "not-the-Password"
    log = tmp_path / "daphne.log"
    with chat_daphnes(as_user(acl_redis, wrong), 1, log) as (url,):
        check_refused(url)
    text = log.read_text()
    assert "invalid username-password pair" in text
    assert f"streaming:***@127.0.0.1:{acl_redis.port}" in text
    assert wrong not in text
    assert "Traceback" not in text


def test_the_readme_gives_operators_this_acl() -> None:
    rule = f"ACL SETUSER streaming on >PASSWORD ~streaming:* {STORE_COMMANDS}"
    assert rule in README.read_text()
