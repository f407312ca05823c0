"""The ready-made chat for the AI SDK's ``useChat`` (npm ``ai``), over both its transports.

HTTP, for ``DefaultChatTransport`` (``api`` = ``<include root>chat/ui``):

* ``POST chat/ui`` with ``{id, messages, trigger, messageId, ...}`` answers with the reply
  as a UI message stream (``streaming.protocols.ai_sdk``);
* ``GET chat/ui/<id>/stream`` answers 204 when the chat has no reply running, else the
  running reply from its start, then follows it (the transport's resume);
* ``DELETE chat/ui/<id>/stream`` stops the running reply (204): the stop button's call.

WebSocket, for ``WebSocketChatTransport`` (``url`` = ``/ws/chat/ui/``): ``send``,
``resume`` (after ``lastSequence``, or the whole reply) and ``abort`` frames, several
requests at once on one socket, each answered with ``start``, ``chunk``, ``end`` or
``error`` frames (``no-active`` for a resume with nothing running).

The chat id names a stored conversation (``streaming.chat_turns``), created on first
use and owned like every reply. Its history comes from the database: of the messages the
client sends only the last one, the new prompt, is read.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from django.http import HttpRequest, HttpResponse

from . import chat_turns
from .addresses import scope_client_address
from .chat import (
    ChatView,
    ConversationReplies,
    RecordingPipeline,
    turn_options,
    wants_regenerate,
)
from .conf import setting
from .consumers import StreamConsumer
from .errors import StreamError, StreamErrorCode
from .events import TERMINAL, GenerationEvent, characters_of
from .generations import Generations, get_generations
from .protocols.ai_sdk import (
    UI_MESSAGE_STREAM_HEADERS,
    ChatTransportFrames,
    UIMessageChunks,
    error_frame,
    no_active_frame,
    sse_messages,
)
from .reply_body import ReplyBody, ReplyFrames
from .requests import call_hook, end_unstarted, hook_params, run_to_end
from .response import NoContent, SSEResponse
from .sse import ServerSentEvent
from .storage import Turn, in_db

logger = logging.getLogger("streaming")

Trigger = Literal["submit-message", "regenerate-message"]
#: A tuple, not a set: a client's ``trigger`` may be a list or an object (unhashable).
TRIGGERS = ("submit-message", "regenerate-message")
#: Longest chat id (characters) a client may send.
MAX_CHAT_ID_LENGTH = 200
#: The longest ``requestId`` a socket takes: each of a reply's frames carries it.
MAX_REQUEST_ID_LENGTH = 200
CHAT_ID = re.compile(rf"[A-Za-z0-9_~-][A-Za-z0-9_.~-]{{0,{MAX_CHAT_ID_LENGTH - 1}}}")
#: Keys of a request body that are the transport's own, not parameters of the reply.
TRANSPORT_KEYS = frozenset({"id", "messages", "trigger", "messageId"})
#: The chat's own parameters, which the transport's request decides (never its body).
CHAT_KEYS = frozenset({"prompt", "regenerate", "conversation", "chat"})


@dataclass(frozen=True)
class ChatRequest:
    """What ``useChat`` asks for, from either transport."""

    chat_id: str
    trigger: Trigger
    #: The new user message's text (``submit-message``); empty when regenerating.
    prompt: str
    #: The request's other parameters (``pipeline`` …, from the transport's ``body``).
    params: dict[str, Any]


def bad_request(message: str) -> StreamError:
    return StreamError(StreamErrorCode.BAD_REQUEST, message)


def check_chat_id(value: Any) -> str:
    """A chat id is one segment of ``chat/ui/<id>/stream`` (the AI SDK makes them of
    letters, digits, ``-`` and ``_``): an id with ``/``, or ``.`` and ``..``, could be
    started but never resumed or stopped."""
    if not isinstance(value, str) or not CHAT_ID.fullmatch(value):
        raise bad_request(
            f"'id' must be a chat id: 1 to {MAX_CHAT_ID_LENGTH} letters, digits, '-', '_', "
            "'.' or '~', not starting with '.'"
        )
    return value


def message_text(message: Any) -> str:
    """The text of a UI message (its ``text`` parts, joined)."""
    parts = message.get("parts") if isinstance(message, Mapping) else None
    if not isinstance(parts, list):
        raise bad_request("Each message must be an object with a list of 'parts'")
    return "".join(
        part["text"]
        for part in parts
        if isinstance(part, Mapping)
        and part.get("type") == "text"
        and isinstance(part.get("text"), str)
    )


def parse_chat_request(body: Mapping[str, Any], params: Mapping[str, Any]) -> ChatRequest:
    """A transport's request: ``id``, ``trigger``, and for a new message the last of
    ``messages``, which must be the user's. ``params`` are the request's own parameters."""
    chat_id = check_chat_id(body.get("id"))
    trigger = body.get("trigger")
    if trigger not in TRIGGERS:
        raise bad_request("'trigger' must be 'submit-message' or 'regenerate-message'")
    prompt = ""
    if trigger == "submit-message":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise bad_request("'messages' must be a list ending with the user's new message")
        last = messages[-1]
        if not isinstance(last, Mapping) or last.get("role") != "user":
            raise bad_request("The last message must be the user's")
        prompt = message_text(last)
        if not prompt.strip():
            raise bad_request("The user's new message has no text (no 'text' part)")
    return ChatRequest(chat_id, trigger, prompt, dict(params))


class ChatIdReplies(ConversationReplies):
    """The chat's replies, in the conversation a ``useChat`` chat id names (``chat``)."""

    async def begin_reply(self, owner: str, prompt: str, params: Mapping[str, Any]) -> Turn:
        """The chat id's conversation, created on first use, takes the turn."""
        key = await chat_turns.conversation_id(owner, params["chat"])
        if not wants_regenerate(params):
            await in_db(chat_turns.open_conversation, owner, key)
        rest = {k: v for k, v in params.items() if k != "chat"}
        return await super().begin_reply(owner, prompt, {**rest, "conversation": str(key)})


class UIMessageFrames(ReplyFrames):
    """A reply as the AI SDK's UI message stream: a ``data:`` line per chunk, and
    ``[DONE]`` after its end (also after a failure)."""

    def __init__(self, generation_id: str) -> None:
        self.generation_id = generation_id
        self.protocol = UIMessageChunks(generation_id)

    def batch(self, events: list[GenerationEvent]) -> bytes:
        chunks = self.protocol.messages(self.generation_id, events)
        return _encoded(sse_messages(chunks, done=isinstance(events[-1], TERMINAL)))

    def failure(self, error: StreamError, last: int) -> bytes:
        return _encoded(sse_messages([self.protocol.failure(error)], done=True))


def _encoded(messages: Iterable[ServerSentEvent]) -> bytes:
    return b"".join([message.encode() for message in messages])


class AISDKChatView(ChatIdReplies, ChatView):
    """``POST chat/ui``, and ``GET`` / ``DELETE`` ``chat/ui/<chat_id>/stream``.

    A ``ChatView`` (the same checks, limits, pipelines, storage and model hook,
    ``model_source``) that reads the transport's request and answers in its protocol.
    """

    http_method_names: ClassVar[list[str]] = ["get", "post", "delete", "options"]

    def get_params(self) -> dict[str, Any]:
        """The transport's body as the chat's parameters: ``prompt`` (the last message),
        ``regenerate``, and the body's other keys (``pipeline`` …)."""
        body = super().get_params()
        extra = {k: v for k, v in body.items() if k not in TRANSPORT_KEYS | CHAT_KEYS}
        request = parse_chat_request(body, extra)
        if request.trigger == "regenerate-message":
            return {**extra, "chat": request.chat_id, "regenerate": True}
        return {**extra, "chat": request.chat_id, "prompt": request.prompt}

    def follow_response(
        self, generations: Generations, generation_id: str, owner: str, *, after: int
    ) -> HttpResponse:
        response = self.ui_stream(generations, generation_id, owner)
        if self.turn is not None:
            response["X-Conversation-Id"] = str(self.turn.conversation_id)
        return response

    def _allowed_methods(self) -> list[str]:
        """``chat/ui`` takes a new message; ``chat/ui/<chat_id>/stream`` a resume or a stop."""
        methods = ("get", "delete") if "chat_id" in self.kwargs else ("post",)
        return [method.upper() for method in (*methods, "options")]

    async def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if "chat_id" in kwargs:
            return await self.http_method_not_allowed(request)
        return await super().post(request, *args, **kwargs)

    def _may_start_reply(self) -> bool:
        """Only the ``POST`` of a prompt starts a reply (a ``GET`` resumes one)."""
        return self.request.method == "POST"

    async def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """Resume: the running reply from its start, or 204 when none runs."""
        if "chat_id" not in kwargs:
            return await self.http_method_not_allowed(request)
        try:
            await self._check_request()
            owner = await call_hook(self.get_owner)
            chat_id = check_chat_id(kwargs.get("chat_id"))
            generation_id = await chat_turns.running(owner, chat_id, get_generations())
        except StreamError as exc:
            return self.error_response(exc)
        if generation_id is None:
            return NoContent()
        return self.ui_stream(get_generations(), generation_id, owner)

    async def delete(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """Stop: cancel the chat's running reply; 204 also when none runs (nothing to do)."""
        if "chat_id" not in kwargs:
            return await self.http_method_not_allowed(request)
        generations = get_generations()
        try:
            await self._check_request()
            owner = await call_hook(self.get_owner)
            chat_id = check_chat_id(kwargs.get("chat_id"))
            await chat_turns.stop(owner, chat_id, generations)
        except StreamError as exc:
            return self.error_response(exc)
        return NoContent()

    def ui_stream(self, generations: Generations, generation_id: str, owner: str) -> HttpResponse:
        """The reply from its start as a UI message stream, ending with ``[DONE]``.

        The message id is the generation id: the same on every replay, and stored with
        the reply (``Message.generation``)."""
        body = ReplyBody.following(
            generations, generation_id, owner, UIMessageFrames(generation_id)
        )
        return SSEResponse(body, headers=UI_MESSAGE_STREAM_HEADERS)


class AISDKChatConsumer(ChatIdReplies, StreamConsumer):
    """``/ws/chat/ui/``: the same chat for ``WebSocketChatTransport``, several requests at
    once on one socket (each followed by its own task, keyed by ``requestId``)."""

    #: ``send`` starts a reply, ``resume`` reads one (see ``StreamConsumer.owner_frames``).
    owner_frames: ClassVar[frozenset[str]] = frozenset({"send", "resume"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: requestId -> the task that answers it, and the reply it follows.
        self.requests: dict[str, asyncio.Task[None]] = {}
        self.following: dict[str, str] = {}
        #: Requests aborted before their reply started: it is cancelled as it starts.
        self.aborted: set[str] = set()

    async def disconnect(self, code: int) -> None:
        """The socket went away: stop answering; the replies run on (``keep``) for a resume."""
        for task in self.requests.values():
            task.cancel()
        self.requests.clear()

    async def send_error(self, error: StreamError, message_id: str | None = None) -> None:
        """A frame no request can be named for (not JSON, binary, flooding)."""
        await self.send_json(error_frame(message_id or "", error))

    # --------------------------------------------------------------- frames
    async def on_send(self, content: dict[str, Any]) -> None:
        request_id = await self._new_request(content)
        if request_id is None:
            return
        try:
            body = content.get("body")
            headers = content.get("headers")
            if not isinstance(body, dict) or not _string_map(headers):
                raise bad_request("'headers' must map strings to strings and 'body' be an object")
            params = hook_params(body, *CHAT_KEYS)
            chat_request = parse_chat_request(content, params)
        except StreamError as exc:
            await self.send_json(error_frame(request_id, exc))
            return
        self._answer(request_id, self._send(request_id, chat_request))

    async def on_resume(self, content: dict[str, Any]) -> None:
        request_id = await self._new_request(content)
        if request_id is None:
            return
        last = content.get("lastSequence")
        try:
            self.check_resume()
            chat_id = check_chat_id(content.get("id"))
            if last is not None and (
                isinstance(last, bool) or not isinstance(last, int) or last < 0
            ):
                raise bad_request("'lastSequence' must be a non-negative integer")
            generation_id = await chat_turns.running(self.owner, chat_id, self.generations)
        except StreamError as exc:
            await self.send_json(error_frame(request_id, exc))
            return
        if generation_id is None:
            await self.send_json(no_active_frame(request_id))
            return
        frames = ChatTransportFrames(request_id, generation_id, last)
        self._answer(request_id, self._follow_reply(frames, generation_id, resumed=True))

    async def on_abort(self, content: dict[str, Any]) -> None:
        """Stop the reply a request follows; the client has already let the request go,
        so nothing is answered (an unknown or finished request is no error)."""
        request_id = content.get("requestId")
        if not isinstance(request_id, str):
            return
        generation_id = self.following.get(request_id)
        if generation_id is not None:
            await self.generations.cancel(generation_id)
        elif request_id in self.requests:
            self.aborted.add(request_id)

    async def on_prompt(self, content: dict[str, Any]) -> None:
        """The chat consumer's own frames (``prompt``, ``cancel``, ``ping``) are not this
        protocol's: named in the error, as any other unknown type."""
        kind = str(content.get("type", "prompt"))
        request_id = content.get("requestId")
        await self.send_error(
            bad_request(f"Unknown message type {kind[:100]!r}"),
            request_id
            if isinstance(request_id, str) and len(request_id) <= MAX_REQUEST_ID_LENGTH
            else "",
        )

    on_cancel = on_prompt
    on_ping = on_prompt

    # --------------------------------------------------------------- requests
    async def _new_request(self, content: dict[str, Any]) -> str | None:
        """The frame's ``requestId`` when a new request may start; else answer why not."""
        request_id = content.get("requestId")
        if not isinstance(request_id, str) or not 0 < len(request_id) <= MAX_REQUEST_ID_LENGTH:
            # (Not echoed: every frame of the reply would carry it.)
            await self.send_error(
                bad_request(
                    f"'requestId' must be a string of 1 to {MAX_REQUEST_ID_LENGTH} characters"
                )
            )
            return None
        if request_id in self.requests:
            await self.send_json(error_frame(request_id, bad_request("This requestId is in use")))
            return None
        if len(self.requests) >= setting("WS_MAX_PENDING"):
            error = StreamError(
                StreamErrorCode.QUEUE_FULL, "Too many requests at once on this socket"
            )
            await self.send_json(error_frame(request_id, error))
            return None
        return request_id

    def _answer(self, request_id: str, work: Any) -> None:
        task = asyncio.create_task(work)
        self.requests[request_id] = task

        def done(_: asyncio.Task[None]) -> None:
            if self.requests.get(request_id) is task:
                del self.requests[request_id]
            self.following.pop(request_id, None)
            self.aborted.discard(request_id)

        task.add_done_callback(done)

    async def start_turn(self, request: ChatRequest) -> Turn:
        """Store the new turn and start its reply, which stores itself when it ends (not
        through ``generation_options``, which knows one turn per instance: a socket has
        several at once). Run to its end when the socket closes meanwhile (``run_to_end``)."""
        return await run_to_end(self._start_turn(request))

    async def _start_turn(self, request: ChatRequest) -> Turn:
        regenerate = request.trigger == "regenerate-message"
        if not regenerate:
            self.get_prompt({"prompt": request.prompt})  # the same limits as every prompt
        pipeline = RecordingPipeline(*self.get_extractors(request.params))
        generations = self.generations
        reservation = await generations.reserve(  # the limits first, as for every reply
            await call_hook(self.get_limits),
            owner=self.owner,
            address=scope_client_address(self.scope),
        )
        turn: Turn | None = None
        try:
            turn = await self.begin_reply(
                self.owner,
                request.prompt,
                {**request.params, "chat": request.chat_id, "regenerate": regenerate},
            )
            await generations.start(
                self.model_source(turn, request.params),
                pipeline,
                owner=self.owner,
                policy=self.disconnect_policy,
                forward_events=True,
                reservation=reservation,
                **turn_options(turn, pipeline),
            )
        except BaseException:
            await reservation.refund()
            if turn is not None:  # stored, but its reply did not start
                await end_unstarted(turn_options(turn, pipeline)["on_end"])
            raise
        return turn

    async def _send(self, request_id: str, chat_request: ChatRequest) -> None:
        try:
            turn = await self.start_turn(chat_request)
        except StreamError as exc:
            await self.send_json(error_frame(request_id, exc))
            return
        except Exception:
            logger.exception("The chat request %s failed", request_id)
            error = StreamError(StreamErrorCode.INTERNAL_ERROR, "The reply could not start")
            await self.send_json(error_frame(request_id, error))
            return
        frames = ChatTransportFrames(request_id, turn.generation_id)
        await self._follow_reply(frames, turn.generation_id)

    async def _follow_reply(
        self, frames: ChatTransportFrames, generation_id: str, *, resumed: bool = False
    ) -> None:
        """``start``, the reply's chunks from its first (numbered), then ``end``; a
        resume's text and reasoning count against ``check_resume`` as they go (several may
        run at once)."""
        self.following[frames.request_id] = generation_id
        generations = self.generations
        if frames.request_id in self.aborted:
            await generations.cancel(generation_id)
        await self.send_json(frames.start())
        try:
            async with aclosing(generations.follow(generation_id, self.owner, 0)) as batches:
                async for batch in batches:
                    if resumed:
                        self.resent += characters_of(batch)
                    for frame in frames.frames(generation_id, batch):
                        await self.send_json(frame)
        except StreamError as exc:
            await self.send_json(frames.error(exc))
            return
        await self.send_json(frames.end())


def _string_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
