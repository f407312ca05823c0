"""Unit tests of the basic extractors beyond the reference cases: the ElizaOS examples, the
reference's quirks this package fixes, the limits, ``Pipeline`` and ``MarkableExtractor``."""

from __future__ import annotations

import subprocess
import sys

import pytest

from streaming.errors import StreamError, StreamErrorCode
from streaming.extractors import (
    MAX_BUFFER,
    MAX_CHUNK_SIZE,
    SAFE_MARGIN,
    ActionStreamFilter,
    ContentType,
    MarkableExtractor,
    PassthroughExtractor,
    Pipeline,
    ResponseStreamExtractor,
    Strategy,
    StreamExtractor,
    XmlTagExtractor,
    trim_buffer,
)


def test_limits_are_the_reference_ones() -> None:
    assert (SAFE_MARGIN, MAX_BUFFER, MAX_CHUNK_SIZE) == (10, 100 * 1024, 1024 * 1024)


def test_trim_buffer() -> None:
    assert trim_buffer("abc") == "abc"
    assert trim_buffer("x" * MAX_BUFFER) == "x" * MAX_BUFFER
    assert trim_buffer("y" + "x" * MAX_BUFFER) == "x" * 1024
    assert trim_buffer("abcdef", max_size=3, keep_size=2) == "ef"


@pytest.mark.parametrize(
    "factory",
    [
        PassthroughExtractor,
        MarkableExtractor,
        lambda: XmlTagExtractor("text"),
        ResponseStreamExtractor,
        ActionStreamFilter,
        Pipeline,
    ],
)
def test_chunk_too_large(factory: type[StreamExtractor]) -> None:
    extractor = factory()
    assert isinstance(extractor, StreamExtractor)
    assert extractor.push("x" * MAX_CHUNK_SIZE) is not None  # exactly the limit is fine
    size = MAX_CHUNK_SIZE + 1
    with pytest.raises(StreamError) as raised:
        extractor.push("x" * size)
    error = raised.value
    assert error.code is StreamErrorCode.CHUNK_TOO_LARGE
    assert error.message == f"Chunk size {size} exceeds maximum allowed 1048576"
    assert error.details == {"chunk_size": size, "max_allowed": 1048576}
    assert isinstance(error, StreamError)


def test_extractors_import_without_django() -> None:
    code = (
        "import sys, streaming.extractors as e; "
        "assert not any(m == 'django' or m.startswith('django.') for m in sys.modules); "
        "print(e.XmlTagExtractor('text').push('<text>Hello world!</text>'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "Hello world!"


# ------------------------------------------------------------------ seed examples
def test_seed_passthrough() -> None:
    extractor = PassthroughExtractor()
    assert extractor.push("Hello") == "Hello"
    assert extractor.push(" world") == " world"
    assert not extractor.done and extractor.flush() == ""


def test_seed_xml_tag_extractor_as_the_code_really_behaves() -> None:
    extractor = XmlTagExtractor("text")
    assert extractor.push("<response><text>Hello") == ""  # 5 characters: inside the margin
    assert extractor.push(" world!</text></response>") == "Hello world!"
    assert extractor.done


def test_seed_response_extractor_with_fresh_instances() -> None:
    reply = ResponseStreamExtractor()
    assert reply.push("<actions>REPLY</actions>") == ""
    assert reply.push("<text>Hello user!</text>") == "Hello user!"
    assert reply.strategy is Strategy.DIRECT and reply.done
    email = ResponseStreamExtractor()
    assert email.push("<actions>SEND_EMAIL</actions>") == ""
    assert email.push("<text>Sending...</text>") == ""
    assert email.strategy is Strategy.DELEGATED and not email.done


def test_seed_action_filter_with_fresh_instances() -> None:
    json_filter, xml_filter, text_filter = (ActionStreamFilter() for _ in range(3))
    assert json_filter.push('{"result": true}') == ""
    assert json_filter.content_type is ContentType.JSON
    assert xml_filter.push("<response><text>Hello") == ""
    assert xml_filter.push("!</text></response>") == "Hello!"
    assert text_filter.push("Plain text response") == "Plain text response"


# ------------------------------------------------------------------ fixed quirks
def test_done_guard_after_a_second_text() -> None:
    reply = ResponseStreamExtractor()
    assert reply.push("<actions>REPLY</actions><text>First</text>") == "First"
    assert reply.push("<text>Second</text>") == "" and reply.done
    action = ActionStreamFilter()
    assert action.push("<text>First</text>") == "First"
    assert action.push("<text>Second</text>") == "" and action.done
    reply.reset()
    assert not reply.done and reply.strategy is Strategy.PENDING


def test_flush_returns_the_held_back_tail() -> None:
    for extractor in (XmlTagExtractor("text"), ActionStreamFilter()):
        assert extractor.push("<text>This reply was cut off") == "This reply w"
        assert extractor.flush() == "as cut off"
        assert extractor.flush() == ""
    reply = ResponseStreamExtractor()
    assert reply.push("<actions>REPLY</actions><text>Cut") == ""
    assert reply.flush() == "Cut"


@pytest.mark.parametrize("split", range(1, 60))
def test_long_tag_names_never_leak_a_closing_tag(split: int) -> None:
    text = "<description>A long enough description.</description>"
    extractor = XmlTagExtractor("description")
    out = extractor.push(text[:split]) + extractor.push(text[split:])
    assert out == "A long enough description." and extractor.done


def test_open_tag_is_never_lost_to_trimming() -> None:
    extractor = XmlTagExtractor("text")
    reply = "<text>" + "x" * (MAX_BUFFER + 10) + "</text>"
    assert extractor.push("noise" + reply[:-7]) + extractor.push("</text>") == reply[6:-7]


@pytest.mark.parametrize(
    ("reply", "streamed"),
    [
        ("<text>Early</text><actions>REPLY</actions>", "Early"),
        ("<thought>t</thought><text>Early</text><actions> reply </actions>", "Early"),
        ("<text>Early</text><actions>REPLY</actions><text>Late</text>", "Early"),
        ("<text>Early</text><actions>SEND_EMAIL</actions>", ""),
        ("<text>Early</text>", ""),
    ],
)
def test_response_text_that_closes_before_the_actions_waits_for_them(
    reply: str, streamed: str
) -> None:
    """A ``<text>`` whole before ``<actions>`` is held and streamed once the actions are
    REPLY (the reference drops it when the reply arrives in pieces), for any split."""
    for size in (len(reply), 1, 2, 5, 7):
        extractor = ResponseStreamExtractor()
        chunks = [reply[i : i + size] for i in range(0, len(reply), size)]
        out = "".join(extractor.push(chunk) for chunk in chunks) + extractor.flush()
        assert (out, extractor.done) == (streamed, bool(streamed))


def test_response_text_open_before_the_actions_streams_once_they_say_reply() -> None:
    extractor = ResponseStreamExtractor()
    assert extractor.push("<text>Hello there ") == ""
    assert extractor.push("<actions>REPLY</actions>") == "Hello there <actions>REPLY"
    assert extractor.push("</text>") == "</actions>"


def test_response_large_thought_then_text() -> None:
    extractor = ResponseStreamExtractor()
    thought = "<actions>REPLY</actions><thought>" + "a" * (150 * 1024) + "</thought>"
    assert extractor.push(thought) == ""
    assert extractor.push("<text>Finally some text</text>") == "Finally some text"


def test_response_actions_lost_to_trimming_when_too_far_apart() -> None:
    """``<actions>`` more than ``MAX_BUFFER`` characters before its close is trimmed away."""
    extractor = ResponseStreamExtractor()
    extractor.push("<actions>")
    for _ in range(MAX_BUFFER // 1000 + 1):
        extractor.push(" " * 1000)
    extractor.push("REPLY</actions><text>Hi</text>")
    assert extractor.strategy is Strategy.PENDING and not extractor.done


def test_action_filter_keeps_leading_whitespace_for_plain_text() -> None:
    extractor = ActionStreamFilter()
    assert extractor.push(" ") == "" and extractor.push("\n") == ""
    assert extractor.content_type is None
    assert extractor.push("Hi") == " \nHi"
    assert extractor.content_type is ContentType.TEXT


# ------------------------------------------------------------------ markable and pipeline
def test_markable_extractor() -> None:
    extractor = MarkableExtractor()
    assert extractor.push("Hello") == "Hello" and not extractor.done
    extractor.mark_complete()
    assert extractor.done and extractor.push("more") == "" and extractor.flush() == ""
    extractor.reset()
    assert not extractor.done and extractor.push("again") == "again"


def test_empty_pipeline_passes_text_through() -> None:
    pipeline = Pipeline()
    assert pipeline.push("Hello") == "Hello" and pipeline.push("") == ""
    assert pipeline.flush() == "" and not pipeline.done
    assert repr(pipeline) == "Pipeline(PassthroughExtractor)"


def test_pipeline_chains_and_flush_cascades() -> None:
    pipeline = Pipeline(XmlTagExtractor("response"), XmlTagExtractor("text"))
    assert pipeline.push("<response><thought>x</thought><text>Hello wonderful") == ""
    assert not pipeline.done
    # Each holds 10 characters back: flush pushes the first's tail on, then flushes on.
    assert pipeline.flush() == "Hello wonderful"


def test_pipeline_done_and_reset() -> None:
    first, last = ActionStreamFilter(), XmlTagExtractor("b")
    pipeline = Pipeline(first, last)
    assert pipeline.extractors == (first, last)
    assert pipeline.push("<text><b>bold</b> rest of the text</text>") == "bold"
    assert pipeline.done
    pipeline.reset()
    assert not pipeline.done and not first.done
