"""The wire format: encoding rules and the incremental WHATWG parser."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streaming import ServerSentEvent, StreamError
from streaming.consumers import StreamConsumer
from streaming.events import Chunk
from streaming.protocols import SSEMessages
from streaming.sse import SSEParser, encode_comment, encode_fields, serialize_data
from streaming.views import SSEView


def parse_all(data: bytes | str) -> list[tuple[str, str, str | None, int | None]]:
    parser = SSEParser()
    events = parser.feed(data) + parser.close()
    return [(e.event, e.data, e.id, e.retry) for e in events]


def test_field_order_is_id_event_retry_data() -> None:
    assert encode_fields("x", event_id="1", event="e", retry=0) == (
        b"id: 1\nevent: e\nretry: 0\ndata: x\n\n"
    )


def test_data_is_split_on_every_kind_of_line_break() -> None:
    assert encode_fields("a\r\nb\rc\nd") == b"data: a\ndata: b\ndata: c\ndata: d\n\n"
    assert encode_fields("end\n") == b"data: end\ndata: \n\n"


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\r\nid: 1"])
def test_event_names_cannot_inject_fields(bad: str) -> None:
    with pytest.raises(StreamError) as caught:
        ServerSentEvent(data="x", event=bad)
    assert caught.value.code == "INVALID_FIELD"


@pytest.mark.parametrize("bad", ["1\n", "1\r2", "a\0b"])
def test_ids_cannot_inject_fields_or_hold_nul(bad: str) -> None:
    with pytest.raises(StreamError):
        ServerSentEvent(data="x", id=bad)


@pytest.mark.parametrize("bad", [-1, 1.5, "10", True])
def test_retry_must_be_a_non_negative_int(bad: object) -> None:
    with pytest.raises(StreamError):
        ServerSentEvent(data="x", retry=bad)  # type: ignore[arg-type]


def test_serialization_of_payloads() -> None:
    assert serialize_data(None) is None
    assert serialize_data("") is None
    assert serialize_data(" ") == " "
    assert serialize_data({"é": [1, None, True]}) == '{"é":[1,null,true]}'
    assert serialize_data(3.5) == "3.5"


def test_comments_are_encoded_line_by_line() -> None:
    assert encode_comment("a\nb") == b": a\n: b\n\n"
    assert encode_comment() == b":\n\n"


def test_parser_follows_the_whatwg_rules() -> None:
    stream = (
        "\ufeffdata:no space\n\n"  # BOM stripped, one optional space
        ": comment\n"
        "event: custom\ndata:  two spaces\nid: 7\nretry: 12\n\n"
        "retry: 1.5\ndata\n\n"  # invalid retry ignored; bare "data" appends an empty line
        f"retry: {'9' * 5000}\nretry: \u00b2\ndata: past int's limits\n\n"  # ignored too
        "id: bad\0id\nevent: only\n\n"  # NUL id ignored; no data: nothing dispatched
        "unknown: field\ndata: a\r\ndata: b\r\n\r\n"
        "data: incomplete at the end"
    )
    assert parse_all(stream.encode()) == [
        ("message", "no space", None, None),
        ("custom", " two spaces", "7", 12),
        ("message", "", "7", None),
        ("message", "past int's limits", "7", None),
        ("message", "a\nb", "7", None),
    ]


def test_parser_waits_for_crlf_split_across_chunks() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: x\r") == []
    assert parser.feed(b"\n\r") == []
    assert [e.data for e in parser.feed(b"\n")] == ["x"]


def test_parser_limits_line_length() -> None:
    parser = SSEParser(max_line=10)
    with pytest.raises(StreamError) as caught:
        parser.feed(b"data: " + b"x" * 20)
    assert caught.value.code == "PARSE_ERROR"


@given(
    messages=st.lists(st.text(min_size=1), min_size=1, max_size=5),
    event=st.one_of(st.none(), st.text(alphabet=st.characters(blacklist_characters="\r\n"))),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=8),
)
def test_any_payload_round_trips_through_any_split(
    messages: list[str], event: str | None, cuts: list[int]
) -> None:
    """Encode, cut the bytes anywhere (even inside a UTF-8 character), parse back."""
    wire = b"".join(
        ServerSentEvent(data=m, event=event or None, id=str(n)).encode()
        for n, m in enumerate(messages)
    )
    parser = SSEParser()
    received = []
    start = 0
    for cut in sorted({c % (len(wire) + 1) for c in cuts}):
        received += parser.feed(wire[start:cut])
        start = cut
    received += parser.feed(wire[start:]) + parser.close()
    expected = [m.replace("\r\n", "\n").replace("\r", "\n") for m in messages]
    assert [e.data for e in received] == expected
    assert [e.id for e in received] == [str(n) for n in range(len(messages))]
    assert {e.event for e in received} <= {event or "message"}


_TRICKY = st.text(alphabet=st.sampled_from('a"\\/\n\r\t\x00\x1f\x7fé€😀\u2028<>&'), max_size=12)


@given(
    st.dictionaries(_TRICKY, _TRICKY | st.integers(), max_size=8)
    | st.dictionaries(_TRICKY, st.integers() | st.none() | st.booleans() | st.floats(), max_size=3)
)
def test_small_dicts_serialize_as_the_json_encoder_writes_them(payload: dict[str, object]) -> None:
    """A reply's ``{"chunk": text}`` (an SSE message's data) and a WebSocket ``chunk``
    frame are written without the encoder (once per token): the same text as the encoder,
    for any keys and values."""
    assert serialize_data(payload) == json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    assert asyncio.run(StreamConsumer.encode_json(payload)) == json.dumps(payload)


@given(st.text(max_size=20), st.none() | st.text(alphabet="abc:1", max_size=5))
def test_a_message_of_one_line_is_framed_as_the_general_rule_frames_it(
    data: str, event_id: str | None
) -> None:
    message = ServerSentEvent(data, id=event_id)
    encoded = message.encode()
    if data:
        assert parse_all(encoded) == [("message", data.replace("\r\n", "\n").replace("\r", "\n"),
                                       event_id, None)]  # fmt: skip
    framed = encode_fields(data or None, event_id=event_id)
    assert framed == encoded
    lines = [f"id: {event_id}\n"] if event_id is not None else []
    lines += [f"data: {line}\n" for line in re.split(r"\r\n|\r|\n", data)] if data else []
    assert framed == ("".join(lines) + "\n").encode()


@pytest.mark.parametrize("bad", ["g\n", "g\rdata: x", "g\0"])
def test_a_reply_id_that_could_inject_fields_is_refused_by_its_chunk_messages(bad: str) -> None:
    with pytest.raises(StreamError) as caught:
        SSEMessages().messages(bad, [Chunk(1, "x")])
    assert caught.value.code == "INVALID_FIELD"
    assert SSEMessages().messages("g", [Chunk(2, "x")]) == [
        ServerSentEvent('{"chunk":"x"}', id="g:2")
    ]


@given(st.text())
def test_a_chunk_message_pre_encoded_is_the_bytes_of_its_json_object(text: str) -> None:
    (message,) = SSEMessages().messages("g", [Chunk(3, text)])
    assert message.encode() == ServerSentEvent({"chunk": text}, id="g:3").encode()
    (other,) = SSEMessages(lambda text: {"delta": text}).messages("g", [Chunk(3, text)])
    assert other == ServerSentEvent({"delta": text}, id="g:3")


def test_sse_view_pre_encodes_its_chunks_unless_chunk_message_is_overridden() -> None:
    class Default(SSEView):
        pass

    class Custom(SSEView):
        def chunk_message(self, text: str) -> Any:
            return {"delta": text}

    assert Default().get_protocol().messages("g", [Chunk(1, "é")])[0].data == '{"chunk":"é"}'
    assert Custom().get_protocol().messages("g", [Chunk(1, "é")])[0].data == {"delta": "é"}
