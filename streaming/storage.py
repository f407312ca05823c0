"""How the chat stores a conversation's turns, without holding a database connection while
the model streams.

A reply touches the database twice, in short calls: when it starts (``begin_turn``: the
conversation is found or created, the user's message stored, the earlier turns read for
the model) and when it ends (``end_turn``: the assistant's message stored with its status
and the text so far). Each call runs in a worker thread (``in_db``) whose connections are
closed when it returns, so a reply that streams for minutes holds no connection, and the
thread of a request that has ended is never needed again.
"""

from __future__ import annotations

import logging
import re
import unicodedata
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.db import DatabaseError, connections, router, transaction
from django.db.models.functions import Coalesce, Least
from django.utils import timezone

from .conf import setting
from .database_pool import discard_broken_connections, pool_busy, pool_timed_out
from .errors import DATABASE_UNAVAILABLE, StreamError, StreamErrorCode
from .models import TITLE_MAX_LENGTH, Conversation, Message
from .surrogates import REPLACEMENT

logger = logging.getLogger("streaming")

P = ParamSpec("P")
R = TypeVar("R")

#: Characters of the first prompt that make a conversation's title.
AUTO_TITLE_LENGTH = 60
#: The largest ``Conversation.shown_when_stopped`` (a positive integer column): longer
#: than any reply.
SHOWN_MAX = 2**31 - 1
#: The status of an assistant message, by the type of the reply's last event.
STATUS_OF_END = {
    "complete": Message.Status.COMPLETE,
    "cancelled": Message.Status.STOPPED,
    "error": Message.Status.FAILED,
}


async def in_db(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run ``fn`` (ORM code) in a worker thread; close that thread's connections after it.

    Django's async ORM runs its calls in the thread of the request's context, whose
    connection stays open until the response ends (a stream: until the model is done),
    and a reply's task outlives its request. A thread of the default executor with a
    connection closed at once serves both cases.
    """

    def closing() -> R:
        try:
            return fn(*args, **kwargs)
        except DatabaseError as exc:
            raise database_failure(exc) from exc
        finally:
            connections.close_all()

    return await sync_to_async(closing, thread_sensitive=False)()


def database_failure(exc: DatabaseError) -> StreamError:
    """What a client is told when the database fails: busy when Django's pool had no
    connection free (``database_pool``), else unavailable. The details go to the log, with
    what to do when it failed because the app's tables were never created. Sync: it may
    ask the database which tables it has (not after a pool's timeout: that would wait for
    the pool again)."""
    if pool_timed_out(exc):
        return pool_busy(exc)
    discard_broken_connections(exc)
    if _tables_missing():
        logger.error(
            "The database failed: %r. The streaming app's tables are missing: "
            "run `manage.py migrate`.",
            exc,
        )
    else:
        logger.error("The database failed: %r", exc)
    return StreamError(StreamErrorCode.STORE_UNAVAILABLE, DATABASE_UNAVAILABLE)


def _tables_missing() -> bool:
    """Whether the database of this app's models lacks one of their tables (``False``
    when it cannot even say: it is down)."""
    try:
        alias = router.db_for_write(Conversation)
        tables = set(connections[alias].introspection.table_names())
    except DatabaseError:
        return False
    return not {Conversation._meta.db_table, Message._meta.db_table} <= tables


def not_found() -> StreamError:
    """The one answer for an unknown, malformed or someone else's conversation id."""
    return StreamError(StreamErrorCode.NOT_FOUND, "No such conversation")


def busy() -> StreamError:
    """The answer to a prompt while a reply runs in its conversation (one at a time)."""
    return StreamError(
        StreamErrorCode.CONVERSATION_BUSY,
        "A reply is still running in this conversation; wait for it or stop it",
    )


def current_generation(owner: str, conversation_id: Any) -> str:
    """The generation last started in the owner's conversation ("" for none), or
    ``NOT_FOUND``; whether it still runs is the event store's to say."""
    pk = conversation_uuid(conversation_id)
    generation = (
        Conversation.objects.filter(pk=pk, owner=owner).values_list("generation", flat=True).first()
    )
    if generation is None:
        raise not_found()
    return generation


def is_current_turn(turn: Turn) -> bool:
    """Whether the turn's conversation still exists and still names its reply (a stop
    or a delete takes it off, under the lock ``begin_turn`` takes)."""
    return Conversation.objects.filter(
        pk=turn.conversation_id, generation=turn.generation_id
    ).exists()


def stop_turn(owner: str, conversation_id: Any) -> str:
    """Take the running turn off the owner's conversation (``NOT_FOUND`` when there is no
    such conversation); return its generation ("" for none), to cancel. A reply not yet
    in the event store, where no cancel finds it, stops once it is: ``is_current_turn``."""
    with transaction.atomic():
        conversation = _locked(owner, conversation_id)
        generation = conversation.generation
        if generation:
            conversation.generation = ""
            conversation.save(update_fields=["generation"])
    return generation


def record_shown(owner: str, generation_id: str, shown: int) -> None:
    """The client stopping the owner's running reply had shown ``shown`` characters of it:
    ``end_turn`` stores the reply cut there (nothing for a reply no longer running). Two
    tabs stopping it at once: the one that showed less."""
    shown = min(shown, SHOWN_MAX)
    Conversation.objects.filter(owner=owner, generation=generation_id).update(
        shown_when_stopped=Least(Coalesce("shown_when_stopped", shown), shown)
    )


def delete_conversation(owner: str, conversation_id: Any) -> str:
    """Delete the owner's conversation (``NOT_FOUND`` if there is none); return the
    generation it last started ("" for none), to cancel, as ``stop_turn`` does."""
    with transaction.atomic():
        conversation = _locked(owner, conversation_id)
        conversation.delete()
    return conversation.generation


def _locked(owner: str, conversation_id: Any) -> Conversation:
    """The owner's conversation, locked (``select_for_update``; ``NOT_FOUND`` when there
    is none): a turn's start, a stop and a delete each see the others' writes whole."""
    pk = conversation_uuid(conversation_id)
    conversation = Conversation.objects.select_for_update().filter(pk=pk, owner=owner).first()
    if conversation is None:
        raise not_found()
    return conversation


def conversation_of(owner: str, generation_id: str) -> str | None:
    """The id of the owner's conversation a reply belongs to (running or stored), if any."""
    running = Conversation.objects.filter(owner=owner, generation=generation_id)
    pk = running.values_list("pk", flat=True).first()
    if pk is None:
        pk = (
            Message.objects.filter(conversation__owner=owner, generation=generation_id)
            .values_list("conversation_id", flat=True)
            .first()
        )
    return None if pk is None else str(pk)


def check_room(owner: str) -> None:
    """Refuse a new conversation to an owner who keeps ``MAX_CONVERSATIONS_PER_OWNER``
    already (``TOO_MANY_CONVERSATIONS``). Creations racing this count may pass it by as
    many as run at once; the per-address rates bound those."""
    limit = setting("MAX_CONVERSATIONS_PER_OWNER")
    if limit is not None and Conversation.objects.filter(owner=owner).count() >= limit:
        raise StreamError(
            StreamErrorCode.TOO_MANY_CONVERSATIONS,
            f"You keep {limit} conversations, the most allowed; delete one to start another",
        )


def create_conversation(owner: str, title: str = "") -> Conversation:
    """A new conversation of ``owner`` (``check_room`` first)."""
    check_room(owner)
    return Conversation.objects.create(owner=owner, title=title, renamed=bool(title))


#: A conversation id as the API writes it: a UUID, lower-case, with its four hyphens.
CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def canonical_uuid(value: str) -> uuid.UUID | None:
    """``value`` as a UUID if it is spelled as the API writes ids, else None: one
    conversation has one id, never an upper-case, braced or ``urn:uuid:`` alias."""
    return uuid.UUID(value) if CANONICAL_UUID.fullmatch(value) else None


def conversation_uuid(value: Any) -> uuid.UUID:
    """``value`` as a conversation id, or ``NOT_FOUND`` (never a hint of what is wrong)."""
    if isinstance(value, uuid.UUID):
        return value
    key = canonical_uuid(value) if isinstance(value, str) else None
    if key is None:
        raise not_found()
    return key


def visible(text: str) -> bool:
    """Whether ``text`` shows anything: a letter, digit, punctuation mark or symbol (not
    only spaces, controls, zero-width or other format characters)."""
    return any(unicodedata.category(char)[0] in "LNPS" for char in text)


def one_line(text: str) -> str:
    """``text``'s words on one line, without control characters (a NUL made storable
    first is U+FFFD, which stays)."""
    return " ".join(
        "".join(c for c in text if unicodedata.category(c) != "Cc" or c.isspace()).split()
    )


def auto_title(prompt: str) -> str:
    """A title from the first prompt: its words on one line, cut to ``AUTO_TITLE_LENGTH``
    (none when it shows nothing: the page then says "New chat")."""
    text = one_line(prompt)
    if not visible(text):
        return ""
    if len(text) > AUTO_TITLE_LENGTH:
        text = text[: AUTO_TITLE_LENGTH - 1].rstrip() + "…"
    return text[:TITLE_MAX_LENGTH]


def storable(text: str) -> str:
    """``text`` with each NUL replaced by U+FFFD: PostgreSQL's text columns refuse NUL
    (a prompt, title or reply with one would fail as if the database were down)."""
    return text.replace("\x00", REPLACEMENT) if "\x00" in text else text


def clean_title(value: Any) -> str:
    """A title a client sent: a string that shows something, on one line, of at most
    ``TITLE_MAX_LENGTH`` characters."""
    title = one_line(storable(value)) if isinstance(value, str) else ""
    if not visible(title):
        raise StreamError(
            StreamErrorCode.BAD_REQUEST,
            "'title' must be a string with a visible character (not only spaces, controls "
            "or zero-width characters)",
        )
    if len(title) > TITLE_MAX_LENGTH:
        raise StreamError(
            StreamErrorCode.BAD_REQUEST,
            f"'title' has {len(title)} characters; the limit is {TITLE_MAX_LENGTH}",
        )
    return title


def within_budget(newest_first: Iterable[tuple[str, str]], budget: int) -> list[dict[str, str]]:
    """The turns that fit in ``budget`` characters, oldest first; the oldest are dropped
    first, a turn is never cut, and an empty one (a reply that failed at once) is left out."""
    kept: list[dict[str, str]] = []
    used = 0
    for role, content in newest_first:
        if not content:
            continue
        used += len(content)
        if used > budget:
            break
        kept.append({"role": role, "content": content})
    kept.reverse()
    return kept


@dataclass
class Turn:
    """One reply in a conversation, from its start to its end."""

    conversation_id: uuid.UUID
    generation_id: str
    prompt: str
    #: The earlier turns the model is sent, oldest first.
    history: list[dict[str, str]] = field(default_factory=list)


def begin_turn(
    owner: str,
    conversation_id: Any,
    prompt: str | None,
    *,
    generation_id: str,
    expected: str = "",
    regenerate: bool = False,
) -> Turn:
    """Store the start of a reply: the user's message (or, to regenerate, drop the last
    reply and ask again), the title from the first prompt, and the reply's generation.

    ``conversation_id`` None creates a conversation. ``expected`` is the generation the
    caller found in it and knows to be over (``current_generation``): if another reply
    started since, this one is refused, so a conversation has one reply at a time.
    """
    prompt = None if prompt is None else storable(prompt)
    with transaction.atomic():
        if conversation_id is None:
            if regenerate or prompt is None:
                raise StreamError(
                    StreamErrorCode.BAD_REQUEST, "'regenerate' needs a 'conversation'"
                )
            conversation = create_conversation(owner)
        else:
            conversation = _locked(owner, conversation_id)
        if conversation.generation != expected:
            raise busy()
        earlier = Message.objects.filter(conversation=conversation)
        if regenerate:
            last_user = earlier.filter(role=Message.Role.USER).order_by("-id").first()
            if last_user is None:
                raise StreamError(StreamErrorCode.BAD_REQUEST, "There is no prompt to regenerate")
            earlier.filter(id__gt=last_user.id).delete()
            prompt = last_user.content
            before = last_user.id
        else:
            assert prompt is not None
            before = Message.objects.create(
                conversation=conversation, role=Message.Role.USER, content=prompt
            ).id
        if not conversation.title and not conversation.renamed:
            conversation.title = auto_title(prompt)
        conversation.generation = generation_id
        conversation.shown_when_stopped = None
        conversation.updated = timezone.now()
        conversation.save(update_fields=["title", "generation", "shown_when_stopped", "updated"])
        turns = history_before(conversation.pk, before)
    return Turn(conversation.pk, generation_id, prompt, turns)


def history_before(conversation_id: uuid.UUID, message_id: int) -> list[dict[str, str]]:
    """``history`` of the turns stored before message ``message_id``."""
    rows = (
        Message.objects.filter(conversation_id=conversation_id, id__lt=message_id)
        .order_by("-id")
        .values_list("role", "content")
        .iterator(chunk_size=20)
    )
    return within_budget(rows, int(setting("HISTORY_MAX_CHARS")))


def end_turn(
    turn: Turn, end: str, text: str, reasoning: str = "", *, started_before: Any = None
) -> Message | None:
    """Store the reply's message: its text so far, its reasoning and how it ended
    (``end`` is the type of its last event); a reply its client stopped after showing part
    of it (``record_shown``) is stored cut there (one that ended otherwise before the stop
    landed, as every client was told, whole). Nothing when the conversation was deleted,
    or already has the reply's message (a lost turn stored twice at once). With
    ``started_before`` (a datetime), only a turn the conversation still names and that
    began before then (a lost turn, not one starting now)."""
    with transaction.atomic():
        conversation = (
            Conversation.objects.select_for_update().filter(pk=turn.conversation_id).first()
        )
        if (
            conversation is None
            or conversation.messages.filter(generation=turn.generation_id).exists()
        ):
            return None
        if started_before is not None and (
            conversation.generation != turn.generation_id or conversation.updated > started_before
        ):
            return None
        status = STATUS_OF_END.get(end, Message.Status.FAILED)
        fields = ["updated"]
        if conversation.generation == turn.generation_id:
            shown = conversation.shown_when_stopped
            if shown is not None and status == Message.Status.STOPPED:
                text = text[:shown]
            conversation.generation = ""
            conversation.shown_when_stopped = None
            fields += ["generation", "shown_when_stopped"]
        message = Message.objects.create(
            conversation=conversation,
            role=Message.Role.ASSISTANT,
            content=storable(text),
            status=status,
            generation=turn.generation_id,
            reasoning=storable(reasoning),
        )
        conversation.updated = timezone.now()
        conversation.save(update_fields=fields)
    return message
