"""Resumable replies over real sockets: drop the connection mid-reply, reconnect, and get
exactly the events that were missed, on one process (in-memory store) and on two daphne
processes sharing a real redis-server."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from streaming.sse import ParsedEvent, SSEParser
from streaming.testing import parse_sse

from .conftest import probe, wait_for_probe
from .redis_server import RedisServer, needs_redis, redis_daphnes, redis_server
from .servers import daphne_server, sqlite_database
from .settings_redis import FINISHED_TTL
from .sse_reading import events_until
from .transport_views import XML_REPLY, XML_TEXT

LIMIT = 10.0
SLOW = {"delay": "0.01", "size": "1", "pipeline": "passthrough"}


def sse_all(response: httpx.Response) -> list[ParsedEvent]:
    return parse_sse(response.content)


def text_of(events: list[ParsedEvent]) -> str:
    return "".join(json.loads(e.data).get("chunk", "") for e in events)


def interrupted_sse_reply(first: str, second: str, key: str) -> tuple[list[ParsedEvent], ...]:
    """Start a ``keep`` reply on ``first``, drop it after 5 events, resume it on ``second``."""
    with httpx.Client(base_url=first, timeout=LIMIT) as client:
        client.get("/visitor")  # the session's owner token
        cookies = dict(client.cookies)
        with client.stream("GET", "/sse/keep", params={**SLOW, "key": key}) as response:
            before = events_until(response, 5)
    last_id = before[-1].id or ""
    with httpx.Client(base_url=second, timeout=LIMIT, cookies=cookies) as client:
        after = sse_all(client.get("/sse/keep", headers={"Last-Event-ID": last_id}))
        again = client.get("/sse/keep", headers={"Last-Event-ID": after[-1].id or ""})
        assert again.status_code == 204
    return before, after


def check_exactly_once(before: list[ParsedEvent], after: list[ParsedEvent]) -> None:
    """The two parts join to the uninterrupted reply, with no id seen twice."""
    assert text_of(before) + text_of(after) == XML_REPLY
    assert json.loads(after[-1].data) == {"done": True}
    seqs = [int((e.id or "").split(":")[1]) for e in before + after]
    assert seqs == sorted(set(seqs))


def test_sse_resumes_after_a_dropped_connection_on_one_process(live_url: str) -> None:
    before, after = interrupted_sse_reply(live_url, live_url, uuid.uuid4().hex)
    check_exactly_once(before, after)


def test_with_the_cancel_policy_a_dropped_connection_stops_the_reply(
    live_url: str, http: httpx.Client
) -> None:
    with httpx.Client(base_url=live_url, timeout=LIMIT) as client:
        client.get("/visitor")
        with client.stream("GET", "/sse/scripted", params=SLOW) as response:
            before = events_until(response, 3)
        time.sleep(0.3)
        rest = sse_all(client.get("/sse/scripted", headers={"Last-Event-ID": before[-1].id or ""}))
    assert json.loads(rest[-1].data)["code"] == "ABORTED"
    assert len(text_of(before) + text_of(rest)) < len(XML_REPLY)


def test_another_visitor_cannot_resume_or_cancel_a_reply(live_url: str) -> None:
    with httpx.Client(base_url=live_url, timeout=LIMIT) as owner:
        owner.get("/visitor")
        with owner.stream("GET", "/sse/keep", params=SLOW) as response:
            event_id = events_until(response, 2)[-1].id or ""
        with httpx.Client(base_url=live_url, timeout=LIMIT) as stranger:
            stranger.get("/visitor")
            stolen = stranger.get("/sse/keep", headers={"Last-Event-ID": event_id})
            assert stolen.status_code == 404 and stolen.json()["code"] == "NOT_FOUND"
            generation = event_id.split(":")[0]
            refused = stranger.delete(
                f"/sse/keep?id={generation}", headers={"X-CSRFToken": stranger.cookies["csrftoken"]}
            )
            assert refused.status_code == 404
        # The owner still gets the whole rest.
        rest = sse_all(owner.get("/sse/keep", headers={"Last-Event-ID": event_id}))
        assert json.loads(rest[-1].data) == {"done": True}


def test_delete_cancels_a_kept_reply(live_url: str) -> None:
    with httpx.Client(base_url=live_url, timeout=LIMIT) as client:
        client.get("/visitor")
        with client.stream("GET", "/sse/keep", params=SLOW) as response:
            event_id = events_until(response, 2)[-1].id or ""
        generation = event_id.split(":")[0]
        cancelled = client.delete(
            f"/sse/keep?id={generation}", headers={"X-CSRFToken": client.cookies["csrftoken"]}
        )
        assert cancelled.status_code == 204
        rest = sse_all(client.get("/sse/keep", headers={"Last-Event-ID": event_id}))
        assert json.loads(rest[-1].data)["code"] == "ABORTED"


#: A model slow to its first token: one chunk (the whole reply) after 1.5 seconds.
SLOW_START = {"delay": "1.5", "size": "1000", "pipeline": "passthrough"}


def opening_id(chunks: Iterator[bytes], parser: SSEParser) -> tuple[str, list[ParsedEvent]]:
    """Read ``chunks`` until the client knows an event id; return it with the events
    dispatched by then (none, when the id comes before the model's first token)."""
    events: list[ParsedEvent] = []
    while parser.last_event_id is None:
        events += parser.feed(next(chunks))
    return parser.last_event_id, events


def test_the_reply_id_comes_with_the_first_bytes_before_the_first_token(
    live_url: str, http: httpx.Client
) -> None:
    name = uuid.uuid4().hex
    with (
        httpx.Client(base_url=live_url, timeout=LIMIT) as client,
        client.stream("GET", "/sse/scripted", params={**SLOW_START, "key": name}) as response,
    ):
        chunks = response.iter_raw()
        parser = SSEParser()
        event_id, events = opening_id(chunks, parser)
        assert events == []  # nothing dispatched: the model has sent nothing yet
        assert probe(http, name) == ["started"]
        body = [event for chunk in chunks for event in parser.feed(chunk)]
    generation, _, seq = event_id.partition(":")
    assert len(generation) == 32 and seq == "0"
    assert {(event.id or "").split(":")[0] for event in body} == {generation}
    assert text_of(body) == XML_REPLY


def test_a_reconnect_before_the_first_token_resumes_the_reply_and_starts_no_other(
    live_url: str, http: httpx.Client
) -> None:
    """What a browser's ``EventSource`` does when its connection drops while a slow model
    thinks: reconnect with the id of the opening bytes, ``<generation>:0``."""
    name = uuid.uuid4().hex
    with httpx.Client(base_url=live_url, timeout=LIMIT) as client:
        client.get("/visitor")  # the session's owner token
        with client.stream("GET", "/sse/keep", params={**SLOW_START, "key": name}) as response:
            event_id, events = opening_id(response.iter_raw(), SSEParser())
        assert events == [] and event_id.endswith(":0")
        resumed = client.get(
            "/sse/keep", params={**SLOW_START, "key": name}, headers={"Last-Event-ID": event_id}
        )
    assert resumed.status_code == 200
    # The resumed body opens with the id it resumes from, then the whole reply, once.
    assert resumed.content.startswith(b": stream open\n\nid: " + event_id.encode() + b"\n\n")
    after = sse_all(resumed)
    assert text_of(after) == XML_REPLY
    assert json.loads(after[-1].data) == {"done": True}
    assert {(event.id or "").split(":")[0] for event in after} == {event_id.split(":")[0]}
    wait_for_probe(http, name, ["started", "finally"])  # one generation, not two


def test_a_resume_midway_opens_with_the_id_it_resumes_from(live_url: str) -> None:
    """Sent again on a resume, the opening id moves nothing: the events after it come
    exactly once."""
    with httpx.Client(base_url=live_url, timeout=LIMIT) as client:
        client.get("/visitor")
        with client.stream("GET", "/sse/keep", params=SLOW) as response:
            before = events_until(response, 5)
        last_id = before[-1].id or ""
        resumed = client.get("/sse/keep", headers={"Last-Event-ID": last_id})
    assert resumed.content.startswith(b": stream open\n\nid: " + last_id.encode() + b"\n\n")
    check_exactly_once(before, sse_all(resumed))


def test_a_cursor_past_the_end_is_refused_alike_while_the_reply_runs_and_after(
    live_url: str,
) -> None:
    """A ``Last-Event-ID`` ahead of every event written: one answer, a JSON 400 before
    any stream starts, whether the reply still runs or has ended."""
    with httpx.Client(base_url=live_url, timeout=LIMIT) as client:
        client.get("/visitor")
        with client.stream("GET", "/sse/keep", params=SLOW) as response:
            event_id = events_until(response, 2)[-1].id or ""
        generation = event_id.split(":")[0]
        ahead = {"Last-Event-ID": f"{generation}:100000"}
        answers = [client.get("/sse/keep", headers=ahead)]
        rest = sse_all(client.get("/sse/keep", headers={"Last-Event-ID": event_id}))
        assert json.loads(rest[-1].data) == {"done": True}
        answers.append(client.get("/sse/keep", headers=ahead))
    for answer in answers:
        assert answer.status_code == 400
        assert answer.headers["content-type"].startswith("application/json")
        assert answer.json()["code"] == "BAD_REQUEST"
        assert "cursor 100000 is outside the stream" in answer.json()["error"]


# ------------------------------------------------------------------- WebSocket
async def ws_frames_until(socket: ClientConnection, count: int) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    while len(frames) < count:
        frames.append(json.loads(await asyncio.wait_for(socket.recv(), LIMIT)))
    return frames


async def ws_until_end(socket: ClientConnection) -> list[dict[str, Any]]:
    frames = [json.loads(await asyncio.wait_for(socket.recv(), LIMIT))]
    while frames[-1]["type"] == "chunk":
        frames.append(json.loads(await asyncio.wait_for(socket.recv(), LIMIT)))
    return frames


async def session_cookie(base: str) -> str:
    async with httpx.AsyncClient(base_url=base, timeout=LIMIT) as client:
        await client.get("/visitor")
        return "; ".join(f"{name}={value}" for name, value in client.cookies.items())


async def interrupted_ws_reply(first: str, second: str) -> tuple[list[dict[str, Any]], ...]:
    cookie = await session_cookie(first)
    headers = {"Cookie": cookie}
    url = "/ws/keep/"
    async with connect(
        first.replace("http", "ws") + url, origin=first, additional_headers=headers
    ) as socket:
        await socket.send(
            json.dumps({"prompt": "Hi", "delay": 0.01, "size": 1, "pipeline": "passthrough"})
        )
        before = await ws_frames_until(socket, 3)
    message_id, after_seq = before[-1]["message_id"], before[-1]["seq"]
    async with connect(
        second.replace("http", "ws") + url, origin=second, additional_headers=headers
    ) as socket:
        await socket.send(
            json.dumps({"type": "resume", "message_id": message_id, "after": after_seq})
        )
        after = await ws_until_end(socket)
    return before, after


def check_ws_exactly_once(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> None:
    text = "".join(f["content"] for f in before + after if f["type"] == "chunk")
    assert text == after[-1]["fullResponse"] == XML_REPLY
    seqs = [f["seq"] for f in before + after if f["type"] == "chunk"]
    assert seqs == sorted(set(seqs))


async def test_ws_resumes_on_a_new_connection_on_one_process(live_url: str) -> None:
    before, after = await interrupted_ws_reply(live_url, live_url)
    check_ws_exactly_once(before, after)


async def test_ws_resume_after_the_last_event_gets_the_end_frame_again(live_url: str) -> None:
    """A client that has every event (it resumes after the last one: an error's ``seq``;
    for a complete reply the last chunk's, as ``complete`` has none, and then one more)
    hears that the reply is over, not silence; an ``after`` past that is an error."""
    headers = {"Cookie": await session_cookie(live_url)}
    url = live_url.replace("http", "ws") + "/ws/keep/"
    async with connect(url, origin=live_url, additional_headers=headers) as socket:
        await socket.send(json.dumps({"prompt": "Hi", "delay": 0, "pipeline": "passthrough"}))
        frames = await ws_until_end(socket)
        message_id, last = frames[-1]["message_id"], frames[-2]["seq"]
        for after in (last, last + 1):
            await socket.send(
                json.dumps({"type": "resume", "message_id": message_id, "after": after})
            )
            again = json.loads(await asyncio.wait_for(socket.recv(), LIMIT))
            assert again == frames[-1]
        await socket.send(json.dumps({"type": "resume", "message_id": message_id, "after": True}))
        boolean = json.loads(await asyncio.wait_for(socket.recv(), LIMIT))
        await socket.send(
            json.dumps({"type": "resume", "message_id": message_id, "after": last + 2})
        )
        past = json.loads(await asyncio.wait_for(socket.recv(), LIMIT))
    assert frames[-1]["type"] == "complete"
    assert boolean["code"] == "BAD_REQUEST"
    assert past["type"] == "error", past


async def test_ws_a_prompt_sent_while_a_resume_streams_is_answered_after_it(
    live_url: str,
) -> None:
    """A prompt queued behind a resumed reply runs when it ends, as one queued behind a
    reply of the socket's own (it used to wait, unanswered, for the next prompt)."""
    headers = {"Cookie": await session_cookie(live_url)}
    url = live_url.replace("http", "ws") + "/ws/keep/"
    slow = {"delay": 0.01, "size": 1, "pipeline": "passthrough"}
    async with (
        connect(url, origin=live_url, additional_headers=headers) as first,
        connect(url, origin=live_url, additional_headers=headers) as second,
    ):
        await first.send(json.dumps({"prompt": "Hi", **slow}))
        message_id = (await ws_frames_until(first, 1))[0]["message_id"]
        await second.send(json.dumps({"type": "resume", "message_id": message_id, "after": 0}))
        await second.send(json.dumps({"prompt": "Again", "delay": 0, "pipeline": "passthrough"}))
        resumed = await ws_until_end(second)
        queued = await ws_until_end(second)
    assert resumed[-1]["fullResponse"] == XML_REPLY
    assert queued[-1]["type"] == "complete" and queued[-1]["fullResponse"] == XML_REPLY
    assert queued[-1]["message_id"] != message_id


async def test_ws_resumes_of_one_socket_resend_at_most_about_max_reply_chars() -> None:
    """A client that asks for the same reply again and again (and, under daphne, need not
    read it: each copy would be buffered): past ``MAX_REPLY_CHARS`` (400 here; the reply
    is 159) of resent text, a resume needs a new socket; prompts still work."""
    env = {"DJANGO_SETTINGS_MODULE": "tests.settings_small_replies"}
    with daphne_server("tests.asgi:application", env=env) as base:
        headers = {"Cookie": await session_cookie(base)}
        url = base.replace("http", "ws") + "/ws/keep/"
        quick = {"delay": 0, "pipeline": "passthrough"}
        async with connect(url, origin=base, additional_headers=headers) as socket:
            await socket.send(json.dumps({"prompt": "Hi", **quick}))
            message_id = (await ws_until_end(socket))[-1]["message_id"]
            resume = json.dumps({"type": "resume", "message_id": message_id, "after": 0})
            for _ in range(3):
                await socket.send(resume)
                assert (await ws_until_end(socket))[-1]["fullResponse"] == XML_REPLY
            await socket.send(resume)
            refused = json.loads(await asyncio.wait_for(socket.recv(), LIMIT))
            await socket.send(json.dumps({"prompt": "Still here", **quick}))
            assert (await ws_until_end(socket))[-1]["type"] == "complete"
        async with connect(url, origin=base, additional_headers=headers) as fresh:
            await fresh.send(resume)
            assert (await ws_until_end(fresh))[-1]["fullResponse"] == XML_REPLY
    assert refused["type"] == "error" and refused["code"] == "RATE_LIMITED", refused
    assert "open a new one to resume more" in refused["message"]


async def chat_until_end(socket: ClientConnection) -> list[dict[str, Any]]:
    """The chat socket's frames up to a reply's end (its reasoning comes as ``event``s)."""
    frames = [json.loads(await asyncio.wait_for(socket.recv(), LIMIT))]
    while frames[-1]["type"] not in ("complete", "error", "cancelled"):
        frames.append(json.loads(await asyncio.wait_for(socket.recv(), LIMIT)))
    return frames


async def test_ws_resumes_count_the_reasoning_they_resend() -> None:
    """A reply that is mostly reasoning (300 characters of it, "Ok." of text) costs a
    socket that resumes it what it resends, its reasoning too: past ``MAX_REPLY_CHARS``
    (400 here) the third resume is refused. Counting its text alone, a client that never
    reads could have the server buffer a hundred copies of it."""
    env = {"DJANGO_SETTINGS_MODULE": "tests.settings_small_replies"}
    with (
        sqlite_database() as database,
        daphne_server("tests.asgi:application", {**env, **database}) as base,
    ):
        headers = {"Cookie": await session_cookie(base)}
        url = base.replace("http", "ws") + "/ws/chat/"
        async with connect(url, origin=base, additional_headers=headers) as socket:
            await socket.send(json.dumps({"type": "prompt", "prompt": "think: a while"}))
            message_id = (await chat_until_end(socket))[-1]["message_id"]
            resume = json.dumps({"type": "resume", "message_id": message_id, "after": 0})
            resent = []
            for _ in range(2):
                await socket.send(resume)
                resent.append(await chat_until_end(socket))
            await socket.send(resume)
            refused = json.loads(await asyncio.wait_for(socket.recv(), LIMIT))
    for frames in resent:
        reasoning = [f["data"]["text"] for f in frames if f["type"] == "event"]
        assert ("".join(reasoning), frames[-1]["fullResponse"]) == ("Hmm. " * 60, "Ok.")
    assert refused["type"] == "error" and refused["code"] == "RATE_LIMITED", refused


async def test_ws_resume_of_an_unknown_or_foreign_reply_is_not_found(live_url: str) -> None:
    async with connect(live_url.replace("http", "ws") + "/ws/keep/", origin=live_url) as socket:
        await socket.send(json.dumps({"type": "resume", "message_id": "0" * 32, "after": 0}))
        error = json.loads(await asyncio.wait_for(socket.recv(), LIMIT))
        await socket.send(json.dumps({"type": "resume", "message_id": 5}))
        bad = json.loads(await asyncio.wait_for(socket.recv(), LIMIT))
    assert error["type"] == "error" and error["code"] == "NOT_FOUND"
    assert bad["code"] == "BAD_REQUEST"


# ---------------------------------------------------- two processes sharing Redis
@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture(scope="module")
def two_processes(redis: RedisServer) -> Iterator[tuple[str, str]]:
    with redis_daphnes("tests.settings_redis", redis, 2) as (first, second):
        yield first, second


@needs_redis
def test_sse_resumes_on_another_process_through_redis(two_processes: tuple[str, str]) -> None:
    before, after = interrupted_sse_reply(*two_processes, uuid.uuid4().hex)
    check_exactly_once(before, after)


@needs_redis
async def test_ws_resumes_on_another_process_through_redis(
    two_processes: tuple[str, str],
) -> None:
    before, after = await interrupted_ws_reply(*two_processes)
    check_ws_exactly_once(before, after)


@needs_redis
def test_a_finished_reply_expires(two_processes: tuple[str, str]) -> None:
    first, second = two_processes
    with httpx.Client(base_url=first, timeout=LIMIT) as client:
        client.get("/visitor")
        events = sse_all(client.get("/sse/keep", params={"size": "50"}))
        cookies = dict(client.cookies)
    with httpx.Client(base_url=second, timeout=LIMIT, cookies=cookies) as client:
        replay = client.get("/sse/keep", headers={"Last-Event-ID": events[0].id or ""})
        assert text_of(sse_all(replay)) == text_of(events[1:])
        assert text_of(events) == XML_TEXT
        time.sleep(FINISHED_TTL + 0.5)
        expired = client.get("/sse/keep", headers={"Last-Event-ID": events[0].id or ""})
    assert expired.status_code == 404


@needs_redis
def test_a_redis_restart_mid_reply_is_a_clear_error_not_a_hang(
    redis: RedisServer, two_processes: tuple[str, str]
) -> None:
    first, _ = two_processes
    with httpx.Client(base_url=first, timeout=LIMIT) as client:
        client.get("/visitor")
        started = time.monotonic()
        with client.stream("GET", "/sse/keep", params=SLOW) as response:
            parser = SSEParser()
            events: list[ParsedEvent] = []
            restarted = False
            for chunk in response.iter_raw():
                events += parser.feed(chunk)
                if len(events) >= 3 and not restarted:
                    redis.restart()
                    restarted = True
        assert time.monotonic() - started < LIMIT
    last = json.loads(events[-1].data)
    assert last.get("code") in {"STORE_UNAVAILABLE", "NOT_FOUND"}, last


def test_a_second_tab_watches_the_same_reply(live_url: str) -> None:
    with httpx.Client(base_url=live_url, timeout=LIMIT) as first_tab:
        first_tab.get("/visitor")
        with first_tab.stream("GET", "/sse/keep", params=SLOW) as response:
            chunks = response.iter_raw()
            parser = SSEParser()
            seen: list[ParsedEvent] = []
            while not seen:
                seen += parser.feed(next(chunks))
            generation = (seen[0].id or "").split(":")[0]
            with httpx.Client(
                base_url=live_url, timeout=LIMIT, cookies=dict(first_tab.cookies)
            ) as second_tab:
                watched = sse_all(
                    second_tab.get("/sse/keep", headers={"Last-Event-ID": f"{generation}:0"})
                )
            for chunk in chunks:
                seen += parser.feed(chunk)
    assert text_of(watched) == text_of(seen) == XML_REPLY
    assert json.loads(watched[-1].data) == json.loads(seen[-1].data) == {"done": True}
