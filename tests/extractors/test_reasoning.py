"""``ReasoningExtractor``: the thought as ``reasoning`` events while it arrives, the reply
passed on unchanged, for any split of the input."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streaming.errors import StreamError, StreamErrorCode
from streaming.extractors import (
    MAX_CHUNK_SIZE,
    ExtractorEvent,
    Pipeline,
    ReasoningExtractor,
    ResponseStreamExtractor,
)
from streaming.sources import DemoModel

REPLY = (
    "<response>\n<thought>I should greet them; 2 < 3 and </thought-ish> is not the end."
    "</thought>\n<actions>REPLY</actions>\n<text>Hello!</text>\n</response>"
)
THOUGHT = "I should greet them; 2 < 3 and </thought-ish> is not the end."


def run(chunks: list[str]) -> tuple[str, list[ExtractorEvent], ReasoningExtractor]:
    extractor = ReasoningExtractor()
    passed = "".join(extractor.push(chunk) for chunk in chunks) + extractor.flush()
    return passed, extractor.drain_events(), extractor


def split(text: str, cuts: list[int]) -> list[str]:
    points = sorted({min(c, len(text)) for c in cuts})
    return [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]


def test_the_thought_becomes_reasoning_events_and_the_reply_passes_unchanged() -> None:
    passed, events, extractor = run([REPLY])
    assert passed == REPLY
    assert {e.name for e in events} == {"reasoning"}
    assert "".join(e.data["text"] for e in events) == THOUGHT
    assert extractor.reasoning == THOUGHT
    assert extractor.done is False


@given(st.lists(st.integers(min_value=0, max_value=len(REPLY)), max_size=30))
def test_any_split_gives_the_same_thought_and_never_a_piece_of_the_closing_tag(
    cuts: list[int],
) -> None:
    passed, events, _ = run(split(REPLY, cuts))
    assert passed == REPLY
    pieces = [e.data["text"] for e in events]
    assert "".join(pieces) == THOUGHT
    assert all(piece for piece in pieces)


def test_it_streams_while_the_thought_arrives() -> None:
    extractor = ReasoningExtractor()
    extractor.push("<thought>" + "thinking hard " * 5)
    first = extractor.drain_events()
    assert first and "".join(e.data["text"] for e in first).startswith("thinking hard")
    assert extractor.drain_events() == []  # drained once


def test_an_unclosed_thought_is_flushed_and_nothing_after_the_first_counts() -> None:
    _, events, _ = run(["<thought>cut off mid-thou", "ght"])
    assert "".join(e.data["text"] for e in events) == "cut off mid-thought"
    _, events, _ = run(["<thought>one</thought><thought>two</thought>"])
    assert [e.data["text"] for e in events] == ["one"]


def test_a_reply_without_a_thought_has_no_events() -> None:
    passed, events, extractor = run(["Plain text, ", "no thought."])
    assert passed == "Plain text, no thought."
    assert events == [] and extractor.reasoning == ""


def test_reset_starts_over() -> None:
    extractor = ReasoningExtractor()
    extractor.push("<thought>old</thought>")
    extractor.reset()
    extractor.push("<thought>new</thought>")
    assert extractor.reasoning == "new"
    assert [e.data["text"] for e in extractor.drain_events()] == ["new"]


def test_a_chunk_over_the_limit_is_refused() -> None:
    with pytest.raises(StreamError) as caught:
        ReasoningExtractor().push("x" * (MAX_CHUNK_SIZE + 1))
    assert caught.value.code == StreamErrorCode.CHUNK_TOO_LARGE


def test_first_in_the_chat_pipeline_the_answer_is_unchanged() -> None:
    model = DemoModel(token_delay=0)
    tokens = model.tokens("What is this?")
    plain = ResponseStreamExtractor()
    expected = "".join(plain.push(t) for t in tokens) + plain.flush()
    reasoning = ReasoningExtractor()
    pipeline = Pipeline(reasoning, ResponseStreamExtractor())
    text = "".join(pipeline.push(t) for t in tokens) + pipeline.flush()
    assert text == expected
    raw = model.reply("What is this?")
    thought = re.search("<thought>(.*?)</thought>", raw, re.S)
    assert thought is not None and reasoning.reasoning == thought.group(1)
    assert pipeline.done


def test_a_sources_reasoning_joins_the_pipelines_reasoning_channel() -> None:
    """``Pipeline.push_reasoning`` (a source's ``Reasoning`` pieces): the chain's first
    ``ReasoningExtractor`` emits it as is (``</thought>`` and all), in order with the
    thought it reads, and none of it reaches the extractors as text. A pipeline without
    one emits it all the same, from one of its own; ``reset`` forgets it."""
    chat = Pipeline(ReasoningExtractor(), ResponseStreamExtractor())
    chat.push_reasoning("a < b </thought>")
    text = chat.push(REPLY) + chat.flush()
    assert text == "Hello!"
    events = chat.drain_events()
    assert events[0].data["text"] == "a < b </thought>"
    assert chat.reasoning == "a < b </thought>" + THOUGHT
    assert "".join(e.data["text"] for e in events) == chat.reasoning

    plain = Pipeline()
    assert not plain.emits
    plain.push_reasoning("Hmm")
    assert plain.emits  # a generation now drains its events
    assert plain.push("Hi") == "Hi"
    assert plain.drain_events() == [ExtractorEvent("reasoning", {"text": "Hmm"})]
    assert plain.reasoning == "Hmm"
    plain.reset()
    assert plain.reasoning == "" and plain.drain_events() == []
    with pytest.raises(StreamError) as caught:
        plain.push_reasoning("x" * (MAX_CHUNK_SIZE + 1))
    assert caught.value.code == StreamErrorCode.CHUNK_TOO_LARGE
