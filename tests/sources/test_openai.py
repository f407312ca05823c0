"""``openai_chat`` against a local OpenAI-compatible server, through the real ``openai`` SDK."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import openai
import pytest
from django.test import override_settings

from streaming.errors import StreamError, StreamErrorCode
from streaming.event_writer import EventWriter
from streaming.events import Chunk, Complete, GenerationEvent
from streaming.extractors import Pipeline
from streaming.generations import Generations
from streaming.sources import openai_chat, source_from_settings
from streaming.sources.prompts import PLAIN_SYSTEM_PROMPT, XML_SYSTEM_PROMPT
from streaming.store import MemoryStore

from ..conftest import Serve
from .consume import cancel_after_first_piece, collect, failure
from .upstream import WAIT_LIMIT, Reply, Request

MESSAGES = [{"role": "user", "content": "Say hello"}]


def chunk(content: str | None = None, *, role: str | None = None, finish: str | None = None) -> Any:
    """One ``chat.completion.chunk`` as OpenAI streams it."""
    delta = {key: value for key, value in (("role", role), ("content", content)) if value}
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "test-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


async def hello(request: Request, reply: Reply) -> None:
    await reply.head()
    await reply.event(chunk("", role="assistant"))
    for piece in ["Hel", "lo", ", wor", "ld!"]:
        await reply.event(chunk(piece))
    await reply.event(chunk(finish="stop"))
    # A usage chunk has no choices at all.
    await reply.event({**chunk(), "choices": [], "usage": {"total_tokens": 3}})
    await reply.event("[DONE]")
    await reply.end()


async def one_token_then_wait(request: Request, reply: Reply) -> None:
    await reply.head()
    await reply.event(chunk("first"))
    await reply.wait_gone()


def client(url: str) -> openai.AsyncOpenAI:
    """A client for the local server, without retries so error cases answer at once."""
    return openai.AsyncOpenAI(api_key="test-key", base_url=f"{url}/v1", max_retries=0)


async def test_streams_the_delta_contents(serve: Serve) -> None:
    upstream = await serve(hello)
    pieces = await collect(
        openai_chat(MESSAGES, model="test-model", base_url=f"{upstream.url}/v1", api_key="k1")
    )
    assert pieces == ["Hel", "lo", ", wor", "ld!"]
    [request] = upstream.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer k1"
    body = request.json()
    assert body["stream"] is True
    assert body["model"] == "test-model"
    assert body["messages"] == MESSAGES


async def test_extra_parameters_reach_the_server(serve: Serve) -> None:
    upstream = await serve(hello)
    async with client(upstream.url) as api:
        await collect(openai_chat(MESSAGES, client=api, temperature=0.25, max_tokens=7))
    body = upstream.requests[0].json()
    assert body["temperature"] == 0.25
    assert body["max_tokens"] == 7


async def test_source_from_settings_uses_the_sdk_environment(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream = await serve(hello)
    monkeypatch.setenv("OPENAI_API_KEY", "env-key")
    monkeypatch.setenv("OPENAI_BASE_URL", f"{upstream.url}/v1")
    monkeypatch.setenv("OPENAI_MODEL", "local-model")
    history = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
    ]
    text = "".join(await collect(source_from_settings("Say hello", history=history)))
    assert text == "Hello, world!"
    request = upstream.requests[0]
    assert request.headers["authorization"] == "Bearer env-key"
    body = request.json()
    assert body["model"] == "local-model"
    assert body["messages"] == [
        {"role": "system", "content": XML_SYSTEM_PROMPT},
        *history,
        {"role": "user", "content": "Say hello"},
    ]


async def test_no_api_key_is_an_upstream_error_that_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(StreamError) as caught:
        await collect(openai_chat(MESSAGES, base_url="http://127.0.0.1:9/v1"))
    assert caught.value.code == StreamErrorCode.UPSTREAM_ERROR
    assert "OPENAI_API_KEY" in caught.value.message


async def test_passthrough_does_not_ask_for_xml(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream = await serve(hello)
    monkeypatch.setenv("OPENAI_API_KEY", "env-key")
    monkeypatch.setenv("OPENAI_BASE_URL", f"{upstream.url}/v1")
    monkeypatch.delenv("OPENAI_MODEL", raising=False)
    await collect(source_from_settings("Say hello", pipeline="passthrough"))
    body = upstream.requests[0].json()
    assert body["model"] == "gpt-4o-mini"
    assert body["messages"][0] == {"role": "system", "content": PLAIN_SYSTEM_PROMPT}


@pytest.mark.parametrize(
    ("status", "message", "meaning"),
    [
        (401, "Incorrect API key provided: sk-proj-AbCd****WxYz", "credentials"),
        (403, "Your input was flagged for moderation", "forbade the request"),
        (429, "Rate limit reached in organization org-Xy12", "busy or over its quota"),
        (500, "The server had an error", "it failed"),
        (418, "I'm a teapot", ""),
    ],
)
async def test_an_error_status_is_an_upstream_error_its_message_only_logged(
    serve: Serve, caplog: pytest.LogCaptureFixture, status: int, message: str, meaning: str
) -> None:
    """The server's message (a key's last characters, an organisation, a quota) goes to
    the log; the client is told the status and what it means."""

    async def error(request: Request, reply: Reply) -> None:
        body = {"error": {"message": message, "type": "invalid_request_error", "code": None}}
        await reply.whole(status, json.dumps(body))

    upstream = await serve(error)
    async with client(upstream.url) as api:
        with pytest.raises(StreamError) as caught:
            await collect(openai_chat(MESSAGES, client=api))
    assert caught.value.code == StreamErrorCode.UPSTREAM_ERROR
    assert caught.value.details == {"status": status}
    assert caught.value.message.startswith(f"The model server answered HTTP {status}")
    assert meaning in caught.value.message and message not in caught.value.message
    assert message in caplog.text and upstream.url in caplog.text


CONTEXT_MESSAGE = "This model's maximum context length is 4096 tokens. However, you requested 5000"


@pytest.mark.parametrize(
    ("status", "body", "headers", "meaning"),
    [
        # OpenAI, Azure, Groq: the error's code.
        (
            400,
            {"error": {"message": CONTEXT_MESSAGE, "code": "context_length_exceeded"}},
            {},
            ": the conversation is too long for the model",
        ),
        # vLLM: a top-level error whose code is the status; only its message says why.
        (
            400,
            {"object": "error", "message": CONTEXT_MESSAGE, "type": "BadRequestError", "code": 400},
            {},
            ": the conversation is too long for the model",
        ),
        # llama.cpp server: the error's type.
        (
            400,
            {"error": {"code": 400, "message": "exceeds", "type": "exceed_context_size_error"}},
            {},
            ": the conversation is too long for the model",
        ),
        # Azure OpenAI: a prompt its content filter refused.
        (
            400,
            {"error": {"message": "filtered", "param": "prompt", "code": "content_filter"}},
            {},
            ": its provider's content filter refused the prompt",
        ),
        # OpenAI: out of quota (no retry cures it), not busy.
        (
            429,
            {"error": {"message": "You exceeded your quota", "code": "insufficient_quota"}},
            {},
            ": the account is over its quota",
        ),
        # OpenRouter, DeepSeek: no credit left.
        (402, {"error": {"code": 402, "message": "Insufficient credits"}}, {}, ": the account"),
        # Groq, Azure, OpenAI: how long to wait.
        (
            429,
            {"error": {"message": "Rate limit reached", "code": "rate_limit_exceeded"}},
            {"Retry-After": "8"},
            ": it is busy or over its quota; try again in 8 s",
        ),
        (
            503,
            {"error": {"message": "Overloaded"}},
            {"Retry-After": "2"},
            ": it is unavailable; try again in 2 s",
        ),
    ],
)
async def test_an_error_status_says_what_its_body_code_means(
    serve: Serve, status: int, body: dict[str, Any], headers: dict[str, str], meaning: str
) -> None:
    """What providers' error bodies say in their ``code`` or ``type`` (a conversation over
    the model's context, a filtered prompt, no quota or credit) and a ``Retry-After``
    reach the client as the library's own words, never the server's message."""

    async def error(request: Request, reply: Reply) -> None:
        await reply.whole(status, json.dumps(body), headers=headers)

    upstream = await serve(error)
    async with client(upstream.url) as api:
        with pytest.raises(StreamError) as caught:
            await collect(openai_chat(MESSAGES, client=api))
    assert caught.value.code == StreamErrorCode.UPSTREAM_ERROR
    assert caught.value.message.startswith(f"The model server answered HTTP {status}{meaning}")
    assert CONTEXT_MESSAGE not in caught.value.message


async def test_the_client_made_for_a_reply_does_not_retry(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One request, however the server fails: the SDK's retries would multiply the
    documented timeouts (and a passed ``client`` keeps its own policy)."""

    async def overloaded(request: Request, reply: Reply) -> None:
        await reply.whole(503, json.dumps({"error": {"message": "Overloaded"}}))

    upstream = await serve(overloaded)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(StreamError) as caught:
        await collect(openai_chat(MESSAGES, base_url=f"{upstream.url}/v1", api_key="k"))
    assert caught.value.details == {"status": 503}
    assert len(upstream.requests) == 1


async def test_an_error_inside_the_stream_is_an_upstream_error(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    async def error_midway(request: Request, reply: Reply) -> None:
        await reply.head()
        await reply.event(chunk("partial"))
        await reply.event({"error": {"message": "The model overloaded", "type": "server_error"}})
        await reply.end()

    upstream = await serve(error_midway)
    async with client(upstream.url) as api:
        pieces, error = await failure(openai_chat(MESSAGES, client=api))
    assert pieces == ["partial"]
    assert error.code == StreamErrorCode.UPSTREAM_ERROR
    assert error.message == "The model server reported an error mid-reply"
    assert "The model overloaded" in caplog.text


async def test_a_dropped_connection_is_an_upstream_error(serve: Serve) -> None:
    async def drop_midway(request: Request, reply: Reply) -> None:
        await reply.head()
        await reply.event(chunk("partial"))
        reply.drop()

    upstream = await serve(drop_midway)
    async with client(upstream.url) as api:
        pieces, error = await failure(openai_chat(MESSAGES, client=api))
    assert pieces == ["partial"]
    assert error.code == StreamErrorCode.UPSTREAM_ERROR


async def test_a_refused_connection_is_an_upstream_error_and_the_log_says_where(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with client(f"http://127.0.0.1:{port}") as api:
        with pytest.raises(StreamError) as caught:
            await collect(openai_chat(MESSAGES, client=api))
    assert caught.value.code == StreamErrorCode.UPSTREAM_ERROR
    [record] = [r for r in caplog.records if "could not be reached" in r.getMessage()]
    assert f"http://127.0.0.1:{port}/v1/chat/completions" in record.getMessage()
    assert "ConnectError" in record.getMessage()


async def test_a_slow_token_is_a_timeout_and_closes_the_connection(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    upstream = await serve(one_token_then_wait)
    async with client(upstream.url) as api:
        pieces, error = await failure(openai_chat(MESSAGES, client=api, read_timeout=0.2))
    assert pieces == ["first"]
    assert error.code == StreamErrorCode.TIMEOUT
    await asyncio.wait_for(upstream.client_gone.wait(), WAIT_LIMIT)
    # The log says which server (the client is told only that the model server timed out).
    assert f"The model server at {upstream.url}/v1/chat/completions" in caplog.text


async def test_the_log_leaves_out_a_key_in_the_query_or_the_user_info(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    """A gateway that takes its key in the URL (Azure's ``?api-key=``, ``user:key@host``)
    does not have it logged when its server fails."""
    upstream = await serve(one_token_then_wait)
    host = upstream.url.removeprefix("http://")
    api = openai.AsyncOpenAI(
        api_key="test-key",
        base_url=f"http://user:SECRET-IN-USERINFO@{host}/v1",
        default_query={"api-key": "SECRET-IN-QUERY"},
        max_retries=0,
    )
    async with api:
        pieces, error = await failure(openai_chat(MESSAGES, client=api, read_timeout=0.2))
    assert (pieces, error.code) == (["first"], StreamErrorCode.TIMEOUT)
    [request] = upstream.requests
    assert request.path == "/v1/chat/completions?api-key=SECRET-IN-QUERY"  # sent, not logged
    assert f"The model server at {upstream.url}/v1/chat/completions sent" in caplog.text
    assert "SECRET" not in caplog.text


async def test_a_timeout_before_the_first_chunk_is_told_from_one_between_chunks(
    serve: Serve,
) -> None:
    """A server that answers nothing for UPSTREAM_READ_TIMEOUT (a local model loading from
    disk, as Ollama's first request does) is not said to have paused between chunks."""

    async def loading(request: Request, reply: Reply) -> None:
        await reply.wait_gone()  # not even a head: the model is still loading

    upstream = await serve(loading)
    async with client(upstream.url) as api:
        pieces, error = await failure(openai_chat(MESSAGES, client=api, read_timeout=0.2))
    assert pieces == []
    assert error.code == StreamErrorCode.TIMEOUT
    assert error.message == "The model server sent nothing for 0.2 s before its reply began"
    upstream = await serve(one_token_then_wait)
    async with client(upstream.url) as api:
        pieces, error = await failure(openai_chat(MESSAGES, client=api, read_timeout=0.2))
    assert pieces == ["first"]
    assert error.message == "The model server sent nothing for 0.2 s mid-reply"


async def test_cancelling_the_consumer_closes_the_upstream_connection(serve: Serve) -> None:
    upstream = await serve(one_token_then_wait)
    async with client(upstream.url) as api:
        await cancel_after_first_piece(openai_chat(MESSAGES, client=api), upstream)


async def test_aclose_closes_the_upstream_connection(serve: Serve) -> None:
    upstream = await serve(one_token_then_wait)
    async with client(upstream.url) as api:
        source = openai_chat(MESSAGES, client=api)
        assert await anext(source) == "first"
        await source.aclose()
        # The shared client stays open: only the closed SDK stream ends the connection.
        await asyncio.wait_for(upstream.client_gone.wait(), WAIT_LIMIT)


async def test_aclose_of_an_own_client_closes_the_upstream_connection(serve: Serve) -> None:
    upstream = await serve(one_token_then_wait)
    source = openai_chat(MESSAGES, base_url=f"{upstream.url}/v1", api_key="k")
    assert await anext(source) == "first"
    await source.aclose()
    await asyncio.wait_for(upstream.client_gone.wait(), WAIT_LIMIT)


async def test_a_stream_cut_short_is_an_upstream_error_not_a_complete_reply(
    serve: Serve,
) -> None:
    """The body ends cleanly, but without a ``finish_reason`` (and ``[DONE]``): the model
    server stopped mid-reply, and the text so far is not the whole reply."""

    async def cut(request: Request, reply: Reply) -> None:
        await reply.head()
        await reply.event(chunk("", role="assistant"))
        await reply.event(chunk("Hel"))
        await reply.event(chunk("lo"))
        await reply.end()

    upstream = await serve(cut)
    async with client(upstream.url) as api:
        pieces, error = await failure(openai_chat(MESSAGES, client=api))
    assert pieces == ["Hel", "lo"]
    assert error.code == StreamErrorCode.UPSTREAM_ERROR
    assert "ended before the reply was finished" in error.message


async def test_a_finish_reason_without_done_is_a_complete_reply(serve: Serve) -> None:
    """The stream is closed at ``finish_reason``: a server that then keeps it open, with
    no ``[DONE]``, does not hold the finished reply until a timeout."""

    async def no_done(request: Request, reply: Reply) -> None:
        await reply.head()
        await reply.event(chunk("Hi"))
        await reply.event(chunk(finish="stop"))
        await reply.wait_gone()

    upstream = await serve(no_done)
    async with client(upstream.url) as api:
        pieces = await asyncio.wait_for(collect(openai_chat(MESSAGES, client=api)), 5)
    assert pieces == ["Hi"]


async def test_a_server_that_marks_every_chunk_finished_is_read_to_its_end(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some servers (relays of other providers) put ``finish_reason: "stop"`` on every
    chunk: text after it shows it, and the stream is then read to ``[DONE]`` however long
    the model pauses (without that text, a stream left open ends ``FINISH_GRACE`` after
    its ``finish_reason``)."""
    from streaming.sources import openai as source

    monkeypatch.setattr(source, "FINISH_GRACE", 0.2)

    async def every_chunk(request: Request, reply: Reply) -> None:
        await reply.head()
        await reply.event(chunk("Hello", finish="stop"))
        await reply.event(chunk(", this is", finish="stop"))
        await asyncio.sleep(0.5)
        await reply.event(chunk(" the whole answer.", finish="stop"))
        await reply.event("[DONE]")
        await reply.end()

    upstream = await serve(every_chunk)
    async with client(upstream.url) as api:
        pieces = await collect(openai_chat(MESSAGES, client=api))
    assert "".join(pieces) == "Hello, this is the whole answer."


@pytest.mark.parametrize(
    ("finish", "meaning"),
    [
        ("length", "length limit"),
        ("content_filter", "filtered"),
        ("tool_calls", "tool call"),
        ("function_call", "function call"),
        # OpenRouter's finish_reason when the provider failed mid-reply.
        ("error", "error mid-reply"),
    ],
)
async def test_a_reply_the_model_did_not_finish_is_an_upstream_error(
    serve: Serve, finish: str, meaning: str
) -> None:
    """Cut at the token limit, filtered, or a call this source cannot run: the text so far,
    then an error that says so, not a reply that looks complete."""

    async def unfinished(request: Request, reply: Reply) -> None:
        await reply.head()
        await reply.event(chunk("The answer is"))
        await reply.event(chunk(finish=finish))
        await reply.event("[DONE]")
        await reply.end()

    upstream = await serve(unfinished)
    async with client(upstream.url) as api:
        pieces, error = await failure(openai_chat(MESSAGES, client=api))
    assert pieces == ["The answer is"]
    assert error.code == StreamErrorCode.UPSTREAM_ERROR and meaning in error.message
    assert error.details == {"finish_reason": finish}


@pytest.mark.parametrize(
    ("body", "code", "reason"),
    [
        (b"data: null\n\n", "UPSTREAM_ERROR", "not a JSON object"),
        (b"data: [1, 2]\n\n", "UPSTREAM_ERROR", "not a JSON object"),
        (b'data: "text"\n\n', "UPSTREAM_ERROR", "not a JSON object"),
        (b"data: 5\n\n", "UPSTREAM_ERROR", "not a JSON object"),
        (b"data: " + b"x" * 3000 + b"\n\n", "PARSE_ERROR", "longer than 2048"),
        (b"data: {" + b" " * 3000, "PARSE_ERROR", "longer than 2048"),
    ],
)
async def test_data_that_is_not_a_json_object_or_a_line_too_long_is_refused(
    serve: Serve, body: bytes, code: str, reason: str
) -> None:
    """Never ``INTERNAL_ERROR`` (the SDK failing on a value that is not an object), and
    no line read past ``UPSTREAM_MAX_LINE`` however the server splits it."""

    async def malformed(request: Request, reply: Reply) -> None:
        await reply.head()
        await reply.event(chunk("before"))
        for start in range(0, len(body), 1000):
            await reply.chunk(body[start : start + 1000])
        await reply.event(chunk(finish="stop"))
        await reply.end()

    upstream = await serve(malformed)
    with override_settings(STREAMING={"UPSTREAM_MAX_LINE": 2048}):
        async with client(upstream.url) as api:
            pieces, error = await failure(openai_chat(MESSAGES, client=api))
    assert pieces == ["before"]
    assert error.code == code and reason in error.message


@pytest.mark.parametrize("kind", ["application/json", "text/html; charset=utf-8"])
async def test_a_body_that_is_not_a_stream_is_said_to_be_one(serve: Serve, kind: str) -> None:
    """A server that ignores ``stream=True`` (a whole completion) or a proxy's page."""

    async def whole(request: Request, reply: Reply) -> None:
        await reply.whole(200, json.dumps({"choices": [{"message": {"content": "Hi"}}]}), kind)

    upstream = await serve(whole)
    async with client(upstream.url) as api:
        pieces, error = await failure(openai_chat(MESSAGES, client=api))
    assert pieces == [] and error.code == StreamErrorCode.UPSTREAM_ERROR
    assert (
        error.message == f"The model server did not stream its reply (it sent {kind.split(';')[0]})"
    )


async def test_events_without_data_and_other_choices_are_passed_over(serve: Serve) -> None:
    """``id:``, ``retry:`` or ``event:`` alone dispatch nothing in SSE; a second choice
    (``n`` > 1) is not mixed into the first one's text."""

    async def odd(request: Request, reply: Reply) -> None:
        await reply.head()
        await reply.event(chunk("A"))
        await reply.chunk("id: 7\n\nretry: 1000\n\nevent: x\n\ndata:\n\n")
        second = chunk("B")
        second["choices"][0]["index"] = 1
        await reply.event(second)
        await reply.event(chunk("C", finish="stop"))
        await reply.end()

    upstream = await serve(odd)
    async with client(upstream.url) as api:
        assert await collect(openai_chat(MESSAGES, client=api)) == ["A", "C"]


async def test_done_without_a_finish_reason_is_a_complete_reply(serve: Serve) -> None:
    async def done_only(request: Request, reply: Reply) -> None:
        await reply.head()
        await reply.event(chunk("Hi"))
        await reply.event("[DONE]")
        await reply.end()

    upstream = await serve(done_only)
    async with client(upstream.url) as api:
        assert await collect(openai_chat(MESSAGES, client=api)) == ["Hi"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'data: {"choices": [{"index": 0, "delta": {"content": "a"\n\n', "not valid JSON"),
        (b"data: \xff\xfe{}\n\n", "invalid UTF-8"),
    ],
)
async def test_a_malformed_stream_is_an_upstream_error_with_a_clear_message(
    serve: Serve, body: bytes, reason: str
) -> None:
    async def malformed(request: Request, reply: Reply) -> None:
        await reply.head()
        await reply.event(chunk("before"))
        await reply.chunk(body)
        await reply.event(chunk(finish="stop"))
        await reply.end()

    upstream = await serve(malformed)
    async with client(upstream.url) as api:
        pieces, error = await failure(openai_chat(MESSAGES, client=api))
    assert pieces == ["before"]
    assert error.code == StreamErrorCode.UPSTREAM_ERROR
    assert reason in error.message


async def test_sse_response_of_an_sdk_stream_tells_its_failure_as_openai_chat_does(
    serve: Serve,
) -> None:
    """``sse_response(client.chat.completions.create(..., stream=True))``: the chunks as
    JSON, and an SDK failure (an error status, an error inside the stream) as the
    ``UPSTREAM_ERROR`` event ``openai_chat`` gives, not a bare ``INTERNAL_ERROR``."""
    from streaming import sse_response
    from streaming.testing import read_sse

    async def overloaded(request: Request, reply: Reply) -> None:
        await reply.whole(503, json.dumps({"error": {"message": "Overloaded"}}))

    async def error_midway(request: Request, reply: Reply) -> None:
        await reply.head()
        await reply.event(chunk("partial"))
        await reply.event({"error": {"message": "The model overloaded", "type": "server_error"}})
        await reply.end()

    for script, expected in ((hello, None), (overloaded, "HTTP 503"), (error_midway, "mid-reply")):
        upstream = await serve(script)
        async with client(upstream.url) as api:
            stream = api.chat.completions.create(model="m", messages=MESSAGES, stream=True)
            events = await read_sse(sse_response(stream))
        last = json.loads(events[-1].data)
        if expected is None:
            chunks = [json.loads(event.data) for event in events]
            text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[:-1])
            assert text == "Hello, world!" and last["usage"] == {"total_tokens": 3}
            continue
        assert events[-1].event == "error"
        assert last["code"] == "UPSTREAM_ERROR" and expected in last["message"], last


async def test_a_held_reply_reads_what_its_upstream_sent_meanwhile(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``FLUSH_INTERVAL_MS``: while a reply holds a message it does not read the SDK's
    stream; the tokens the upstream wrote meanwhile wait in the socket and are all read
    after the hold, none lost, in a few messages."""

    async def fast(request: Request, reply: Reply) -> None:
        await reply.head()
        for index in range(60):
            await reply.event(chunk(f"{index} "))
            await asyncio.sleep(0.002)
        await reply.event(chunk(finish="stop"))
        await reply.event("[DONE]")
        await reply.end()

    read_after_holds: list[int] = []
    seal_drained = EventWriter._seal_drained

    def counting(writer: EventWriter, held: int) -> None:
        read_after_holds.append(len(writer.text) - held)
        seal_drained(writer, held)

    monkeypatch.setattr(EventWriter, "_seal_drained", counting)
    upstream = await serve(fast)
    generations = Generations(MemoryStore())
    source = openai_chat(MESSAGES, model="test-model", base_url=f"{upstream.url}/v1", api_key="k")
    with override_settings(STREAMING={"FLUSH_INTERVAL_MS": 50}):
        generation_id = await generations.start(source, Pipeline(), owner="me")
    events: list[GenerationEvent] = []
    async with asyncio.timeout(WAIT_LIMIT):
        async for batch in generations.follow(generation_id, "me"):
            events += batch
    chunks = [e for e in events if isinstance(e, Chunk)]
    assert "".join(c.text for c in chunks) == "".join(f"{i} " for i in range(60))
    assert isinstance(events[-1], Complete)
    assert len(chunks) < 15
    assert max(read_after_holds) > 5  # many tokens read at once from the socket's buffer
