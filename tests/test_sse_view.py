"""``SSEView`` over a real daphne: messages, pipelines, reconnects, permissions, bad input."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from streaming.sources import DemoModel
from streaming.sse import ParsedEvent, SSEParser
from streaming.testing import parse_sse, read_sse, ws_reply

from .conftest import wait_for_probe
from .transport_views import PLAIN_REPLY, XML_REPLY, XML_TEXT


def key() -> str:
    return uuid.uuid4().hex


def messages(response: httpx.Response) -> list[Any]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    return [json.loads(event.data) for event in parse_sse(response.content)]


def streamed_text(received: list[Any]) -> str:
    return "".join(message["chunk"] for message in received if "chunk" in message)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_only_the_text_of_an_xml_reply_reaches_the_client(http: httpx.Client, size: int) -> None:
    received = messages(http.get("/sse/response-only", params={"size": size}))
    assert streamed_text(received) == XML_TEXT
    assert received[-1] == {"done": True}
    assert "secret" not in json.dumps(received)


def test_messages_have_increasing_ids_and_the_seed_shape(http: httpx.Client) -> None:
    events = parse_sse(http.get("/sse/scripted", params={"size": 4}).content)
    generations = {(event.id or "").split(":")[0] for event in events}
    assert len(generations) == 1 and len(generations.pop()) == 32
    ids = [int((event.id or "").split(":")[1]) for event in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids) and ids[0] >= 1
    shapes = {tuple(sorted(json.loads(event.data))) for event in events}
    assert shapes == {("chunk",), ("done",)}


@pytest.mark.parametrize(
    ("pipeline", "reply", "expected"),
    [
        ("passthrough", "xml", XML_REPLY),
        ("xml", "xml", XML_TEXT),
        ("response", "xml", XML_TEXT),
        ("action", "xml", XML_TEXT),
        ("response", "plain", ""),  # no <actions>REPLY</actions>: nothing is streamed
        ("action", "plain", PLAIN_REPLY),
        ("passthrough", "plain", PLAIN_REPLY),
    ],
)
def test_a_request_picks_its_pipeline_by_name(
    http: httpx.Client, pipeline: str, reply: str, expected: str
) -> None:
    params = {"pipeline": pipeline, "reply": reply, "size": 5}
    assert streamed_text(messages(http.get("/sse/scripted", params=params))) == expected


def test_post_takes_a_json_body_with_the_csrf_token(http: httpx.Client) -> None:
    http.get("/")
    token = http.cookies["csrftoken"]
    response = http.post(
        "/sse/scripted",
        json={"pipeline": "response", "size": 2},
        headers={"X-CSRFToken": token},
    )
    assert streamed_text(messages(response)) == XML_TEXT


def test_post_without_the_csrf_token_is_refused(live_url: str) -> None:
    with httpx.Client(base_url=live_url, timeout=10) as fresh:
        assert fresh.post("/sse/scripted", json={}).status_code == 403


@pytest.mark.parametrize(
    ("request_kwargs", "code"),
    [
        ({"params": {"pipeline": "nope"}}, "UNKNOWN_PIPELINE"),
        ({"content": b"not json"}, "BAD_REQUEST"),
        ({"content": b"[1, 2]"}, "BAD_REQUEST"),
        ({"content": b"\xff\xfe"}, "BAD_REQUEST"),
    ],
)
def test_bad_input_is_a_400_with_a_json_error(
    http: httpx.Client, request_kwargs: dict[str, Any], code: str
) -> None:
    http.get("/")
    method = "POST" if "content" in request_kwargs else "GET"
    response = http.request(
        method,
        "/sse/scripted",
        headers={"X-CSRFToken": http.cookies["csrftoken"], "Content-Type": "application/json"},
        **request_kwargs,
    )
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == code and body["error"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "BAD_REQUEST"),
        ({"prompt": 42}, "BAD_REQUEST"),
        ({"prompt": "   "}, "BAD_REQUEST"),
        ({"prompt": "x" * 40_000}, "PROMPT_TOO_LARGE"),
        ({"prompt": "x" * 3_000_000}, "PROMPT_TOO_LARGE"),  # over DATA_UPLOAD_MAX_MEMORY_SIZE
    ],
)
def test_the_chat_view_refuses_a_missing_or_oversized_prompt(
    http: httpx.Client, body: dict[str, Any], code: str
) -> None:
    http.get("/")
    response = http.post(
        "/chat/stream", json=body, headers={"X-CSRFToken": http.cookies["csrftoken"]}
    )
    assert response.status_code == 400
    assert response.json()["code"] == code


def test_the_chat_view_streams_the_demo_model(http: httpx.Client) -> None:
    received = messages(http.get("/chat/stream", params={"prompt": "Hi there"}))
    reply = DemoModel(xml=True).reply("Hi there")
    expected = reply[reply.index("<text>") + 6 : reply.index("</text>")]
    assert streamed_text(received) == expected
    assert "“Hi there”" in expected
    assert received[-1] == {"done": True}


def test_a_quiet_reply_keeps_its_connection_alive_with_comments(http: httpx.Client) -> None:
    """A model silent for longer than KEEPALIVE (1 s in the tests' settings): the client
    gets ``: ping`` comments meanwhile (proxies would cut a silent connection), then the
    whole text."""
    parser = SSEParser()
    received = parser.feed(http.get("/sse/scripted", params={"size": 1000, "delay": 2.5}).content)
    assert parser.comments[0] == "stream open"
    assert "ping" in parser.comments
    assert streamed_text([json.loads(event.data) for event in received]) == XML_TEXT


def test_a_reconnect_after_the_end_gets_204_and_starts_nothing(http: httpx.Client) -> None:
    name = key()
    events = parse_sse(http.get("/sse/scripted", params={"key": name}).content)
    last = events[-1].id or ""
    response = http.get("/sse/scripted", params={"key": name}, headers={"Last-Event-ID": last})
    assert response.status_code == 204
    assert "content-type" not in response.headers  # no body to type
    assert http.get(f"/probe/{name}").json() == ["started", "finally"]


def test_an_empty_last_event_id_names_nothing_and_the_reply_starts(http: httpx.Client) -> None:
    """As EventSource, which sends the header only once it has an id: some clients send it
    empty before then."""
    response = http.get("/sse/scripted", params={"key": key()}, headers={"Last-Event-ID": ""})
    assert streamed_text(messages(response)) == XML_TEXT


@pytest.mark.parametrize("last_event_id", ["7", "nope:3", f"{'0' * 32}:1", "a:b"])
def test_a_reconnect_naming_no_reply_gets_404_and_starts_nothing(
    http: httpx.Client, last_event_id: str
) -> None:
    name = key()
    response = http.get(
        "/sse/scripted", params={"key": name}, headers={"Last-Event-ID": last_event_id}
    )
    assert response.status_code == 404
    assert response.json()["code"] == "NOT_FOUND"
    assert http.get(f"/probe/{name}").json() == []


def test_an_error_midway_keeps_what_was_sent_and_ends_with_an_error_message(
    http: httpx.Client,
) -> None:
    params = {"fail": "upstream", "fail_after": 12, "size": 4, "pipeline": "passthrough"}
    received = messages(http.get("/sse/scripted", params=params))
    assert streamed_text(received) == XML_REPLY[:48]
    assert received[-1] == {"error": "The upstream model failed", "code": "UPSTREAM_ERROR"}


def test_an_unexpected_exception_is_an_error_message_without_its_details(
    http: httpx.Client,
) -> None:
    received = messages(http.get("/sse/scripted", params={"fail": "crash"}))
    assert received[-1] == {"error": "The model stream failed", "code": "INTERNAL_ERROR"}
    assert "secret internal detail" not in json.dumps(received)


def test_a_reply_cut_off_inside_text_still_delivers_every_character(
    http: httpx.Client,
) -> None:
    """The pipeline holds back a margin inside <text>; it is flushed before the error."""
    size = XML_REPLY.index("<text>") + len("<text>") + 15
    params = {"fail": "upstream", "fail_after": 1, "size": size, "pipeline": "response"}
    received = messages(http.get("/sse/scripted", params=params))
    assert streamed_text(received) == XML_TEXT[:15]
    assert received[-1]["code"] == "UPSTREAM_ERROR"


def test_a_client_disconnect_closes_the_model_stream(live_url: str, http: httpx.Client) -> None:
    name = key()
    params = {"key": name, "delay": 0.05, "size": 1, "pipeline": "passthrough"}
    with (
        httpx.Client(base_url=live_url, timeout=10) as client,
        client.stream("GET", "/sse/scripted", params=params) as response,
    ):
        parser = SSEParser()
        seen: list[ParsedEvent] = []
        for chunk in response.iter_raw():
            seen += parser.feed(chunk)
            if len(seen) >= 3:
                break
    wait_for_probe(http, name, ["started", "finally"])


def test_login_required_mixin_redirects_anonymous_users(http: httpx.Client) -> None:
    response = http.get("/sse/login")
    assert response.status_code == 302
    assert response.headers["location"].startswith("/accounts/login/")


def test_check_permissions_refuses_with_403_before_streaming(http: httpx.Client) -> None:
    name = key()
    assert http.get("/sse/denied", params={"key": name}).status_code == 403
    assert http.get(f"/probe/{name}").json() == []


def test_message_hooks_change_the_wire_shape(http: httpx.Client) -> None:
    events = parse_sse(http.get("/sse/custom", params={"size": 5}).content)
    assert "".join(json.loads(e.data)["delta"] for e in events[:-1]) == XML_TEXT
    assert events[-1].data == "[DONE]"
    failed = parse_sse(http.get("/sse/custom", params={"fail": "upstream"}).content)
    assert json.loads(failed[-1].data) == {"failure": "The upstream model failed"}


def test_validation_fields_stream_and_events_are_named_sse_events(http: httpx.Client) -> None:
    events = parse_sse(http.get("/sse/validation", params={"size": 4}).content)
    chunks = [
        json.loads(e.data)["chunk"] for e in events if e.event == "message" and "chunk" in e.data
    ]
    assert "".join(chunks) == XML_TEXT
    named = [e.event for e in events if e.event != "message"]
    assert "field_validated" in named or "complete" in named
    assert json.loads(events[-1].data) == {"done": True}


async def test_the_testing_helpers_read_a_test_client_response(async_client: Any) -> None:
    response = await async_client.get("/sse/scripted", {"size": 3})
    events = await read_sse(response)
    assert "".join(json.loads(e.data).get("chunk", "") for e in events) == XML_TEXT
    assert json.loads(events[-1].data) == {"done": True}


def test_read_sse_says_what_a_response_that_is_no_event_stream_was(client: Any) -> None:
    """Under the sync test ``Client`` an ``SSEView`` answers 500 (it needs ASGI): read_sse
    raises with that, never returns no events as if the reply were empty."""
    import asyncio

    response = client.get("/sse/scripted", {"size": 3})
    with pytest.raises(AssertionError, match="Not an event stream: 500"):
        asyncio.run(read_sse(response))


async def test_ws_reply_reads_past_extractor_event_frames() -> None:
    """A consumer that sends its extractors' events (the chat's ``reasoning``): ws_reply
    returns the whole reply, up to its end frame."""
    from channels.testing import WebsocketCommunicator

    from .transport_views import ScriptedConsumer

    class WithEvents(ScriptedConsumer):
        send_extractor_events = True

    communicator = WebsocketCommunicator(
        WithEvents.as_asgi(), "/ws/events/", headers=[(b"origin", b"http://127.0.0.1")]
    )
    assert (await communicator.connect())[0]
    frames = await ws_reply(communicator, "Hi", size=4, pipeline="xml")
    await communicator.disconnect()
    assert frames[0]["type"] == "event"
    assert frames[-1]["type"] == "complete" and "<thought>" not in frames[-1]["fullResponse"]


async def test_the_testing_helpers_drive_a_consumer() -> None:
    from channels.testing import WebsocketCommunicator

    from .asgi import websocket_application

    communicator = WebsocketCommunicator(
        websocket_application, "/ws/scripted/", headers=[(b"origin", b"http://127.0.0.1")]
    )
    assert (await communicator.connect())[0]
    frames = await ws_reply(communicator, "Hi", size=4)
    await communicator.disconnect()
    assert frames[-1]["type"] == "complete" and frames[-1]["fullResponse"] == XML_TEXT


def test_a_view_or_consumer_that_would_fail_every_request_is_refused_as_it_is_made() -> None:
    """An extractor instance where a class or factory belongs, a misspelt disconnect
    policy (which would act as neither), or a default pipeline that is not one of its
    pipelines: ``ImproperlyConfigured`` at import, not a 500 on every request."""
    from django.core.exceptions import ImproperlyConfigured

    from streaming.consumers import StreamConsumer
    from streaming.extractors import XmlTagExtractor
    from streaming.views import SSEView

    for base in (SSEView, StreamConsumer):
        with pytest.raises(ImproperlyConfigured, match="holds a XmlTagExtractor instance"):
            type("Chat", (base,), {"extractors": [XmlTagExtractor("text")]})
        with pytest.raises(ImproperlyConfigured, match=r"pipelines\['xml'\] holds"):
            type("Chat", (base,), {"pipelines": {"xml": [XmlTagExtractor("text")]}})
        with pytest.raises(ImproperlyConfigured, match="'json' is not one of its pipelines"):
            type(
                "Chat",
                (base,),
                {"pipelines": {"xml": [XmlTagExtractor]}, "default_pipeline": "json"},
            )
        with pytest.raises(ImproperlyConfigured, match="disconnect_policy 'kep' is none of"):
            type("Chat", (base,), {"disconnect_policy": "kep"})
        type("Chat", (base,), {"pipelines": {"xml": [XmlTagExtractor]}, "default_pipeline": "xml"})
        type("Chat", (base,), {"disconnect_policy": "keep"})


def test_a_stream_hook_gets_the_parameters_it_names_and_refuses_others() -> None:
    """Without ``**params`` a hook gets the parameters it names (``pipeline`` only if it
    names it: the view reads that one itself); any other is a ``BAD_REQUEST``."""
    from streaming import StreamError
    from streaming.requests import stream_params
    from streaming.views import SSEView

    class Narrow(SSEView):
        def stream(self, prompt: str, temperature: float = 0.5, *, top_p: float = 1) -> Any:  # type: ignore[override]
            return [prompt]

    class Wide(SSEView):
        def stream(self, prompt: str, **params: Any) -> Any:
            return [prompt]

    asked = {"prompt": "p", "temperature": 1, "top_p": 0.9, "pipeline": "xml"}
    assert stream_params(Narrow().stream, asked, "prompt") == {"temperature": 1, "top_p": 0.9}
    assert stream_params(Wide().stream, {**asked, "_": "1"}, "prompt") == {
        "temperature": 1,
        "top_p": 0.9,
        "pipeline": "xml",
        "_": "1",
    }
    with pytest.raises(StreamError) as refused:
        stream_params(Narrow().stream, {**asked, "_": "1"}, "prompt")
    assert (refused.value.code, refused.value.message) == ("BAD_REQUEST", "Unknown parameter '_'")

    def plain(prompt: str, seed: int = 0) -> Any:
        return [prompt]

    assert stream_params(plain, {"prompt": "p", "seed": 3}, "prompt") == {"seed": 3}

    # A callable object that cannot be hashed; a hook made per request is not kept alive.
    import dataclasses
    import gc
    import weakref

    @dataclasses.dataclass
    class Model:
        temperature: float = 0.0

        def __call__(self, prompt: str, seed: int = 0) -> Any:
            return [prompt]

    assert stream_params(Model(), {"prompt": "p", "seed": 3}, "prompt") == {"seed": 3}
    made = weakref.ref(plain)
    del plain
    gc.collect()
    assert made() is None
