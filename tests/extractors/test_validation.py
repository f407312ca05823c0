"""``ValidationStreamExtractor``: levels, codes, events (each once), signals and reset."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from streaming.errors import StreamError
from streaming.extractors import MAX_CHUNK_SIZE, Pipeline, ValidationStreamExtractor

CODE = "ab12cd34"
VALID = (
    f"<response><code_text_start>{CODE}</code_text_start><text>Hello world!</text>"
    f"<code_text_end>{CODE}</code_text_end></response>"
)


class Recorder:
    """Collects ``on_chunk`` calls and events (without their timestamps)."""

    def __init__(self) -> None:
        self.chunks: list[tuple[str, str, str]] = []
        self.events: list[dict[str, Any]] = []

    def on_chunk(self, chunk: str, field: str, accumulated: str) -> None:
        self.chunks.append((chunk, field, accumulated))

    def on_event(self, event: dict[str, Any]) -> None:
        assert isinstance(event.pop("timestamp"), int)
        self.events.append(event)

    def kinds(self) -> list[str]:
        return [event["event_type"] for event in self.events]

    def text(self, field: str = "text") -> str:
        return "".join(chunk for chunk, name, _ in self.chunks if name == field)


def make(
    level: int = 0,
    codes: dict[str, str] | None = None,
    stream_fields: tuple[str, ...] = ("text",),
    **kwargs: Any,
) -> tuple[ValidationStreamExtractor, Recorder]:
    recorder = Recorder()
    extractor = ValidationStreamExtractor(
        level=level,
        schema=[{"field": "thought"}, {"field": "text"}, {"field": "actions"}],
        stream_fields=list(stream_fields),
        expected_codes=codes,
        on_chunk=recorder.on_chunk,
        on_event=recorder.on_event,
        **kwargs,
    )
    return extractor, recorder


def push_all(extractor: ValidationStreamExtractor, *chunks: str) -> None:
    for chunk in chunks:
        assert extractor.push(chunk) == ""


# ---------------------------------------------------------------- level 0
def test_level0_streams_each_field_as_it_grows() -> None:
    extractor, rec = make(0)
    push_all(extractor, "<response><text>Hello ", "beautiful ", "world!</text></response>")
    assert rec.chunks == [
        ("Hello ", "text", "Hello "),
        ("beautiful ", "text", "Hello beautiful "),
        ("world!", "text", "Hello beautiful world!"),
    ]
    assert rec.kinds() == ["chunk", "chunk", "chunk"]
    assert rec.events[0] == {"event_type": "chunk", "field": "text", "chunk": "Hello "}
    assert not extractor.done


def test_level0_never_emits_a_half_arrived_closing_tag() -> None:
    """The reference emits ``Hello</te`` then ``Hello`` again; we emit ``Hello`` once."""
    extractor, rec = make(0)
    push_all(extractor, "<text>Hello</te", "xt>")
    assert [chunk for chunk, _, _ in rec.chunks] == ["Hello"]


def test_level0_partial_field_stops_at_the_next_field() -> None:
    extractor, rec = make(0)
    push_all(extractor, "<text>Hi <act", "ions>REPLY</actions>")
    assert rec.text() == "Hi "
    assert extractor.diagnose()["incomplete_fields"] == ["text"]


def test_level0_flush_releases_the_held_back_end_of_an_unclosed_field() -> None:
    extractor, rec = make(0)
    push_all(extractor, "<text>Hello </te")
    assert rec.text() == "Hello "
    extractor.flush()
    assert rec.text() == "Hello </te"
    assert rec.kinds()[-1] == "complete"


def test_level0_streams_only_the_stream_fields() -> None:
    extractor, rec = make(0, stream_fields=("text", "actions"))
    push_all(extractor, "<response><thought>hidden</thought><text>Hello!</text>")
    push_all(extractor, "<actions>REPLY</actions></response>")
    assert [(chunk, field) for chunk, field, _ in rec.chunks] == [
        ("Hello!", "text"),
        ("REPLY", "actions"),
    ]


def test_stream_field_missing_from_the_schema_is_never_streamed() -> None:
    extractor = ValidationStreamExtractor(schema=["text"], stream_fields=["summary"])
    extractor.push("<summary>x</summary>")
    assert extractor.diagnose() == {
        "missing_fields": [],
        "invalid_fields": [],
        "incomplete_fields": [],
    }


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_an_empty_schema_streams_nothing_and_completes(level: int) -> None:
    """No field to look for: every chunk is taken, nothing streams, the flush completes
    (no tag to find must not match everywhere)."""
    extractor = ValidationStreamExtractor(level=level, stream_fields=["text"])
    assert [extractor.push(chunk) for chunk in ("<text>hel", "lo</text>", "<", "x>")] == [""] * 4
    assert extractor.flush() == ""
    assert [event.name for event in extractor.drain_events()] == ["complete"]
    assert extractor.done


def test_level0_field_with_a_code_waits_for_its_codes() -> None:
    extractor, rec = make(0, {"text": CODE})
    push_all(extractor, VALID[:60], VALID[60:])
    assert rec.chunks == [("Hello world!", "text", "Hello world!")]
    assert rec.kinds() == ["chunk", "field_validated"]


# ---------------------------------------------------------------- level 1
def test_level1_streams_a_field_once_complete() -> None:
    extractor, rec = make(1)
    push_all(extractor, "<text>Hello ", "world!", "</text>")
    assert rec.chunks == [("Hello world!", "text", "Hello world!")]


def test_level1_valid_codes_emit_the_field_then_field_validated_once() -> None:
    extractor, rec = make(1, {"text": CODE})
    push_all(extractor, *VALID)  # one character at a time
    push_all(extractor, "more", "<text>again</text>")
    assert rec.kinds() == ["chunk", "field_validated"]
    assert rec.events[1] == {"event_type": "field_validated", "field": "text"}
    assert extractor.get_validated_fields() == {"text": "Hello world!"}


def test_level1_missing_end_code_means_wait() -> None:
    extractor, rec = make(1, {"text": CODE})
    end = VALID.index("<code_text_end>")
    push_all(extractor, VALID[:end])
    assert rec.events == [] and rec.chunks == []
    push_all(extractor, VALID[end:])
    assert rec.kinds() == ["chunk", "field_validated"]


def test_level1_missing_codes_never_stream() -> None:
    extractor, rec = make(1, {"text": CODE})
    push_all(extractor, "<response><text>Hello world!</text></response>")
    extractor.flush()
    assert rec.chunks == []
    assert rec.kinds() == ["complete"]


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (VALID.replace(f">{CODE}</code_text_start", ">wrong</code_text_start"), "start code"),
        (VALID.replace(f">{CODE}</code_text_end", ">wrong</code_text_end"), "end code"),
    ],
)
def test_level1_wrong_code_is_one_error_and_the_field_stays_invalid(
    reply: str, message: str
) -> None:
    extractor, rec = make(1, {"text": CODE})
    push_all(extractor, *reply)
    push_all(extractor, f"<code_text_end>{CODE}</code_text_end>")
    assert rec.chunks == []
    assert rec.kinds() == ["error"]
    assert rec.events[0]["field"] == "text"
    assert message in rec.events[0]["error"]
    assert "mismatch for text" in rec.events[0]["error"]
    assert extractor.diagnose()["invalid_fields"] == ["text"]
    extractor.flush()
    assert rec.chunks == []


def test_code_is_compared_trimmed() -> None:
    extractor, rec = make(1, {"text": CODE})
    push_all(extractor, VALID.replace(f">{CODE}<", f">\n {CODE}\u00a0<"))
    assert rec.kinds() == ["chunk", "field_validated"]


@pytest.mark.parametrize("expected", [f" {CODE}\n", 1234])
def test_an_expected_code_is_trimmed_and_may_be_a_number(expected: Any) -> None:
    """The model's code is compared trimmed, so the expected one is trimmed too (and a
    number is taken as its digits): either would otherwise never match."""
    code = str(expected).strip()
    extractor, rec = make(1, {"text": expected})
    push_all(extractor, VALID.replace(CODE, code))
    assert rec.kinds() == ["chunk", "field_validated"]


@pytest.mark.parametrize("none", [None, ""])
def test_an_expected_code_of_none_or_empty_is_no_code(none: Any) -> None:
    extractor, rec = make(1, {"text": none})
    push_all(extractor, "<text>Hello!</text>")
    assert rec.chunks == [("Hello!", "text", "Hello!")]


# ---------------------------------------------------------------- levels 2 and 3
@pytest.mark.parametrize("level", [2, 3])
def test_levels_2_and_3_emit_on_flush_only(level: int) -> None:
    extractor, rec = make(level, {"text": CODE})
    push_all(extractor, "<response><text>Hello ", "world!</text></response>")
    assert rec.events == []
    assert extractor.flush() == ""
    assert rec.chunks == [("Hello world!", "text", "Hello world!")]
    assert rec.kinds() == ["chunk", "complete"]
    assert extractor.done and extractor.get_state() == "complete"
    extractor.flush()
    assert rec.kinds() == ["chunk", "complete"]  # complete once per attempt


def test_level2_flush_emits_an_unclosed_field() -> None:
    extractor, rec = make(2)
    push_all(extractor, "<text>Hello wor")
    extractor.flush()
    assert rec.text() == "Hello wor"


def test_bad_level_is_refused() -> None:
    with pytest.raises(ValueError):
        ValidationStreamExtractor(level=4)


def test_field_names_with_angle_brackets_are_refused() -> None:
    with pytest.raises(ValueError):
        ValidationStreamExtractor(schema=["a>b"])


def test_a_schema_row_without_a_field_key_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="a schema row needs a 'field' key"):
        ValidationStreamExtractor(schema=[{"name": "text"}])


# ---------------------------------------------------------------- signals
def test_signal_retry_ignores_pushes_until_reset() -> None:
    extractor, rec = make(1, {"text": CODE})
    push_all(extractor, VALID)
    assert extractor.signal_retry(1) == {"validated_fields": ["text"]}
    assert extractor.get_state() == "retrying" and not extractor.done
    assert rec.events[-1] == {"event_type": "retry_start", "retry_count": 1}
    push_all(extractor, "<text>ignored</text>")
    assert rec.text() == "Hello world!"
    extractor.reset()
    assert extractor.get_state() == "streaming"
    assert extractor.get_validated_fields() == {}


def test_signal_error_fails_until_reset() -> None:
    extractor, rec = make(0)
    extractor.signal_error("Max retries exceeded")
    assert rec.events == [{"event_type": "error", "error": "Max retries exceeded"}]
    assert extractor.done and extractor.get_state() == "failed"
    push_all(extractor, "<text>Hello</text>")
    extractor.flush()
    assert rec.chunks == [] and len(rec.events) == 1
    extractor.reset()
    push_all(extractor, "<text>Hello</text>")
    assert rec.text() == "Hello"


@pytest.mark.parametrize("kind", ["attribute", "event", "callable"])
def test_abort_fails_once_with_cancelled(kind: str) -> None:
    event = threading.Event()

    class Signal:
        aborted = False

    signal = Signal()
    abort: Any = {"attribute": signal, "event": event, "callable": event.is_set}[kind]
    extractor, rec = make(0, abort=abort)
    push_all(extractor, "<text>Hello</text>")
    signal.aborted = True
    event.set()
    push_all(extractor, "<text>World</text>", "x" * (MAX_CHUNK_SIZE + 1), "more")
    assert rec.text() == "Hello"
    assert rec.events[-1] == {"event_type": "error", "error": "Cancelled by user"}
    assert rec.kinds().count("error") == 1
    assert extractor.get_state() == "failed"


def test_chunk_too_large_raises_and_changes_nothing() -> None:
    extractor, rec = make(0)
    push_all(extractor, "<text>Hel")
    with pytest.raises(StreamError) as raised:
        extractor.push("x" * (MAX_CHUNK_SIZE + 1))
    assert str(raised.value.code) == "CHUNK_TOO_LARGE"
    push_all(extractor, "lo</text>")
    assert rec.text() == "Hello"


# ---------------------------------------------------------------- diagnose and reset
def test_diagnose_reports_missing_invalid_and_incomplete_fields() -> None:
    extractor, _ = make(1, {"text": CODE}, stream_fields=("text", "actions"))
    push_all(extractor, "<response><thought>Thinking</thought>")
    assert extractor.diagnose() == {
        "missing_fields": ["text", "actions"],
        "invalid_fields": [],
        "incomplete_fields": [],
    }
    push_all(extractor, "<code_text_start>bad</code_text_start><text>Hi</text><actions>RE")
    assert extractor.diagnose() == {
        "missing_fields": [],
        "invalid_fields": ["text"],
        "incomplete_fields": ["actions"],
    }


def test_reset_starts_a_new_attempt() -> None:
    extractor, rec = make(0)
    push_all(extractor, "<response><thought>a</thought><text>First</text></response>")
    extractor.flush()
    extractor.reset()
    assert extractor.get_state() == "streaming" and not extractor.done
    assert extractor.diagnose()["missing_fields"] == ["text"]
    push_all(extractor, "<response><text>Second</text></response>")
    extractor.flush()
    assert rec.chunks[-1] == ("Second", "text", "Second")
    assert rec.kinds().count("complete") == 2


async def test_async_callbacks_are_awaited_in_order_by_drain() -> None:
    seen: list[str] = []

    async def on_chunk(chunk: str, field: str, accumulated: str) -> None:
        await asyncio.sleep(0)
        seen.append(chunk)

    extractor = ValidationStreamExtractor(schema=["text"], stream_fields=["text"])
    extractor.on_chunk = on_chunk  # public and mutable: views set it after construction
    push_all(extractor, "<text>Hello ", "world", "</text>")
    assert seen == []
    await extractor.drain()
    assert seen == ["Hello ", "world"]


def test_without_callbacks_text_is_returned_and_events_are_drained_by_a_pipeline() -> None:
    extractor = ValidationStreamExtractor(schema=["text"], stream_fields=["text"])
    pipeline = Pipeline(extractor)
    text = "".join(pipeline.push(chunk) for chunk in ["<te", "xt>Hel", "lo</text>"])
    text += pipeline.flush()
    assert text == "Hello"
    names = [event.name for event in pipeline.drain_events()]
    assert names.count("chunk") >= 1 and names[-1] == "complete"
    assert pipeline.drain_events() == []
