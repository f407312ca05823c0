"""The ready-made chat: its page, and a reply in a stored conversation over SSE and
WebSockets, through a pipeline the client picks.

The model comes from ``streaming.sources.source_from_settings`` (``STREAMING["MODEL"]``,
else OpenAI or any compatible server when ``OPENAI_API_KEY`` is set, else the built-in demo
model) and is sent the conversation's earlier turns as the server stored them. The XML
pipelines separate the reply's ``<thought>`` as ``reasoning`` events. Include
``streaming.urls`` and ``streaming.routing.websocket_urlpatterns`` to serve them.
"""

from __future__ import annotations

import logging
import sys
import time
import uuid
from collections.abc import Mapping
from datetime import timedelta
from functools import partial
from typing import Any, Literal

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.urls import get_script_prefix
from django.utils import timezone
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_safe

from .chat_strings import page_strings
from .conf import setting
from .consumers import StreamConsumer
from .database_pool import (
    POOL_RETRY_AFTER,
    discard_broken_connections,
    log_pool_exhausted,
    pool_timed_out,
)
from .errors import StreamError, StreamErrorCode
from .events import Cancelled, Complete, Error
from .extractors import (
    ActionStreamFilter,
    PassthroughExtractor,
    Pipeline,
    ReasoningExtractor,
    ResponseStreamExtractor,
    XmlTagExtractor,
)
from .generations import DisconnectPolicy, Generations, get_generations
from .owners import is_connection_owner, owner_of
from .protocols.websocket import Frame, WebSocketFrames
from .requests import ExtractorFactory, PipelineChoiceMixin, get_prompt
from .sources import source_from_settings
from .storage import (
    Turn,
    begin_turn,
    busy,
    conversation_of,
    current_generation,
    end_turn,
    in_db,
    is_current_turn,
    record_shown,
)
from .views import SSEView

logger = logging.getLogger("streaming")

#: The pipelines a chat client may choose by name; ``response`` is the default. The XML
#: ones first separate the reply's ``<thought>`` as ``reasoning`` events.
CHAT_PIPELINES: dict[str, list[ExtractorFactory]] = {
    "passthrough": [PassthroughExtractor],
    "xml": [ReasoningExtractor, partial(XmlTagExtractor, "text")],
    "response": [ReasoningExtractor, ResponseStreamExtractor],
    "action": [ReasoningExtractor, ActionStreamFilter],
}


class RecordingPipeline(Pipeline):
    """A pipeline that keeps the text it let through: what a stopped reply had said.

    A model that ignores the XML its pipeline reads (plain text, not one tag) would give
    an empty reply: its text, up to ``MAX_BUFFER`` characters, is then let through whole
    when it ends (logged), rather than a blank answer the model was paid for."""

    def __init__(self, *extractors: Any) -> None:
        super().__init__(*extractors)
        self.pieces: list[str] = []
        #: The model's text while nothing passed and no tag came (else None).
        self._untagged: list[str] | None = []
        self._untagged_size = 0

    def push(self, chunk: str) -> str:
        text = super().push(chunk)
        if text:
            self.pieces.append(text)
        if self._untagged is not None:
            self._untagged_size += len(chunk)
            if text or "<" in chunk or self._untagged_size > int(setting("MAX_BUFFER")):
                self._untagged = None
            else:
                self._untagged.append(chunk)
        return text

    def flush(self) -> str:
        text = super().flush()
        if not text and not self.pieces and self._untagged:
            untagged = "".join(self._untagged)
            if untagged.strip():
                logger.warning(
                    "The model answered without the tags its pipeline reads: its %d "
                    "characters are passed through whole",
                    len(untagged),
                )
                text = untagged
        self._untagged = None
        if text:
            self.pieces.append(text)
        return text

    @property
    def text(self) -> str:
        return "".join(self.pieces)


async def is_running(generations: Generations, generation_id: str, owner: str) -> bool:
    """Whether the event store says the owner's generation still runs. One whose process
    died (its lease lapsed: a ``kill -9``) is ended in the store first (``INTERRUPTED``),
    as a follower would end it, rather than seen running until the store expires it."""
    store = generations.store
    if await store.owner(generation_id) != owner:
        return False
    if generation_id in generations.running:
        return True
    if await store.is_finished(generation_id):
        return False
    return not await generations.end_if_lapsed(generation_id)


#: Seconds from a turn being stored to its reply being in the event store, at most: a
#: turn the store does not know after that was lost (``settle_turn``).
START_GRACE = 10.0
#: ``settle_turn``'s answer: the reply runs, may be starting (a prompt now would be a
#: second reply), or has ended (and is stored).
TurnState = Literal["running", "starting", "ended"]

#: The replies whose turn this process stored, not yet known to be in the event store,
#: with when (``time.monotonic()``): kept ``START_GRACE`` seconds at most.
_starting_here: dict[str, float] = {}


def mark_starting(generation_id: str) -> None:
    """Note that this process stored the turn of ``generation_id`` and starts its reply."""
    now = time.monotonic()
    for stale in [g for g, since in _starting_here.items() if now - since > START_GRACE]:
        del _starting_here[stale]
    _starting_here[generation_id] = now


def is_starting_here(generation_id: str) -> bool:
    """Whether this process stored the turn of ``generation_id`` within ``START_GRACE``."""
    since = _starting_here.get(generation_id)
    return since is not None and time.monotonic() - since <= START_GRACE


async def settle_turn(
    generations: Generations, owner: str, conversation_id: Any, generation_id: str
) -> TurnState:
    """Where the conversation's last reply ``generation_id`` stands. A conversation names
    it until its message is stored: one that ended without storing it (its process died,
    or storing failed) is stored now, as failed, with the text and the reasoning its
    events kept.

    One the event store does not know is ``"starting"`` while this process starts it.
    Else, with a store of this process only (memory), it died with another process and
    is stored as failed, with no text, at once; with a shared store (Redis), another
    process may be starting it: that is its answer for ``START_GRACE`` seconds after its
    turn was stored, then it is stored as failed too."""
    if await is_running(generations, generation_id, owner):
        return "running"
    turn = Turn(uuid.UUID(str(conversation_id)), generation_id, "")
    store = generations.store
    if await store.owner(generation_id) == owner:
        try:
            text, reasoning = await generations.texts_before(generation_id, sys.maxsize)
        except StreamError:
            text = reasoning = ""  # its events expired meanwhile
        await in_db(end_turn, turn, "error", text, reasoning)
        return "ended"
    if is_starting_here(generation_id):
        return "starting"
    started_before = timezone.now() - timedelta(seconds=START_GRACE) if store.shared else None
    stored = await in_db(end_turn, turn, "error", "", started_before=started_before)
    if stored is None and await in_db(is_current_turn, turn):
        return "starting"
    return "ended"


def turn_options(turn: Turn, pipeline: RecordingPipeline) -> dict[str, Any]:
    """``Generations.start`` options of a turn's reply: its id, ``on_start`` (stop it when
    its conversation was deleted, or the reply stopped, before it was in the event store)
    and ``on_end`` (store it)."""

    async def on_start() -> bool:
        return await in_db(is_current_turn, turn)

    async def on_end(end: str) -> None:
        _starting_here.pop(turn.generation_id, None)
        await in_db(end_turn, turn, end, pipeline.text, pipeline.reasoning)

    return {"generation_id": turn.generation_id, "on_start": on_start, "on_end": on_end}


def wants_regenerate(params: Mapping[str, Any]) -> bool:
    """``regenerate``: ``true`` or ``false`` (in a query string, ``1`` or ``0`` too);
    anything else is ``BAD_REQUEST``, not quietly taken for one of them."""
    value = params.get("regenerate")
    if value is None or value is False or value in ("false", "0"):
        return False
    if value is True or value in ("true", "1"):
        return True
    raise StreamError(StreamErrorCode.BAD_REQUEST, "'regenerate' must be true or false")


class ConversationReplies(PipelineChoiceMixin):
    """What ``ChatView`` and ``ChatConsumer`` share: each reply belongs to a conversation.

    ``stream()`` stores the start of the turn and asks the model with the stored history;
    ``generation_options()`` gives the generation its id and the ``on_end`` that stores
    the reply. Parameters: ``conversation`` (absent: a new one) and ``regenerate``.
    """

    pipelines = CHAT_PIPELINES
    default_pipeline = "response"
    disconnect_policy: DisconnectPolicy = "keep"
    send_extractor_events = True

    turn: Turn | None = None
    pipeline: RecordingPipeline | None = None

    def get_prompt(self, params: Mapping[str, Any]) -> str:
        """The prompt; none with ``regenerate`` (the stored one is asked again)."""
        if wants_regenerate(params):
            if params.get("prompt") is not None:
                raise StreamError(StreamErrorCode.BAD_REQUEST, "'regenerate' takes no 'prompt'")
            return ""
        return get_prompt(params)

    def get_pipeline(self, params: Mapping[str, Any]) -> Pipeline:
        self.pipeline = RecordingPipeline(*self.get_extractors(params))
        return self.pipeline

    async def begin_reply(self, owner: str, prompt: str, params: Mapping[str, Any]) -> Turn:
        """Store the turn's start: the model is asked ``turn.prompt`` after ``turn.history``
        (``prompt``, or with ``regenerate`` the last stored one)."""
        self.turn = None  # until this one is stored (a socket's earlier turn is not it)
        conversation = params.get("conversation")
        regenerate = wants_regenerate(params)
        expected = ""
        if conversation is not None:
            expected = await in_db(current_generation, owner, conversation)
            if expected:
                generations = get_generations()
                state = await settle_turn(generations, owner, conversation, expected)
                if state == "running" and await generations.store.cancel_requested(expected):
                    # Asked to stop by a stop that did not wait for it (a process of an
                    # earlier version, during a rolling deploy): wait for it here.
                    await generations.cancel(expected, settle=True)
                    state = await settle_turn(generations, owner, conversation, expected)
                if state != "ended":
                    raise busy()
                expected = ""  # its message is stored: the conversation names no reply now
        generation_id = uuid.uuid4().hex
        mark_starting(generation_id)  # before it is stored: a prompt beside it sees it
        try:
            self.turn = await in_db(
                begin_turn,
                owner,
                conversation,
                None if regenerate else prompt,
                generation_id=generation_id,
                expected=expected,
                regenerate=regenerate,
            )
        except BaseException:
            _starting_here.pop(generation_id, None)
            raise
        return self.turn

    async def stopping(self, generation_id: str, owner: str, shown: int | None) -> None:
        """A reply its user stopped is stored as they saw it: cut at what their client
        had shown (the model wrote on while the stop travelled)."""
        if shown is not None:
            await in_db(record_shown, owner, generation_id, shown)

    def model_source(self, turn: Turn, params: Mapping[str, Any]) -> Any:
        pipeline = self.get_pipeline_name(params) or "response"
        return source_from_settings(turn.prompt, pipeline=pipeline, history=turn.history)

    def generation_options(self) -> dict[str, Any]:
        if self.turn is None or self.pipeline is None:
            return {}
        return turn_options(self.turn, self.pipeline)


class ChatView(ConversationReplies, SSEView):
    """``GET /chat/stream?prompt=...&pipeline=...&conversation=...`` or ``POST`` JSON,
    answered as SSE with the conversation in ``X-Conversation-Id``."""

    async def stream(self, prompt: str, **params: Any) -> Any:
        turn = await self.begin_reply(await self.get_owner(), prompt, params)
        return self.model_source(turn, params)

    def follow_response(
        self, generations: Generations, generation_id: str, owner: str, *, after: int
    ) -> HttpResponse:
        response = super().follow_response(generations, generation_id, owner, after=after)
        if self.turn is not None:
            response["X-Conversation-Id"] = str(self.turn.conversation_id)
        return response

    def error_response(self, error: StreamError) -> HttpResponse:
        """A reply that failed to start after its turn was stored (stored as failed)
        names its conversation too."""
        response = super().error_response(error)
        if self.turn is not None:
            response["X-Conversation-Id"] = str(self.turn.conversation_id)
        return response


class ConversationFrames(WebSocketFrames):
    """Our frames, with the reply's ``conversation`` on the last one (when known)."""

    def __init__(self, conversations: Mapping[str, str]) -> None:
        self.conversations = conversations

    def complete(self, generation_id: str, event: Complete) -> list[Frame]:
        return self._with_conversation(generation_id, super().complete(generation_id, event))

    def error(self, generation_id: str, event: Error) -> list[Frame]:
        return self._with_conversation(generation_id, super().error(generation_id, event))

    def cancelled(self, generation_id: str, event: Cancelled) -> list[Frame]:
        return self._with_conversation(generation_id, super().cancelled(generation_id, event))

    def failure(
        self, error: StreamError, generation_id: str | None = None, seq: int | None = None
    ) -> Frame:
        """A reply cut outside its events (the store lost, the reply gone from it) names
        its conversation too: its client may have started that conversation with it."""
        frame = super().failure(error, generation_id, seq)
        if generation_id is not None:
            self._with_conversation(generation_id, [frame])
        return frame

    def _with_conversation(self, generation_id: str, frames: list[Frame]) -> list[Frame]:
        conversation = self.conversations.get(generation_id)
        if conversation is not None:
            for frame in frames:
                frame["conversation"] = conversation
        return frames


class ChatConsumer(ConversationReplies, StreamConsumer):
    """``/ws/chat/``: the same chat over a WebSocket; the ``complete``, ``error`` and
    ``cancelled`` frames of a reply carry its ``conversation``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: The conversation of each reply this connection started or resumed.
        self.conversations: dict[str, str] = {}
        self.protocol = ConversationFrames(self.conversations)

    async def stream(self, prompt: str, **params: Any) -> Any:
        turn = await self.begin_reply(self.owner, prompt, params)
        self.conversations[turn.generation_id] = str(turn.conversation_id)
        return self.model_source(turn, params)

    async def on_resume(self, content: dict[str, Any]) -> None:
        """A resumed reply's last frame carries its conversation too (looked up)."""
        message_id = content.get("message_id")
        if isinstance(message_id, str) and message_id not in self.conversations:
            found = await in_db(conversation_of, self.owner, message_id)
            if found is not None:
                self.conversations[message_id] = found
        await super().on_resume(content)


@require_safe
@ensure_csrf_cookie
def chat_page(request: HttpRequest) -> HttpResponse:
    """The chat page, in the active language (``LocaleMiddleware``, else ``LANGUAGE_CODE``),
    with its script's sentences (``page_strings``). It sets the CSRF cookie its POST
    requests send back, and stores nothing: the visitor's owner token is only made by
    their first chat (its ``POST``), so a client that never chats (a crawler, an uptime
    check) adds no session. The page says whether the visitor has an owner yet
    (``data-owned``): until then its WebSocket, which cannot set a cookie, is opened again
    once the first chat's response has set it. A database that is down under the session
    (or the user) gets a short 503 page, not Django's 500 page and a traceback; one whose
    connection pool had no connection free says the server is busy."""
    try:
        owner = owner_of(
            getattr(request, "user", None), getattr(request, "session", None), create=False
        )
        context = {
            "owned": not is_connection_owner(owner),
            "max_prompt_length": setting("MAX_PROMPT_LENGTH"),
            # How long the page's event stream may carry nothing (not even a keep-alive)
            # before it is taken for dead and resumed: three KEEPALIVE periods, in ms.
            "stall_timeout": str(round(3 * float(setting("KEEPALIVE")) * 1000)),
            # streaming.routing's socket, under the script prefix the page's own URLs have
            # (daphne's --root-path, FORCE_SCRIPT_NAME), which Channels' URLRouter strips.
            "ws_url": f"{get_script_prefix()}ws/chat/",
            # Where the page's script reads the CSRF token; with sessions, the page's own.
            "csrf_cookie_name": "" if settings.CSRF_USE_SESSIONS else settings.CSRF_COOKIE_NAME,
            # Django's Content Security Policy (6.0+; its get_nonce() reads the same): the
            # import map is an inline script, allowed by the nonce.
            "csp_nonce": getattr(request, "_csp_nonce", None),
            "chat_strings": page_strings(),
        }
        return render(request, "streaming/chat.html", context)
    except DatabaseError as exc:
        exhausted = pool_timed_out(exc)
        if exhausted:
            log_pool_exhausted(exc)
        else:
            logger.error("The database failed under the chat page: %r", exc)
            discard_broken_connections(exc)
        # No request context: its processors would load the user from the database again.
        page = HttpResponse(
            render_to_string("streaming/unavailable.html", {"busy": exhausted}), status=503
        )
        if exhausted:
            page["Retry-After"] = str(POOL_RETRY_AFTER)
        return page
