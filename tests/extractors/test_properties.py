"""Hypothesis properties of every extractor, on inputs built from realistic XML-ish pieces.

- Any split of the same input gives the same joined output + ``flush()`` and ``done``;
  an agent reply's ``<text>`` streams whether it comes before or after ``<actions>``.
- Each push returns what a whole-buffer model of the reference returns (XmlTagExtractor
  and ActionStreamFilter for any split; ResponseStreamExtractor one character at a time).
- Nothing but ``StreamError`` is raised, and the held buffer stays bounded on long input.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from streaming.errors import StreamError
from streaming.extractors import (
    MAX_BUFFER,
    MAX_CHUNK_SIZE,
    ActionStreamFilter,
    MarkableExtractor,
    PassthroughExtractor,
    Pipeline,
    ResponseStreamExtractor,
    StreamExtractor,
    ValidationStreamExtractor,
    XmlTagExtractor,
)

from .models import ActionFilterModel, ResponseModel, XmlTagModel

PIECES = [
    "<response>",
    "</response>",
    "<thought>",
    "</thought>",
    "<text>",
    "</text>",
    "<actions>",
    "</actions>",
    "<description>",
    "</description>",
    "<code_text_start>",
    "</code_text_start>",
    "<code_text_end>",
    "</code_text_end>",
    "ab12cd34",
    "<te",
    "xt>",
    "</te",
    "</",
    "<",
    ">",
    "REPLY",
    "reply ",
    ",",
    "SEND_EMAIL",
    "Hello world! ",
    "a",
    " ",
    "\n",
    "\u00a0",
    "héllo ",
    "你好",
    "😀",
    "👨\u200d👩\u200d👧",
    '{"text": "<text>x</text>"}',
    "[1, 2]",
    "{",
    "&lt;b&gt;",
]

texts = st.lists(st.sampled_from(PIECES), max_size=40).map("".join)


@st.composite
def split_text(draw: st.DrawFn) -> tuple[str, list[str]]:
    """An input and one way of cutting it into chunks (empty chunks included)."""
    text = draw(texts)
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=12)))
    bounds = [0, *cuts, len(text)]
    return text, [text[a:b] for a, b in itertools.pairwise(bounds)]


FACTORIES: dict[str, Callable[[], StreamExtractor]] = {
    "passthrough": PassthroughExtractor,
    "markable": MarkableExtractor,
    "xml-text": lambda: XmlTagExtractor("text"),
    "xml-thought": lambda: XmlTagExtractor("thought"),
    "xml-description": lambda: XmlTagExtractor("description"),
    "response": ResponseStreamExtractor,
    "action": ActionStreamFilter,
    "pipeline-response-xml": lambda: Pipeline(ResponseStreamExtractor(), PassthroughExtractor()),
    "pipeline-action-action": lambda: Pipeline(ActionStreamFilter(), ActionStreamFilter()),
}


def run(extractor: StreamExtractor, chunks: list[str]) -> tuple[str, bool]:
    """Joined outputs and ``flush()``, and ``done`` after the last push."""
    out = [extractor.push(chunk) for chunk in chunks]
    done = extractor.done
    return "".join(out) + extractor.flush(), done


@settings(max_examples=300, deadline=None)
@given(case=split_text(), name=st.sampled_from(sorted(FACTORIES)))
def test_any_split_gives_the_same_output(case: tuple[str, list[str]], name: str) -> None:
    text, chunks = case
    factory = FACTORIES[name]
    assert run(factory(), chunks) == run(factory(), [text])
    assert run(factory(), chunks) == run(factory(), list(text))


def _pushes(extractor: Any, chunks: list[str]) -> list[tuple[str, bool]]:
    return [(extractor.push(chunk), extractor.done) for chunk in chunks] + [
        (extractor.flush(), extractor.done)
    ]


@settings(max_examples=300, deadline=None)
@given(case=split_text(), tag=st.sampled_from(["text", "thought", "description", ""]))
def test_xml_tag_extractor_matches_the_model(case: tuple[str, list[str]], tag: str) -> None:
    _, chunks = case
    assert _pushes(XmlTagExtractor(tag), chunks) == _pushes(XmlTagModel(tag), chunks)


@settings(max_examples=300, deadline=None)
@given(case=split_text())
def test_action_filter_matches_the_model(case: tuple[str, list[str]]) -> None:
    _, chunks = case
    assert _pushes(ActionStreamFilter(), chunks) == _pushes(ActionFilterModel(), chunks)


@settings(max_examples=300, deadline=None)
@given(text=texts)
def test_response_extractor_matches_the_model_per_character(text: str) -> None:
    chars = list(text)
    assert _pushes(ResponseStreamExtractor(), chars) == _pushes(ResponseModel(), chars)


@st.composite
def agent_reply(draw: st.DrawFn) -> tuple[str, list[str], tuple[str, bool]]:
    """An agent reply whose ``<text>`` comes before or after ``<actions>``, one way of
    cutting it, and what ResponseStreamExtractor must stream for it (and ``done``)."""
    content = draw(st.text(alphabet="ab x\n😀é/>", max_size=40))
    actions = draw(st.sampled_from(["REPLY", " reply ", "REPLY,", "REPLY, SEND", "SEND", ""]))
    parts = [f"<text>{content}</text>", f"<actions>{actions}</actions>"]
    if draw(st.booleans()):
        parts.reverse()
    reply = "<response><thought>hm</thought>" + "".join(parts) + "</response>"
    cuts = sorted(draw(st.lists(st.integers(0, len(reply)), max_size=12)))
    bounds = [0, *cuts, len(reply)]
    direct = [a.strip().upper() for a in actions.split(",") if a.strip()] == ["REPLY"]
    chunks = [reply[a:b] for a, b in itertools.pairwise(bounds)]
    return reply, chunks, (content if direct else "", direct)


@settings(max_examples=300, deadline=None)
@given(case=agent_reply())
def test_response_extractor_streams_the_text_before_or_after_the_actions(
    case: tuple[str, list[str], tuple[str, bool]],
) -> None:
    reply, chunks, expected = case
    for pieces in (chunks, [reply], list(reply)):
        assert run(ResponseStreamExtractor(), pieces) == expected


@settings(max_examples=200, deadline=None)
@given(text=texts)
def test_xml_tag_extractor_streams_the_first_element(text: str) -> None:
    """The joined output is the first ``<text>`` element's content (to the end if open)."""
    start = text.find("<text>")
    end = text.find("</text>", start + 6) if start >= 0 else -1
    expected = "" if start < 0 else text[start + 6 : end] if end >= 0 else text[start + 6 :]
    assert run(XmlTagExtractor("text"), [text]) == (expected, end >= 0)


# ------------------------------------------------------------------ validation
def _validation_run(level: int, chunks: list[str], codes: dict[str, str]) -> dict[str, Any]:
    """Per-field joined chunks and the other events, sorted (their order may follow the
    chunking when several fields complete in one push)."""
    joined: dict[str, str] = {}
    events: list[tuple[str, str]] = []

    def on_chunk(chunk: str, field: str, accumulated: str) -> None:
        joined[field] = joined.get(field, "") + chunk
        assert accumulated == joined[field]

    def on_event(event: dict[str, Any]) -> None:
        if event["event_type"] != "chunk":
            events.append((event["event_type"], event.get("field", "")))

    extractor = ValidationStreamExtractor(
        level=level,
        schema=["thought", "text", "actions"],
        stream_fields=["text", "actions"],
        expected_codes=codes,
        on_chunk=on_chunk,
        on_event=on_event,
    )
    for chunk in chunks:
        assert extractor.push(chunk) == ""
    diagnosis = extractor.diagnose()
    assert extractor.flush() == ""
    return {"joined": joined, "events": sorted(events), "diagnosis": diagnosis}


def _field_content(text: str, field: str, others: list[str]) -> str | None:
    """The reference's content of ``field``: to its close, or (partial) to the next other
    field's open tag or the end."""
    start = text.find(f"<{field}>")
    if start < 0:
        return None
    start += len(field) + 2
    end = text.find(f"</{field}>", start)
    if end >= 0:
        return text[start:end]
    stops = [p for p in (text.find(f"<{o}>", start) for o in others if o != field) if p >= 0]
    return text[start : min(stops, default=len(text))]


@settings(max_examples=300, deadline=None)
@given(
    case=split_text(),
    level=st.sampled_from([0, 1, 2, 3]),
    codes=st.sampled_from([{}, {"text": "ab12cd34"}, {"text": "zz"}]),
)
def test_validation_any_split_gives_the_same_result(
    case: tuple[str, list[str]], level: int, codes: dict[str, str]
) -> None:
    text, chunks = case
    result = _validation_run(level, chunks, codes)
    assert result == _validation_run(level, [text], codes)
    assert result == _validation_run(level, list(text), codes)
    schema = ["thought", "text", "actions"]
    for field in ("text", "actions"):
        content = _field_content(text, field, schema)
        streamed = result["joined"].get(field, "")
        if field in codes or level == 1:
            assert streamed in ("", content)  # whole or nothing
        else:
            assert streamed == (content or "")
        assert result["events"].count(("field_validated", field)) <= 1
        assert result["events"].count(("error", field)) <= 1
    assert result["events"].count(("complete", "")) == 1


# ------------------------------------------------------------------ limits
def held(extractor: Any) -> int:
    """How many characters an extractor holds right now."""
    if isinstance(extractor, (XmlTagExtractor, ActionStreamFilter)):
        return len(extractor._scanner.buffer)
    if isinstance(extractor, ResponseStreamExtractor):
        return extractor._end - extractor._base + len(extractor._scanner.buffer)
    return 0


@settings(max_examples=25, deadline=None)
@given(
    head=texts,
    tail=texts,
    filler=st.sampled_from(["x", "a<", "</te", "<tex", "😀 ", "REPLY,"]),
    size=st.integers(MAX_BUFFER // 2, 3 * MAX_BUFFER),
    chunk_size=st.sampled_from([1, 7, 256, 4096, 65536]),
    name=st.sampled_from(["xml-text", "xml-description", "response", "action"]),
)
def test_held_buffer_stays_bounded(
    head: str, tail: str, filler: str, size: int, chunk_size: int, name: str
) -> None:
    text = head + filler * (size // len(filler)) + tail
    extractor = FACTORIES[name]()
    bound = MAX_BUFFER + chunk_size + 16
    for i in range(0, len(text), chunk_size):
        extractor.push(text[i : i + chunk_size])
        assert held(extractor) <= bound


@settings(max_examples=50, deadline=None)
@given(case=split_text(), name=st.sampled_from(sorted(FACTORIES)))
def test_only_stream_errors_are_raised(case: tuple[str, list[str]], name: str) -> None:
    """A chunk over the limit raises ``StreamError`` and leaves the extractor unchanged."""
    text, chunks = case
    extractor = FACTORIES[name]()
    outputs: list[str] = []
    for i, chunk in enumerate(chunks):
        if i == len(chunks) // 2:
            try:
                outputs.append(extractor.push("x" * (MAX_CHUNK_SIZE + 1)))
            except StreamError as error:
                assert str(error.code) == "CHUNK_TOO_LARGE"
        outputs.append(extractor.push(chunk))
    assert ("".join(outputs) + extractor.flush(), extractor.done) == run(FACTORIES[name](), [text])
