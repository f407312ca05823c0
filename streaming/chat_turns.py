"""A ``useChat`` chat's turns in its stored conversation, for ``streaming.chat_ui``.

The turn's start and end are the chat's own (``streaming.chat.ConversationReplies``,
``streaming.storage``): the user's message stored, the model given the stored history, the
reply stored by the generation's ``on_end`` before its last event. What is particular to
the AI SDK is the chat id:

A chat id names a conversation of its owner, created on first use. A UUID (lower-case,
hyphenated) is the conversation's own id (one from the conversations API, or
``crypto.randomUUID()``); any other string, such as the ids ``useChat`` generates, names
the conversation derived from the owner and that string (``uuid5``), so two visitors'
chats never meet. Derived ids are version-5 UUIDs, and a version-5 UUID names itself
only for the owner of that conversation: anyone else's chat id, be it another owner's
derived id, names a conversation derived for them. So nobody can take the id another
owner's chat id will derive, nor learn whether that owner's conversation exists.
"""

from __future__ import annotations

import uuid

from .chat import is_running
from .errors import StreamError, StreamErrorCode
from .generations import Generations
from .models import Conversation
from .storage import canonical_uuid, check_room, current_generation, in_db, not_found, stop_turn

#: The namespace of the conversation ids derived from an owner and a chat id.
CHAT_NAMESPACE = uuid.UUID("0b7c6a52-3f0e-4c59-9a37-5b0d6c0e8a11")
#: The version of the UUIDs derived here (``uuid5``).
DERIVED_VERSION = 5


async def conversation_id(owner: str, chat_id: str) -> uuid.UUID:
    """The conversation a chat id names for ``owner``: its own id for a UUID spelled as
    the API writes ids (``storage.canonical_uuid``), but for a version-5 one that is not
    the id of one of ``owner``'s conversations; else one derived from the string."""
    key = canonical_uuid(chat_id)
    if key is not None and (key.version != DERIVED_VERSION or await in_db(_owns, owner, key)):
        return key
    return uuid.uuid5(CHAT_NAMESPACE, f"{owner}\n{chat_id}")


def _owns(owner: str, key: uuid.UUID) -> bool:
    return Conversation.objects.filter(pk=key, owner=owner).exists()


def open_conversation(owner: str, key: uuid.UUID) -> None:
    """Create the owner's conversation ``key`` on first use (``NOT_FOUND`` when it is
    someone else's)."""
    conversation = Conversation.objects.filter(pk=key).first()
    if conversation is None:
        check_room(owner)
        conversation, _ = Conversation.objects.get_or_create(pk=key, defaults={"owner": owner})
    if conversation.owner != owner:
        raise not_found()


async def running(owner: str, chat_id: str, generations: Generations) -> str | None:
    """The generation id of the chat's running reply, or ``None`` (also for a chat that
    is unknown or someone else's: nothing of the owner's runs there)."""
    try:
        generation_id = await in_db(
            current_generation, owner, await conversation_id(owner, chat_id)
        )
    except StreamError as exc:
        if exc.code == StreamErrorCode.NOT_FOUND:
            return None
        raise
    if generation_id and await is_running(generations, generation_id, owner):
        return generation_id
    return None


async def stop(owner: str, chat_id: str, generations: Generations) -> None:
    """Stop the chat's reply, also one whose turn is stored but that is not yet in the
    event store (``storage.stop_turn``); nothing for an unknown or someone else's chat."""
    try:
        generation_id = await in_db(stop_turn, owner, await conversation_id(owner, chat_id))
    except StreamError as exc:
        if exc.code == StreamErrorCode.NOT_FOUND:
            return
        raise
    if generation_id and await is_running(generations, generation_id, owner):
        await generations.cancel(generation_id, settle=True)
