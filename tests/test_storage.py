"""Turn storage: the history budget, titles, the start and end of a turn; and the chat's
multi-turn conversation against a local OpenAI-compatible server (the real ``openai``
SDK), which must be sent the stored first turn with the second prompt."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from django.test import override_settings

from streaming.chat import ConversationReplies, RecordingPipeline, settle_turn, turn_options
from streaming.errors import StreamError, StreamErrorCode
from streaming.events import Chunk, Error, Event, to_record
from streaming.generations import Generations, get_generations
from streaming.models import Conversation, Message
from streaming.sources.prompts import XML_SYSTEM_PROMPT
from streaming.storage import (
    Turn,
    auto_title,
    begin_turn,
    end_turn,
    in_db,
    record_shown,
    within_budget,
)
from streaming.store import MemoryStore
from streaming.testing import read_sse

from .conftest import Serve
from .db_threads import own_db_thread
from .sources.test_openai import chunk
from .sources.upstream import Reply, Request


def test_the_history_budget_drops_the_oldest_turns_first_and_never_cuts_one() -> None:
    newest_first = [
        ("assistant", "d" * 10),
        ("user", "c" * 10),
        ("assistant", ""),
        ("user", "a" * 10),
    ]
    assert within_budget(newest_first, 100) == [
        {"role": "user", "content": "a" * 10},
        {"role": "user", "content": "c" * 10},
        {"role": "assistant", "content": "d" * 10},
    ]
    assert within_budget(newest_first, 25) == [
        {"role": "user", "content": "c" * 10},
        {"role": "assistant", "content": "d" * 10},
    ]
    assert within_budget(newest_first, 9) == []


def test_a_title_is_the_first_prompt_on_one_line_and_shortened() -> None:
    assert auto_title("  Hello\n  there  ") == "Hello there"
    long = auto_title("word " * 40)
    assert len(long) == 60 and long.endswith("…")


@pytest.mark.django_db
def test_begin_turn_sends_the_stored_turns_within_the_budget() -> None:
    turn = begin_turn("user:1", None, "x" * 30, generation_id="g1")
    end_turn(turn, "complete", "y" * 30)
    with override_settings(STREAMING={"HISTORY_MAX_CHARS": 45}):
        second = begin_turn("user:1", turn.conversation_id, "z", generation_id="g2")
    assert second.history == [{"role": "assistant", "content": "y" * 30}]
    assert second.prompt == "z"
    conversation = Conversation.objects.get(pk=turn.conversation_id)
    assert conversation.generation == "g2"
    assert conversation.title == "x" * 30


@pytest.mark.django_db
def test_end_turn_maps_how_a_reply_ended_and_bumps_updated() -> None:
    turn = begin_turn("user:1", None, "Hi", generation_id="g1")
    before = Conversation.objects.get(pk=turn.conversation_id).updated
    for end, status in (("complete", "complete"), ("cancelled", "stopped"), ("error", "failed")):
        message = end_turn(Turn(turn.conversation_id, f"g-{end}", "Hi"), end, "text", "why")
        assert message is not None and message.status == status
    assert end_turn(turn, "complete", "text") is not None
    assert end_turn(turn, "error", "again") is None  # a turn's message is stored once
    conversation = Conversation.objects.get(pk=turn.conversation_id)
    assert conversation.updated > before
    assert conversation.generation == ""
    assert Message.objects.filter(conversation=conversation).count() == 5


@pytest.mark.django_db
def test_a_reply_stopped_after_showing_part_of_it_is_stored_cut_there() -> None:
    turn = begin_turn("user:1", None, "Hi", generation_id="g1")
    record_shown("user:2", "g1", 1)  # another owner's stop records nothing
    record_shown("user:1", "g1", 3)
    message = end_turn(turn, "cancelled", "a🙂cdef")
    assert message is not None and (message.content, message.status) == ("a🙂c", "stopped")
    # Two stops at once: the one that showed less. More than there is: all of it.
    second = begin_turn("user:1", turn.conversation_id, "Again", generation_id="g2")
    record_shown("user:1", "g2", 2**40)  # more than the column holds
    record_shown("user:1", "g1", 0)  # an ended reply's: nothing
    message = end_turn(second, "cancelled", "all of it")
    assert message is not None and message.content == "all of it"
    third = begin_turn("user:1", turn.conversation_id, "More", generation_id="g3")
    record_shown("user:1", "g3", 7)
    record_shown("user:1", "g3", 4)
    record_shown("user:1", "g3", 9)
    message = end_turn(third, "cancelled", "partial text")
    assert message is not None and message.content == "part"
    # Ended otherwise before the stop landed, as every client was told: stored whole.
    for end, status in (("complete", "complete"), ("error", "failed")):
        late = begin_turn("user:1", turn.conversation_id, end, generation_id=f"g-{end}")
        record_shown("user:1", f"g-{end}", 2)
        message = end_turn(late, end, "whole text")
        assert message is not None and (message.content, message.status) == ("whole text", status)
    fourth = begin_turn("user:1", turn.conversation_id, "Last", generation_id="g4")
    message = end_turn(fourth, "complete", "whole")
    assert message is not None and (message.content, message.status) == ("whole", "complete")
    assert Conversation.objects.get(pk=turn.conversation_id).shown_when_stopped is None


@pytest.mark.django_db
def test_end_turn_of_a_deleted_conversation_stores_nothing() -> None:
    turn = begin_turn("user:1", None, "Hi", generation_id="g1")
    Conversation.objects.filter(pk=turn.conversation_id).delete()
    assert end_turn(turn, "complete", "text") is None
    assert not Message.objects.exists()


@pytest.mark.django_db
def test_a_renamed_conversation_keeps_its_title_and_a_busy_one_refuses() -> None:
    conversation = Conversation.objects.create(owner="user:1", title="Mine", renamed=True)
    turn = begin_turn("user:1", str(conversation.pk), "Hello", generation_id="g1")
    assert Conversation.objects.get(pk=turn.conversation_id).title == "Mine"
    with pytest.raises(StreamError, match="still running") as busy:
        begin_turn("user:1", str(conversation.pk), "Again", generation_id="g2")  # g1 not over
    assert busy.value.code == StreamErrorCode.CONVERSATION_BUSY
    with pytest.raises(StreamError, match="No such conversation"):
        begin_turn("user:2", str(conversation.pk), "Mine?", generation_id="g3")


async def remember(request: Request, reply: Reply) -> None:
    """An OpenAI-compatible reply in the XML shape, naming how many messages it got."""
    count = len(request.json()["messages"])
    await reply.head()
    text = (
        f"<response><thought>t{count}</thought><actions>REPLY</actions>"
        f"<text>got {count}</text></response>"
    )
    for start in range(0, len(text), 7):
        await reply.event(chunk(text[start : start + 7]))
    await reply.event("[DONE]")
    await reply.end()


@pytest.mark.django_db(transaction=True)
async def test_the_model_is_sent_the_stored_first_turn_with_the_second(
    serve: Serve, async_client: Any
) -> None:
    upstream = await serve(remember)
    model = {"BASE_URL": f"{upstream.url}/v1", "NAME": "local"}
    with override_settings(STREAMING={"MODEL": model, "KEEPALIVE": 1.0}):
        first = await async_client.post(
            "/chat/stream", {"prompt": "First"}, content_type="application/json"
        )
        await read_sse(first)
        conversation = first.headers["X-Conversation-Id"]
        second = await async_client.post(
            "/chat/stream",
            {"prompt": "Second", "conversation": conversation},
            content_type="application/json",
        )
        events = await read_sse(second)
    assert "".join(json.loads(e.data).get("chunk", "") for e in events) == "got 4"
    assert [r.json()["messages"] for r in upstream.requests] == [
        [{"role": "system", "content": XML_SYSTEM_PROMPT}, {"role": "user", "content": "First"}],
        [
            {"role": "system", "content": XML_SYSTEM_PROMPT},
            {"role": "user", "content": "First"},
            {"role": "assistant", "content": "got 2"},
            {"role": "user", "content": "Second"},
        ],
    ]
    stored = await in_db(
        lambda: list(
            Message.objects.filter(conversation_id=conversation).values_list(
                "role", "content", "reasoning"
            )
        )
    )
    assert stored == [
        ("user", "First", ""),
        ("assistant", "got 2", "t2"),
        ("user", "Second", ""),
        ("assistant", "got 4", "t4"),
    ]


@pytest.mark.django_db
def test_the_migrations_match_the_models() -> None:
    from django.core.management import call_command

    call_command("makemigrations", "streaming", "--check", "--dry-run", verbosity=0)


@pytest.mark.django_db
def test_a_deleted_users_conversations_go_with_them() -> None:
    """The owner is a string, not a foreign key: without the signal they would stay,
    for a user given the same key later to find."""
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create(username="leaving")
    stays = get_user_model().objects.create(username="staying")
    mine = Conversation.objects.create(owner=f"user:{user.pk}")
    Message.objects.create(conversation=mine, role="user", content="Hi")
    theirs = Conversation.objects.create(owner=f"user:{stays.pk}")
    visitor = Conversation.objects.create(owner="session:" + "0" * 32)
    user.delete()
    assert not Conversation.objects.filter(pk=mine.pk).exists()
    assert not Message.objects.filter(conversation_id=mine.pk).exists()
    assert set(Conversation.objects.values_list("pk", flat=True)) >= {theirs.pk, visitor.pk}


@pytest.mark.django_db(transaction=True)
@own_db_thread
async def test_a_reply_ended_but_not_stored_is_stored_with_its_text_and_reasoning() -> None:
    """Its process died before storing it: the next look at its chat stores it as failed,
    with the text and the reasoning its events kept (the reasoning was dropped)."""
    store = MemoryStore()
    turn = await in_db(begin_turn, "user:1", None, "Why?", generation_id="g-dead")
    await store.create("g-dead", owner="user:1")
    events = [
        Event(0, "reasoning", {"text": "Because "}),
        Chunk(0, "It "),
        Event(0, "reasoning", {"text": "so"}),
        Event(0, "field", {"text": "not reasoning"}),
        Chunk(0, "is."),
        Error(0, "INTERRUPTED", "The server running the reply stopped"),
    ]
    await store.append_many("g-dead", [to_record(event) for event in events])
    await store.finish("g-dead")
    settled = await settle_turn(Generations(store), "user:1", turn.conversation_id, "g-dead")
    assert settled == "ended"
    message = await Message.objects.aget(conversation_id=turn.conversation_id, role="assistant")
    assert (message.content, message.reasoning, message.status) == (
        "It is.",
        "Because so",
        "failed",
    )


async def endless() -> AsyncIterator[str]:
    while True:
        yield "word "
        await asyncio.sleep(0.01)


@pytest.mark.django_db(transaction=True)
@own_db_thread
async def test_a_prompt_right_after_a_stop_that_did_not_wait_finds_the_reply_ended() -> None:
    """A stop answered by a process of an earlier version (a rolling deploy) only asks the
    process running the reply to stop it. A prompt to that conversation that comes at once
    waits for the reply to end, as after this version's stop, rather than being refused
    as ``CONVERSATION_BUSY``; the stopped reply is stored before it."""
    here = get_generations()
    elsewhere = Generations(here.store)  # another process, sharing the event store
    turn = await in_db(begin_turn, "user:1", None, "Hi", generation_id="g-stopped")
    pipeline = RecordingPipeline()
    options = turn_options(turn, pipeline)
    await elsewhere.start(endless(), pipeline, owner="user:1", policy="keep", **options)
    await asyncio.sleep(0.05)
    await here.store.request_cancel("g-stopped")  # that stop: asked, and answered at once
    async with asyncio.timeout(10):
        again = await ConversationReplies().begin_reply(
            "user:1", "Again", {"conversation": str(turn.conversation_id)}
        )
    assert again.conversation_id == turn.conversation_id
    stored = Message.objects.filter(conversation_id=turn.conversation_id).order_by("id")
    assert [(m.role, m.status, m.content[:5]) async for m in stored] == [
        ("user", "complete", "Hi"),
        ("assistant", "stopped", "word "),
        ("user", "complete", "Again"),
    ]
