"""The reference cases of ``elysia-cases.json``, served by a real daphne.

``keep`` cases must match the reference body byte for byte apart from ids (ours
increase from 1) and our comments; ``differ`` cases check the documented difference.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from streaming.sse import SSEParser

from .conftest import probe

CASES_FILE = Path(__file__).resolve().parent / "reference" / "elysia-cases.json"
CASES = {case["route"]: case for case in json.loads(CASES_FILE.read_text())["cases"]}

SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"


def normalize(body: str) -> str:
    """Our body in the reference's notation: ids as <nanoid>, our comment blocks removed."""
    body = re.sub(r"(?m)^:[^\n]*\n\n", "", body)
    return re.sub(r"(?m)^id: \d+$", "id: <nanoid>", body)


def fetch(http: httpx.Client, route: str) -> httpx.Response:
    response = http.get(route)
    assert response.status_code == 200
    assert response.headers["content-type"] == SSE_CONTENT_TYPE
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    assert "content-length" not in response.headers
    assert response.text.startswith(": stream open\n\n")
    return response


def events(body: str) -> list[Any]:
    parser = SSEParser()
    return parser.feed(body) + parser.close()


def ids_increase(body: str) -> None:
    ids = [int(n) for n in re.findall(r"(?m)^id: (\d+)$", body)]
    assert ids == list(range(1, len(ids) + 1))


KEEP_AS_IS = [
    "/plugin/send-string",
    "/plugin/send-object",
    "/plugin/event-option",
    "/plugin/retry-option",
    "/plugin/event-retry-option",
    "/plugin/setters",
    "/plugin/send-uint8",
    "/plugin/auto-array",
    "/plugin/auto-array-event",
    "/plugin/auto-promise-array",
    "/plugin/auto-async-gen",
    "/plugin/auto-readable-strings",
    "/plugin/manual-wait",
    "/plugin/value-based",
    "/plugin/with-set-headers",
]


@pytest.mark.parametrize("route", KEEP_AS_IS)
def test_keep_cases_match_the_reference_body(http: httpx.Client, route: str) -> None:
    case = CASES[route]
    assert case["verdict"] == "keep"
    response = fetch(http, route)
    assert normalize(response.text) == case["reference_body"]
    ids_increase(response.text)


def test_custom_headers_are_kept(http: httpx.Client) -> None:
    assert fetch(http, "/plugin/with-set-headers").headers["x-custom"] == "yes"


def test_scalars_keep_the_wire_format_and_none_sends_nothing(http: httpx.Client) -> None:
    # Python has one "nothing" (None) where JavaScript has null and undefined: like
    # undefined, it sends nothing, so the reference's `data: null` message is absent.
    expected = CASES["/plugin/send-scalars"]["reference_body"].replace(
        "id: <nanoid>\ndata: null\n\n", ""
    )
    assert normalize(fetch(http, "/plugin/send-scalars").text) == expected


def test_multiline_data_is_split_into_data_lines(http: httpx.Client) -> None:
    body = fetch(http, "/plugin/send-multiline").text
    assert normalize(body) == (
        "id: <nanoid>\ndata: line1\ndata: line2\ndata: line3\n\n"
        "id: <nanoid>\ndata: crlf1\ndata: crlf2\n\n"
    )
    assert [e.data for e in events(body)] == ["line1\nline2\nline3", "crlf1\ncrlf2"]


def test_retry_zero_is_written_and_empty_event_is_not(http: httpx.Client) -> None:
    assert normalize(fetch(http, "/plugin/retry-zero").text) == (
        "id: <nanoid>\nretry: 0\ndata: x\n\n"
    )


def test_strings_that_look_like_fields_are_framed_as_data(http: httpx.Client) -> None:
    body = fetch(http, "/plugin/send-preformatted-id").text
    received = events(body)
    assert [e.data for e in received] == [
        "id: 7\ndata: custom\n\n",
        "id: 8\nevent: own\ndata: has-event\n\n",
        "data: no-id-here\n\n",
    ]
    assert {e.event for e in received} == {"evt"}
    assert {e.retry for e in received} == {2000}
    ids_increase(body)


def test_a_string_containing_id_colon_is_ordinary_data(http: httpx.Client) -> None:
    body = fetch(http, "/plugin/send-contains-id-substring").text
    assert normalize(body) == (
        "id: <nanoid>\nevent: e\ndata: valid: yes\n\nid: <nanoid>\nevent: e\ndata: normal\n\n"
    )


def test_empty_iterable_closes_at_once(http: httpx.Client) -> None:
    assert normalize(fetch(http, "/plugin/auto-empty").text) == ""


def test_a_string_is_one_message(http: httpx.Client) -> None:
    assert normalize(fetch(http, "/plugin/auto-string").text) == "id: <nanoid>\ndata: abc\n\n"


def test_bytes_items_pass_through_raw_without_label(http: httpx.Client) -> None:
    body = fetch(http, "/plugin/auto-readable-bytes").text
    assert normalize(body) == "data: b1\n\ndata: b2\n\n"


@pytest.mark.parametrize("route", ["/plugin/proxy-fetch", "/plugin/proxy-context"])
def test_sse_upstream_is_forwarded_event_by_event(http: httpx.Client, route: str) -> None:
    body = fetch(http, route).text
    assert normalize(body) == "id: <nanoid>\ndata: up1\n\nid: <nanoid>\nevent: tick\ndata: up2\n\n"
    ids_increase(body)


def test_event_option_applies_to_upstream_events_without_their_own(http: httpx.Client) -> None:
    body = fetch(http, "/plugin/proxy-fetch-awaited-event").text
    assert normalize(body) == (
        "id: <nanoid>\nevent: proxied\ndata: up1\n\nid: <nanoid>\nevent: tick\ndata: up2\n\n"
    )


def test_text_upstream_becomes_data_messages(http: httpx.Client) -> None:
    body = fetch(http, "/plugin/proxy-fetch-text").text
    assert "".join(e.data for e in events(body)) == "plain-1 plain-2 é"


def test_upstream_error_status_is_an_error_event(http: httpx.Client) -> None:
    received = events(fetch(http, "/plugin/proxy-status").text)
    assert [e.event for e in received] == ["error"]
    assert received[0].json() == {
        "message": "The upstream server answered HTTP 502 Bad Gateway",
        "code": "UPSTREAM_ERROR",
    }


def test_upstream_dying_mid_stream_ends_with_an_error_event(http: httpx.Client) -> None:
    received = events(fetch(http, "/plugin/proxy-dies").text)
    assert [e.event for e in received] == ["message", "error"]
    assert received[0].data == "alive"
    # daphne keeps the upstream's connection open after its app failed, so the shared
    # upstream reader reports the silence as the proxy source does: TIMEOUT.
    assert received[1].json() == {
        "message": "The upstream server sent nothing for 10 s",
        "code": "TIMEOUT",
    }


@pytest.mark.parametrize(
    ("route", "secret"),
    [("/plugin/error-midway-auto", "sk-123"), ("/plugin/error-midway-callback", "password")],
)
def test_an_exception_ends_the_stream_with_one_error_event(
    http: httpx.Client, route: str, secret: str
) -> None:
    body = fetch(http, route).text
    received = events(body)
    assert [e.data for e in received[:1]] == ["before-error"]
    assert [e.event for e in received] == ["message", "error"]
    assert received[1].json() == {"message": "The stream failed", "code": "INTERNAL_ERROR"}
    assert secret not in body
    ids_increase(body)


def test_a_sync_callback_error_is_an_error_event_not_a_500(http: httpx.Client) -> None:
    received = events(fetch(http, "/plugin/error-sync-callback").text)
    assert [(e.event, e.json()) for e in received] == [
        ("error", {"message": "sync boom", "code": "UPSTREAM_ERROR"})
    ]


def test_close_is_idempotent_and_send_after_close_raises(http: httpx.Client) -> None:
    body = fetch(http, "/plugin/send-after-close?key=after-close").text
    assert normalize(body) == "id: <nanoid>\ndata: only\n\n"
    assert probe(http, "after-close") == ["send-after-close:STREAM_CLOSED"]


def test_explicit_server_sent_events_set_fields_per_message(http: httpx.Client) -> None:
    body = fetch(http, "/plugin/explicit-events").text
    assert body.split("\n\n", 1)[1] == (
        "id: 1\nevent: custom\nretry: 10\ndata: one\n\n"
        ": just a comment\n\n"
        "id: own-id\ndata: two\n\n"
        "id: 2\ndata: three\n\n"
    )
