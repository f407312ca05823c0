"""The extractors' limits come from ``settings.STREAMING`` (``SAFE_MARGIN``, ``MAX_BUFFER``,
``MAX_CHUNK_SIZE``): changing a setting changes what a new extractor does."""

from __future__ import annotations

import pytest
from django.test import override_settings

from streaming.errors import StreamError, StreamErrorCode
from streaming.extractors import (
    ActionStreamFilter,
    ContentType,
    MarkableExtractor,
    PassthroughExtractor,
    Pipeline,
    ReasoningExtractor,
    ResponseStreamExtractor,
    Strategy,
    ValidationStreamExtractor,
    XmlTagExtractor,
    trim_buffer,
)


@pytest.mark.parametrize(
    "make",
    [PassthroughExtractor, lambda: XmlTagExtractor("text"), ResponseStreamExtractor],
)
def test_max_chunk_size_is_the_setting(make: type) -> None:
    assert make().push("x" * 11) is not None
    with override_settings(STREAMING={"MAX_CHUNK_SIZE": 10}), pytest.raises(StreamError) as raised:
        make().push("x" * 11)
    assert raised.value.code is StreamErrorCode.CHUNK_TOO_LARGE
    assert raised.value.details == {"chunk_size": 11, "max_allowed": 10}


@pytest.mark.parametrize(
    "make",
    [
        PassthroughExtractor,
        MarkableExtractor,
        lambda: XmlTagExtractor("text"),
        ResponseStreamExtractor,
        ActionStreamFilter,
        ReasoningExtractor,
        lambda: ValidationStreamExtractor(level=0, stream_fields=["text"]),
    ],
)
def test_an_extractor_keeps_the_max_chunk_size_it_was_made_with(make: type) -> None:
    """Read once per reply, not per chunk: a change reaches the next extractor."""
    with override_settings(STREAMING={"MAX_CHUNK_SIZE": 10}):
        strict = make()
    lenient = make()
    with override_settings(STREAMING={"MAX_CHUNK_SIZE": 10}):
        lenient.push("<text>" + "x" * 10)
    with pytest.raises(StreamError) as raised:
        strict.push("<text>" + "x" * 5)
    assert raised.value.details == {"chunk_size": 11, "max_allowed": 10}


def test_validation_extractor_takes_max_chunk_size_from_the_setting_too() -> None:
    with override_settings(STREAMING={"MAX_CHUNK_SIZE": 10}):
        extractor = ValidationStreamExtractor(level=0, stream_fields=["text"])
        with pytest.raises(StreamError, match="exceeds maximum allowed 10"):
            extractor.push("<text>" + "x" * 10)


def test_safe_margin_is_the_setting() -> None:
    reply = "<text>" + "a" * 30
    assert XmlTagExtractor("text").push(reply) == "a" * 20
    with override_settings(STREAMING={"SAFE_MARGIN": 25}):
        assert XmlTagExtractor("text").push(reply) == "a" * 5


def test_max_buffer_is_the_setting() -> None:
    assert trim_buffer("y" + "x" * 3000) == "y" + "x" * 3000
    # The actions open 2,500 characters before they close: within the default buffer,
    # trimmed away with a 2,000-character one (so nothing is ever decided or streamed).
    reply = "<actions>REPLY" + " " * 2500 + "</actions><text>hi</text>"
    chunks = [reply[i : i + 500] for i in range(0, len(reply), 500)]

    def stream() -> str:
        extractor = ResponseStreamExtractor()
        return "".join(extractor.push(chunk) for chunk in chunks) + extractor.flush()

    assert stream() == "hi"
    with override_settings(STREAMING={"MAX_BUFFER": 2000}):
        assert trim_buffer("y" + "x" * 3000) == "x" * 1024
        assert stream() == ""


@pytest.mark.timeout(10)
@pytest.mark.parametrize("limit", [1, 100, 1023])
def test_a_max_buffer_under_what_a_trim_keeps_holds_at_most_the_limit(limit: int) -> None:
    """A trim keeps its last 1024 characters, or the limit if that is less: keeping more
    than the limit trimmed again at the same place, for ever."""
    with override_settings(STREAMING={"MAX_BUFFER": limit}):
        extractor = ResponseStreamExtractor()
        assert trim_buffer("y" * 2000) == "y" * min(limit, 1024)
    assert [extractor.push("x" * 700) for _ in range(3)] == ["", "", ""]
    assert extractor.push("x") == ""
    assert extractor.strategy is Strategy.PENDING
    small = "<actions>REPLY</actions><text>hi</text>"
    with override_settings(STREAMING={"MAX_BUFFER": limit}):
        fresh = ResponseStreamExtractor()
    streamed = "".join(fresh.push(c) for c in small) + fresh.flush()
    assert streamed == ("hi" if limit >= len("<actions>REPLY</actions>") else "")


def test_a_pipeline_hands_released_text_on_within_the_chunk_limit() -> None:
    """Text an extractor held and then released at once is not a model's chunk: the next
    extractor gets it whole, in pieces, not ``CHUNK_TOO_LARGE`` and the text lost."""
    with override_settings(STREAMING={"MAX_CHUNK_SIZE": 10}):
        held = Pipeline(ResponseStreamExtractor(), PassthroughExtractor())
        flushed = Pipeline(
            ValidationStreamExtractor(level=2, schema=["text"], stream_fields=["text"]),
            PassthroughExtractor(),
        )
    reply = "<text>" + "abcdefghij" * 3 + "</text><actions>REPLY</actions>"
    chunks = [reply[i : i + 10] for i in range(0, len(reply), 10)]
    assert "".join(held.push(chunk) for chunk in chunks) + held.flush() == "abcdefghij" * 3
    assert "".join(flushed.push(chunk) for chunk in chunks) + flushed.flush() == "abcdefghij" * 3
    with override_settings(STREAMING={"MAX_CHUNK_SIZE": 10}):
        fresh = Pipeline(ResponseStreamExtractor(), PassthroughExtractor())
    with pytest.raises(StreamError):
        fresh.push("x" * 11)  # the model's own chunks are still refused past the limit


@pytest.mark.parametrize("limit", [1, 100, 5000])
def test_action_filter_holds_leading_whitespace_within_max_buffer(limit: int) -> None:
    """A model that writes only whitespace: held up to the limit, then trimmed as held
    text is; the plain text after it streams with what was kept."""
    with override_settings(STREAMING={"MAX_BUFFER": limit}):
        extractor = ActionStreamFilter()
    for _ in range(20_000):
        assert extractor.push(" \n") == ""
        assert sum(map(len, extractor._whitespace)) <= limit
    released = extractor.push("Hello")
    assert released.endswith("Hello") and not released[:-5].strip()
    assert 0 < len(released) - 5 <= limit
    assert extractor.content_type is ContentType.TEXT


def test_action_filter_streams_a_short_whitespace_run_whole() -> None:
    extractor = ActionStreamFilter()
    assert extractor.push("  \n ") == ""
    assert extractor.push("\tHi") == "  \n \tHi"
