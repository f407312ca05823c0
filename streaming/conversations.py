"""The chat's conversations as JSON, for its page: list, create, read, rename, delete.

Every view is scoped to the requesting owner (``streaming.owners.aowner_of``: the
user when logged in, else the session's visitor), so another owner's conversation, an
unknown id and a malformed one all get the same 404 ``NOT_FOUND``. Only a ``POST`` gives
an anonymous visitor their owner token (and so a session): the chat page's first chat.
Unsafe methods are protected by Django's CSRF middleware (send ``X-CSRFToken``). Errors are
``{"error": message, "code": CODE}``, as the streaming views answer; a database that
fails is a 503 ``STORE_UNAVAILABLE``.

* ``GET chat/conversations[?limit=N&before=<id>]``: ``{"conversations": [{"id",
  "title", "updated"}], "next": id | null}``, newest first, at most ``limit`` (1 to 100,
  default 100); pass ``next`` as ``before`` for the following page.
* ``POST chat/conversations`` (optional ``{"title"}``): 201 with ``{"id", "title", "updated"}``;
  429 ``RATE_LIMITED`` past ``MAX_CONVERSATIONS_PER_MINUTE`` from one address, 409
  ``TOO_MANY_CONVERSATIONS`` for an owner who keeps ``MAX_CONVERSATIONS_PER_OWNER``.
* ``GET chat/conversations/<id>[?limit=N&before=<message id>]``: the summary plus
  ``"messages"`` (``id``, ``role``, ``content``, ``status``, ``reasoning``,
  ``generation``, ``created``, oldest first): the latest ``limit`` (1 to 100, default 100),
  or the latest before message ``before``; ``"earlier"``: the id of the page's first
  message when earlier ones remain (pass it as ``before`` for the page before), else
  null; ``"running"``: the generation id of a reply still running (resume it), or that
  may be (the event store cannot say), else null; and ``"starting"``: true while the last
  reply's turn is stored but the reply is not yet in the event store (``running`` names
  it in a moment: ask again). A ``before`` that is not a message of this conversation is
  a 404 ``NOT_FOUND``, as the list's unknown cursor is.
* ``PATCH chat/conversations/<id>`` ``{"title"}``: the summary.
* ``DELETE chat/conversations/<id>``: 204, after stopping a running reply of it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, ClassVar

from asgiref.sync import async_to_sync, sync_to_async
from django.db import DatabaseError
from django.db.models import Q
from django.db.models.functions import Length
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import View

from .addresses import client_address
from .chat import is_running, settle_turn
from .conf import setting
from .csrf import check_csrf
from .errors import StreamError, StreamErrorCode
from .generations import get_generations
from .limits import admit_conversation, retry_after
from .login import check_logged_in
from .models import Conversation, Message
from .owners import aowner_of, atake_back_owner
from .requests import json_object, query_params
from .response import NoContent
from .storage import (
    clean_title,
    conversation_uuid,
    create_conversation,
    database_failure,
    delete_conversation,
    in_db,
    not_found,
)
from .views import ERROR_STATUS, not_atomic

logger = logging.getLogger("streaming")

#: Conversations one listing returns at most, and messages one page of a conversation.
MAX_LIST = 100
#: The characters (text and reasoning) one page of messages carries at most, past its
#: first message: a page of long replies is cut short (``earlier`` then names the rest),
#: so a request holds a few megabytes, not ``MAX_LIST`` times ``MAX_REPLY_CHARS``.
PAGE_MAX_CHARS = 1_000_000
#: The most digits of a message id a ``before`` cursor may have (a 64-bit key has 19).
MAX_ID_DIGITS = 18


def error_response(error: StreamError, status: int | None = None) -> JsonResponse:
    """``{"error", "code"}`` with the status the streaming views give that code (and
    ``Retry-After`` when the refusal has one)."""
    response = JsonResponse(
        {"error": error.message, "code": str(error.code)},
        status=status or ERROR_STATUS.get(str(error.code), 400),
    )
    seconds = retry_after(error)
    if seconds is not None:
        response["Retry-After"] = str(seconds)
    return response


def summary(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": str(conversation.pk),
        "title": conversation.title,
        "updated": conversation.updated.isoformat(),
    }


def message_data(message: Message) -> dict[str, Any]:
    return {
        "id": message.pk,
        "role": message.role,
        "content": message.content,
        "status": message.status,
        "reasoning": message.reasoning,
        "generation": message.generation,
        "created": message.created.isoformat(),
    }


async def running_generation(owner: str, generation_id: str) -> str | None:
    """The owner's generation ``generation_id`` (a conversation's last) unless the event
    store says it has ended."""
    return await _unless_ended(
        generation_id, partial(is_running, get_generations(), generation_id, owner)
    )


async def stop_reply(owner: str, generation_id: str) -> None:
    """Cancel the owner's generation ``generation_id`` (a deleted conversation's last)
    unless it has ended: also when the store cannot say (a reply running here stops without
    it); a store that fails the cancel is logged."""
    running = await running_generation(owner, generation_id)
    if running is not None:
        try:
            await get_generations().cancel(running)
        except StreamError as exc:
            logger.warning("Reply %s not stopped: the event store failed (%r)", running, exc)


def stop_replies(replies: list[tuple[str, str]]) -> None:
    """From sync code (the admin, a deleted user's signal): cancel the (owner,
    generation) replies that still run; the replies not yet in the event store find
    their conversation gone and stop themselves."""

    async def stop_all() -> None:
        for owner, generation_id in replies:
            await stop_reply(owner, generation_id)

    if any(generation_id for _, generation_id in replies):
        async_to_sync(stop_all)()


async def settled_generation(owner: str, conversation: Conversation) -> tuple[str | None, bool]:
    """The conversation's running reply, if any, and whether its last reply is starting
    (its turn stored, the reply not yet in the event store: it runs in a moment); a reply
    that ended without storing its message is stored now (``streaming.chat.settle_turn``)."""
    generation_id = conversation.generation
    starting = False

    async def running() -> bool:
        nonlocal starting
        state = await settle_turn(get_generations(), owner, conversation.pk, generation_id)
        starting = state == "starting"
        return state == "running"

    return await _unless_ended(generation_id, running), starting


async def _unless_ended(generation_id: str, running: Callable[[], Awaitable[bool]]) -> str | None:
    """``generation_id`` unless ``running()`` says it ended; None without one. A store
    that fails (logged) cannot say: the reply the conversation names may still run, and is
    named (a resume is refused until the store is back; called gone, it would be asked of
    the model again)."""
    if not generation_id:
        return None
    try:
        return generation_id if await running() else None
    except StreamError as exc:
        logger.warning("Reply %s: the event store failed (%r)", generation_id, exc)
        return generation_id


class ConversationAPIView(View):
    """What both endpoints share: the owner, JSON bodies and JSON errors."""

    owner: str

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Callable[..., Any]:
        """``csrf_exempt``: ``dispatch`` runs Django's CSRF check itself, so that a
        failure is a JSON error, not the middleware's HTML page. Out of ``ATOMIC_REQUESTS``
        (``not_atomic``), which Django refuses for async views. ``login_not_required`` for
        ``LoginRequiredMiddleware``: ``dispatch`` checks the login itself, to answer as JSON
        (401 ``UNAUTHENTICATED``), not with a redirect to the login page."""
        view = super().as_view(**initkwargs)
        view.csrf_exempt = True
        view.login_required = False
        return not_atomic(view)

    async def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        handler = getattr(self, (request.method or "").lower(), None)
        if request.method is None or request.method.lower() not in self.http_method_names:
            handler = None
        if handler is None:
            allowed = ", ".join(m.upper() for m in self.http_method_names if hasattr(self, m))
            refused = error_response(
                StreamError(
                    StreamErrorCode.METHOD_NOT_ALLOWED,
                    f"Method {request.method} is not allowed; allowed: {allowed}",
                ),
                405,
            )
            refused["Allow"] = allowed
            return refused
        try:
            # A session or user in a database that is down fails here: 503, as below.
            user = await request.auser() if hasattr(request, "auser") else None
            check_logged_in(user)  # before the CSRF check, which a logout may fail too
            await check_csrf(request)
            # Only a POST (a new conversation) gives an anonymous visitor an owner token:
            # a listing or a read by one without any finds nothing, and stores no session.
            session = getattr(request, "session", None)
            self.owner = await aowner_of(user, session, create=request.method == "POST")
            response: HttpResponse = await handler(request, *args, **kwargs)
        except StreamError as exc:
            response = error_response(exc)
        except DatabaseError as exc:
            response = error_response(await sync_to_async(database_failure)(exc))
        if response.status_code >= 400:  # a refused POST made no conversation
            await atake_back_owner(getattr(request, "session", None))
        return response

    def json_body(self, request: HttpRequest) -> dict[str, Any]:
        """The request's JSON object (an empty body is ``{}``), parsed as strictly as a
        prompt's (``streaming.requests.json_object``)."""
        return json_object(request, StreamErrorCode.BAD_REQUEST)

    async def conversation(self, conversation_id: str) -> Conversation:
        try:
            return await Conversation.objects.aget(
                pk=conversation_uuid(conversation_id), owner=self.owner
            )
        except Conversation.DoesNotExist:
            raise not_found() from None


class ConversationListView(ConversationAPIView):
    """``GET`` the owner's conversations, newest first; ``POST`` a new one."""

    http_method_names: ClassVar[list[str]] = ["get", "head", "post"]

    async def get(self, request: HttpRequest) -> HttpResponse:
        query = query_params(request)
        limit = _limit(query.get("limit"))
        conversations = Conversation.objects.filter(owner=self.owner).order_by("-updated", "-pk")
        before = query.get("before")
        if before:
            last = await self.conversation(before)
            conversations = conversations.filter(
                Q(updated__lt=last.updated) | Q(updated=last.updated, pk__lt=last.pk)
            )
        page = [c async for c in conversations[: limit + 1]]
        more = len(page) > limit
        page = page[:limit]
        return JsonResponse(
            {
                "conversations": [summary(c) for c in page],
                "next": str(page[-1].pk) if more else None,
            }
        )

    async def post(self, request: HttpRequest) -> HttpResponse:
        """Create one, within ``MAX_CONVERSATIONS_PER_MINUTE`` from the client's address
        and ``MAX_CONVERSATIONS_PER_OWNER``."""
        body = self.json_body(request)
        title = clean_title(body["title"]) if body.get("title") is not None else ""
        await admit_conversation(
            get_generations().store,
            address=client_address(request),
            per_minute=setting("MAX_CONVERSATIONS_PER_MINUTE"),
        )
        conversation = await in_db(create_conversation, self.owner, title)
        return JsonResponse(summary(conversation), status=201)


class ConversationView(ConversationAPIView):
    """``GET`` one conversation with its messages, ``PATCH`` its title, ``DELETE`` it."""

    http_method_names: ClassVar[list[str]] = ["get", "head", "patch", "delete"]

    async def get(self, request: HttpRequest, conversation_id: str) -> HttpResponse:
        """The latest page of messages (``limit``, and ``PAGE_MAX_CHARS``), or the page
        before message ``before``: the page's ids and sizes, newest first, then its
        messages, each one query on the ``(conversation, id)`` index whatever the
        conversation's length; the cursor itself comes first in the ids, so an unknown one
        is found without another query."""
        query = query_params(request)
        limit = _limit(query.get("limit"))
        conversation = await self.conversation(conversation_id)
        before = query.get("before")
        cursor = _message_id(before) if before else None
        running, starting = await settled_generation(self.owner, conversation)
        messages = Message.objects.filter(conversation=conversation).order_by("-id")
        if cursor is not None:
            messages = messages.filter(id__lte=cursor)
        sizes = messages.values_list("id", Length("content") + Length("reasoning"))
        newest = [row async for row in sizes[: limit + 1 + (cursor is not None)]]
        if cursor is not None:
            if not newest or newest[0][0] != cursor:
                raise no_message()
            newest = newest[1:]
        ids = _page_ids(newest, limit)
        page = [m async for m in Message.objects.filter(id__in=ids).order_by("id")]
        return JsonResponse(
            {
                **summary(conversation),
                "messages": [message_data(m) for m in page],
                "earlier": ids[-1] if len(ids) < len(newest) else None,
                "running": running,
                "starting": starting,
            }
        )

    async def patch(self, request: HttpRequest, conversation_id: str) -> HttpResponse:
        title = clean_title(self.json_body(request).get("title"))
        owned = Conversation.objects.filter(pk=conversation_uuid(conversation_id), owner=self.owner)
        if not await owned.aupdate(title=title, renamed=True):
            raise not_found()  # none, or deleted meanwhile (a DELETE racing this PATCH)
        return JsonResponse(summary(await self.conversation(conversation_id)))

    async def delete(self, request: HttpRequest, conversation_id: str) -> HttpResponse:
        """Delete first, then stop its reply: a reply not yet in the event store is then
        stopped by its own check (``streaming.chat.turn_options``), which finds no
        conversation, and one already there is found here."""
        generation_id = await in_db(delete_conversation, self.owner, conversation_id)
        await stop_reply(self.owner, generation_id)
        return NoContent()


def _page_ids(newest: list[tuple[int, int]], limit: int) -> list[int]:
    """The ids of a page, newest first: at most ``limit`` messages and, past the first,
    ``PAGE_MAX_CHARS`` characters."""
    ids: list[int] = []
    room = PAGE_MAX_CHARS
    for message_id, size in newest[:limit]:
        room -= size or 0
        if ids and room < 0:
            break
        ids.append(message_id)
    return ids


def no_message() -> StreamError:
    """A ``before`` cursor that is no message of the conversation: a 404, as the list's
    cursor that is no conversation of the owner."""
    return StreamError(StreamErrorCode.NOT_FOUND, "No such message in this conversation")


def _message_id(value: str) -> int:
    """A ``before`` cursor as a message id; anything else is no message (``no_message``)."""
    if not (value.isascii() and value.isdigit() and len(value) <= MAX_ID_DIGITS):
        raise no_message()
    return int(value)


def _limit(value: str | None) -> int:
    if value is None:
        return MAX_LIST
    digits = value.isascii() and value.isdigit() and len(value) <= len(str(MAX_LIST))
    if not digits or not 1 <= int(value) <= MAX_LIST:
        raise StreamError(
            StreamErrorCode.BAD_REQUEST, f"'limit' must be an integer from 1 to {MAX_LIST}"
        )
    return int(value)
