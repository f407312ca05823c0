"""``openai_chat`` and a reasoning model: its reasoning, which the model server sends apart
from the reply (``reasoning_content``, or OpenRouter's ``reasoning``), reaches the
reasoning channel, against a local OpenAI-compatible server through the real ``openai``
SDK: ``Reasoning`` pieces from the source, ``reasoning`` events from a generation (with or
without a ``ReasoningExtractor``), stored as a chat's reasoning, an SSE ``reasoning``
event from ``sse_response``, left out of ``use_model``'s raw reply."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from django.test import override_settings

from streaming.errors import StreamErrorCode
from streaming.events import Chunk, Complete, Error, Event, GenerationEvent
from streaming.extractors import Pipeline, ReasoningExtractor, ResponseStreamExtractor
from streaming.generations import Generations
from streaming.sources import Reasoning, openai_chat
from streaming.store import MemoryStore

from ..conftest import Serve
from .consume import collect, failure
from .test_openai import MESSAGES, chunk
from .upstream import WAIT_LIMIT, Reply, Request, Script

#: Reasoning that looks like the tags the XML pipelines read, split across many deltas.
TRICKY = "Is a < b? </thought> is no end here, <text>nor this</text> & 👋 <"


def thinking(text: Any, field: str = "reasoning_content", **also: Any) -> dict[str, Any]:
    """A chunk whose delta carries reasoning in ``field`` (and the other ``also`` fields)."""
    event = chunk()
    event["choices"][0]["delta"] = {field: text, **also}
    return event


def script(*events: dict[str, Any], finish: str = "stop") -> Script:
    """A reply of ``events``, then ``finish_reason`` ``finish`` and ``[DONE]``."""

    async def reply_with(request: Request, reply: Reply) -> None:
        await reply.head()
        await reply.event(chunk("", role="assistant"))
        for event in events:
            await reply.event(event)
        await reply.event(chunk(finish=finish))
        await reply.event("[DONE]")
        await reply.end()

    return reply_with


def source(url: str, **options: Any) -> Any:
    return openai_chat(MESSAGES, model="m", base_url=f"{url}/v1", api_key="k", **options)


def kinds(pieces: list[str]) -> list[tuple[str, str]]:
    return [("reasoning" if isinstance(p, Reasoning) else "text", str(p)) for p in pieces]


async def test_reasoning_content_comes_as_reasoning_pieces_before_the_text(serve: Serve) -> None:
    upstream = await serve(
        script(
            thinking("The user "),
            thinking("greets me."),
            chunk("Hel", role=None),
            chunk("lo!"),
        )
    )
    pieces = await collect(source(upstream.url))
    assert kinds(pieces) == [
        ("reasoning", "The user "),
        ("reasoning", "greets me."),
        ("text", "Hel"),
        ("text", "lo!"),
    ]
    assert [type(p) for p in pieces[2:]] == [str, str]  # the text is plain text, as ever
    # reasoning=False: the text alone, as before reasoning was read.
    upstream = await serve(script(thinking("Hmm."), chunk("Hi")))
    assert kinds(await collect(source(upstream.url, reasoning=False))) == [("text", "Hi")]


async def test_the_reasoning_field_and_values_that_are_not_reasoning(serve: Serve) -> None:
    """OpenRouter's ``reasoning`` (its ``reasoning_details`` objects beside it are not
    read); a delta with both fields has the same text twice (one is read); ``null``,
    numbers, objects and lists in either field are passed over without a failure."""
    details = [{"type": "reasoning.text", "text": "Hmm"}]
    upstream = await serve(
        script(
            thinking("Hmm", "reasoning", reasoning_details=details),
            thinking(", twice", reasoning=", twice"),
            thinking(None, "reasoning"),
            thinking(None, content="A"),
            thinking(7),
            thinking({"text": "no"}, "reasoning"),
            thinking(["no"]),
            thinking(""),
            thinking(True, "reasoning", content="B"),
            thinking(None, reasoning=".", content="C"),
        )
    )
    pieces = await collect(source(upstream.url))
    assert kinds(pieces) == [
        ("reasoning", "Hmm"),
        ("reasoning", ", twice"),
        ("text", "A"),
        ("text", "B"),
        ("reasoning", "."),
        ("text", "C"),
    ]


async def test_a_reply_of_reasoning_only_fails_after_its_reasoning(serve: Serve) -> None:
    """A model that reasoned and wrote no answer (a server whose reasoning parser took the
    whole reply, a model that stopped after thinking) is not a complete, empty reply: its
    reasoning arrives, then an ``UPSTREAM_ERROR`` that says what happened. So also with
    ``reasoning=False``, where the reply would otherwise be silently empty."""
    for options in ({}, {"reasoning": False}):
        upstream = await serve(script(thinking("Let me think"), thinking(" about it.")))
        pieces, error = await failure(source(upstream.url, **options))
        expected = [] if options else [("reasoning", "Let me think"), ("reasoning", " about it.")]
        assert kinds(pieces) == expected
        assert error.code == StreamErrorCode.UPSTREAM_ERROR
        assert error.message == "The model reasoned but wrote no answer"
    # Cut at its length limit while reasoning: said as such, not as reasoning only.
    upstream = await serve(script(thinking("Long"), finish="length"))
    _, error = await failure(source(upstream.url))
    assert "length limit" in error.message


async def run(
    url: str, pipeline: Pipeline, *, forward_events: bool = True
) -> list[GenerationEvent]:
    """The events of a generation of ``openai_chat`` against ``url`` through ``pipeline``."""
    generations = Generations(MemoryStore())
    generation_id = await generations.start(
        source(url), pipeline, owner="me", forward_events=forward_events
    )
    events: list[GenerationEvent] = []
    async with asyncio.timeout(WAIT_LIMIT):
        async for batch in generations.follow(generation_id, "me"):
            events += batch
    return events


def reasoning_of(events: list[GenerationEvent]) -> str:
    return "".join(e.data["text"] for e in events if isinstance(e, Event) and e.name == "reasoning")


def text_of(events: list[GenerationEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, Chunk))


def split(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


async def test_a_generation_sends_tricky_reasoning_split_anywhere_as_reasoning_events(
    serve: Serve,
) -> None:
    """Reasoning with ``</thought>``, tags and ``<``, one character a delta, interleaved
    with the text: every character reaches the ``reasoning`` events and the pipeline's
    ``reasoning``, none the text, with no ``ReasoningExtractor`` (a plain pipeline) and
    with the chat's ``response`` pipeline, where the reply's own ``<thought>`` joins it."""
    xml = "<response><thought>Short.</thought><actions>REPLY</actions><text>Hi <b></text>"
    deltas = [
        *(thinking(c) for c in TRICKY[:20]),
        chunk("<response><thought>Sh"),
        *(thinking(c, "reasoning") for c in TRICKY[20:]),
        *(chunk(piece) for piece in split(xml.removeprefix("<response><thought>Sh"), 3)),
        chunk("</response>"),
    ]
    upstream = await serve(script(*deltas))
    plain = Pipeline()
    events = await run(upstream.url, plain)
    assert reasoning_of(events) == TRICKY == plain.reasoning
    assert text_of(events) == xml + "</response>"
    assert isinstance(events[-1], Complete)

    upstream = await serve(script(*deltas))
    chat = Pipeline(ReasoningExtractor(), ResponseStreamExtractor())
    events = await run(upstream.url, chat)
    # The reply's own thought is held back a margin while it streams (for a split
    # ``</thought>``): its first characters follow the provider's reasoning meanwhile.
    assert reasoning_of(events) == TRICKY + "Short."
    assert chat.reasoning == reasoning_of(events)
    assert text_of(events) == "Hi <b>"
    assert isinstance(events[-1], Complete)


async def test_reasoning_only_reaches_its_client_before_the_error(serve: Serve) -> None:
    upstream = await serve(script(thinking("Only "), thinking("this.")))
    pipeline = Pipeline()
    events = await run(upstream.url, pipeline)
    assert reasoning_of(events) == pipeline.reasoning == "Only this."
    assert text_of(events) == ""
    assert isinstance(events[-1], Error) and events[-1].code == "UPSTREAM_ERROR"
    assert events[-1].message == "The model reasoned but wrote no answer"


async def test_without_forwarded_events_reasoning_is_kept_but_not_sent(serve: Serve) -> None:
    """``send_extractor_events = False`` (a view's default): no ``reasoning`` events, as
    for a ``<thought>``; the pipeline still has it, and the text is the text."""
    upstream = await serve(script(thinking("Secret"), chunk("Hi")))
    pipeline = Pipeline()
    events = await run(upstream.url, pipeline, forward_events=False)
    assert [type(e) for e in events] == [Chunk, Complete]
    assert text_of(events) == "Hi" and pipeline.reasoning == "Secret"


async def test_reasoning_counts_toward_max_reply_chars(serve: Serve) -> None:
    upstream = await serve(script(*(thinking("x" * 10) for _ in range(20)), chunk("Hi")))
    with override_settings(STREAMING={"MAX_REPLY_CHARS": 55}):
        events = await run(upstream.url, Pipeline())
    assert reasoning_of(events) == "x" * 55
    assert isinstance(events[-1], Error) and events[-1].code == "REPLY_TOO_LARGE"


async def test_sse_response_sends_reasoning_as_its_own_event(serve: Serve) -> None:
    from streaming import sse_response
    from streaming.testing import read_sse

    upstream = await serve(script(thinking("a\nb </thought>"), chunk("Hi")))
    events = await read_sse(sse_response(source(upstream.url)))
    assert [
        (e.event, json.loads(e.data) if e.event == "reasoning" else e.data) for e in events
    ] == [
        ("reasoning", {"text": "a\nb </thought>"}),
        ("message", "Hi"),
    ]


async def test_use_model_leaves_reasoning_out_of_the_raw_reply(serve: Serve) -> None:
    from streaming.runtime import use_model

    upstream = await serve(script(thinking("Hmm"), chunk("<text>Hi</text>")))
    pushed: list[str] = []

    class Context:
        def push(self, chunk: str) -> None:
            pushed.append(chunk)

    assert await use_model(source(upstream.url), streaming_context=Context()) == "<text>Hi</text>"
    assert pushed == ["<text>Hi</text>"]


async def test_a_surrogate_pair_split_across_two_deltas_is_one_character(serve: Serve) -> None:
    """A server that cuts its text in UTF-16 units sends an emoji's two halves in two
    deltas (each a lone surrogate once read): they come out as the one character, in the
    text and in the reasoning. A half with no other half stays lone (the generation makes
    it U+FFFD), and ASCII text around it is left as it was."""
    high, low = "\ud83d", "\udc4b"  # 👋
    upstream = await serve(
        script(
            thinking(f"A {high}"),
            thinking(f"{low} B"),
            chunk(f"Hi {high}"),
            chunk(f"{low}!"),
            chunk(high),
            chunk(low),
            chunk(f"x{high}"),
            chunk("y"),
            chunk(f"{low}{high}"),
            thinking(f"C {high}"),
            chunk("D"),
        )
    )
    pieces = await collect(source(upstream.url))
    assert kinds(pieces) == [
        ("reasoning", "A "),
        ("reasoning", "👋 B"),
        ("text", "Hi "),
        ("text", "👋!"),
        ("text", "👋"),
        ("text", "x"),
        ("text", f"{high}y"),
        ("text", low),
        ("text", high),
        ("reasoning", "C "),
        ("reasoning", high),
        ("text", "D"),
    ]
