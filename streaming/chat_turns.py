"""A chat's turns in its stored conversation, for the ``useChat`` endpoints (``chat_ui``).

``ChatTurns`` is the one place the AI SDK endpoints touch the database: it finds (or
creates) the conversation a chat id names, stores the user's message, gives the model the
history from the database, records the running reply's generation id on the conversation,
and stores the reply (its text, its reasoning and how it ended) when it ends.

A chat id names a conversation of its owner: a UUID is the conversation's own id (one from
the conversations API, say); any other string, such as the ids ``useChat`` generates,
names the conversation derived from the owner and that string (``uuid5``), so two visitors'
chats never meet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.db import DatabaseError, transaction
from django.utils import timezone

from .conf import setting
from .errors import StreamError, StreamErrorCode
from .events import TERMINAL, Cancelled, Chunk, Complete, Error, Event, from_record
from .generations import FOLLOW_POLL, Generations, get_generations
from .protocols.ai_sdk import REASONING_EVENT, reasoning_text
from .sources import Message as PromptMessage
from .store.base import EventStore

logger = logging.getLogger("streaming")

P = ParamSpec("P")
R = TypeVar("R")

#: The namespace of the conversation ids derived from an owner and a chat id.
CHAT_NAMESPACE = uuid.UUID("0b7c6a52-3f0e-4c59-9a37-5b0d6c0e8a11")


def conversation_id(owner: str, chat_id: str) -> uuid.UUID:
    """The conversation a chat id names for ``owner``."""
    try:
        return uuid.UUID(chat_id)
    except ValueError:
        return uuid.uuid5(CHAT_NAMESPACE, f"{owner}\n{chat_id}")


def no_such_chat() -> StreamError:
    return StreamError(StreamErrorCode.NOT_FOUND, "No such chat (unknown or not yours)")


def reply_running() -> StreamError:
    return StreamError("REPLY_RUNNING", "A reply is running in this chat; stop it or resume it")


def in_thread(function: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """``function`` (database work) run in a thread; a database failure becomes a clean
    ``INTERNAL_ERROR`` for the client (and a log entry with the traceback)."""
    run = sync_to_async(function)

    async def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await run(*args, **kwargs)
        except DatabaseError as exc:
            logger.exception("The conversation could not be read or stored")
            raise StreamError(
                StreamErrorCode.INTERNAL_ERROR, "The conversation could not be read or stored"
            ) from exc

    return call


@dataclass
class Turn:
    """One request's turn: what the model is asked, and with what history."""

    conversation_id: uuid.UUID
    prompt: str
    history: list[PromptMessage]
    #: The conversation's reply before this one (the turn takes its place only if unchanged).
    previous_generation: str
    #: The user message this turn stored (removed again if the turn cannot start).
    user_message: int | None = None
    generation_id: str = ""


@dataclass
class ChatTurns:
    """Conversations as the ``useChat`` endpoints use them."""

    #: Replies being stored, by conversation (a next turn waits for its history).
    recording: dict[uuid.UUID, asyncio.Task[None]] = field(default_factory=dict)

    async def running(self, owner: str, chat_id: str, generations: Generations) -> str | None:
        """The generation id of the chat's running reply, or ``None`` (also for a chat that
        is unknown or someone else's: there is nothing of theirs to resume or stop)."""
        conversation = await _conversation(conversation_id(owner, chat_id))
        if conversation is None or conversation.owner != owner:
            return None
        generation_id: str = conversation.generation
        if generation_id and await _is_running(generations.store, generation_id):
            return generation_id
        return None

    async def begin(self, owner: str, chat_id: str, prompt: str, trigger: str) -> Turn:
        """Open the chat's conversation (created on first use) for a new turn."""
        key = conversation_id(owner, chat_id)
        conversation = await _conversation(key)
        if conversation is not None and conversation.owner != owner:
            raise no_such_chat()
        previous = conversation.generation if conversation is not None else ""
        if previous:
            if await _is_running(get_generations().store, previous):
                raise reply_running()
            await self._recorded(key)
        if trigger == "regenerate-message":
            return await in_thread(_regenerate_turn)(key, owner, previous)
        return await in_thread(_submit_turn)(key, owner, prompt, previous)

    async def abandon(self, turn: Turn) -> None:
        """The turn could not start: remove what it stored."""
        if turn.user_message is not None:
            await in_thread(_delete_message)(turn.user_message)

    async def started(self, turn: Turn, generations: Generations) -> None:
        """Make the turn's reply the conversation's running one, and store it when it ends.

        Two requests that raced past ``begin`` cannot both win: the loser's reply is
        cancelled and its turn removed (``REPLY_RUNNING``)."""
        won = await in_thread(_claim)(
            turn.conversation_id, turn.previous_generation, turn.generation_id
        )
        if not won:
            await generations.cancel(turn.generation_id)
            await self.abandon(turn)
            raise reply_running()
        task = asyncio.create_task(
            record_reply(generations.store, turn.conversation_id, turn.generation_id)
        )
        self.recording[turn.conversation_id] = task
        task.add_done_callback(lambda _: self._forget(turn.conversation_id, task))

    async def _recorded(self, key: uuid.UUID) -> None:
        task = self.recording.get(key)
        if task is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), timeout=setting("CLEANUP_TIMEOUT"))

    def _forget(self, key: uuid.UUID, task: asyncio.Task[None]) -> None:
        if self.recording.get(key) is task:
            del self.recording[key]


async def record_reply(store: EventStore, conversation: uuid.UUID, generation_id: str) -> None:
    """Read the reply from the store (without counting as a follower, so an unwatched
    reply still stops) and store it as the conversation's assistant message at its end."""
    from .models import Message

    text: list[str] = []
    reasoning: list[str] = []
    status = Message.Status.FAILED
    after = 0
    try:
        while True:
            stored = await store.read(generation_id, after, timeout=FOLLOW_POLL)
            if not stored:
                if await store.is_finished(generation_id):
                    break  # ended without a terminal event: the store failed
                continue
            events = [from_record(item.seq, item.data) for item in stored]
            for event in events:
                if isinstance(event, Chunk):
                    text.append(event.text)
                elif isinstance(event, Event) and event.name == REASONING_EVENT:
                    reasoning.append(reasoning_text(event.data))
                elif isinstance(event, Complete):
                    status = Message.Status.COMPLETE
                elif isinstance(event, Cancelled):
                    status = Message.Status.STOPPED
                elif isinstance(event, Error):
                    status = Message.Status.FAILED
            after = events[-1].seq
            if isinstance(events[-1], TERMINAL):
                break
    except StreamError:
        pass  # the store failed or lost the reply: store what arrived, as failed
    with contextlib.suppress(StreamError):  # logged; the reply itself went out
        await in_thread(_store_reply)(
            conversation, generation_id, "".join(text), "".join(reasoning), status
        )


async def _is_running(store: EventStore, generation_id: str) -> bool:
    try:
        return not await store.is_finished(generation_id)
    except StreamError:
        return False  # unknown or expired: nothing runs


@in_thread
def _conversation(key: uuid.UUID) -> Any:
    from .models import Conversation

    return Conversation.objects.filter(pk=key).first()


def _history(conversation: Any, before: int | None = None) -> list[PromptMessage]:
    messages = conversation.messages.all()
    if before is not None:
        messages = messages.filter(pk__lt=before)
    return [{"role": m.role, "content": m.content} for m in messages if m.content]


def _submit_turn(key: uuid.UUID, owner: str, prompt: str, previous: str) -> Turn:
    from .models import TITLE_MAX_LENGTH, Conversation, Message

    with transaction.atomic():
        conversation, _ = Conversation.objects.get_or_create(
            pk=key, defaults={"owner": owner, "title": " ".join(prompt.split())[:TITLE_MAX_LENGTH]}
        )
        if conversation.owner != owner:
            raise no_such_chat()
        history = _history(conversation)
        message = Message.objects.create(
            conversation=conversation, role=Message.Role.USER, content=prompt
        )
    return Turn(key, prompt, history, previous, user_message=message.pk)


def _regenerate_turn(key: uuid.UUID, owner: str, previous: str) -> Turn:
    """The last turn again: its user message, the history before it; the replies after
    it are removed (the new one takes their place)."""
    from .models import Conversation, Message

    with transaction.atomic():
        conversation = Conversation.objects.filter(pk=key, owner=owner).first()
        if conversation is None:
            raise no_such_chat()
        last = conversation.messages.filter(role=Message.Role.USER).order_by("-pk").first()
        if last is None:
            raise StreamError(StreamErrorCode.BAD_REQUEST, "This chat has no turn to regenerate")
        conversation.messages.filter(pk__gt=last.pk).delete()
        history = _history(conversation, before=last.pk)
    return Turn(key, last.content, history, previous)


def _delete_message(pk: int) -> None:
    from .models import Message

    Message.objects.filter(pk=pk).delete()


def _claim(key: uuid.UUID, previous: str, generation_id: str) -> bool:
    from .models import Conversation

    claimed = Conversation.objects.filter(pk=key, generation=previous).update(
        generation=generation_id, updated=timezone.now()
    )
    return bool(claimed)


def _store_reply(
    key: uuid.UUID, generation_id: str, text: str, reasoning: str, status: str
) -> None:
    from .models import Conversation, Message

    conversation = Conversation.objects.filter(pk=key).first()
    if conversation is None:
        return  # deleted while the reply ran
    Message.objects.create(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        content=text,
        reasoning=reasoning,
        status=status,
        generation=generation_id,
    )
    Conversation.objects.filter(pk=key).update(updated=timezone.now())
