"""``StreamConsumer``: a model's reply over a WebSocket, as JSON text frames.

Client → server: ``{"type": "prompt", "prompt": ..., "pipeline": ...}`` (or just
``{"prompt": ...}``), ``{"type": "cancel", "shown": N}`` (``shown``, the characters
the client had shown, optional), ``{"type": "resume", "message_id": ...,
"after": N}``, ``{"type": "ping"}``; each is handled by ``on_<type>``.
Server → client (``streaming.protocols.WebSocketFrames``): ``chunk`` (``content``,
``message_id``, ``seq``), ``complete`` (``fullResponse``, ``message_id``), ``error``
(``code``, ``message``), ``cancelled`` (``message_id``), ``pong``.

When the server stops (SIGTERM under daphne, ``streaming.shutdown``), the current reply
ends with an ``error`` frame ``SHUTTING_DOWN`` and the socket closes with code 4012
(RFC 6455's 1012 "service restart" in the range daphne lets an application send).

Each reply runs as a generation (``streaming.generations``), never inside
``receive_json``, so a ``cancel`` is handled while text streams; this connection follows
it through ``Generations.follow``. Text that is ready at once goes out as one ``chunk``
frame, and no ready text is held back. Prompts that arrive during a reply wait their turn
(at most ``WS_MAX_PENDING``).

The handshake is refused (HTTP 403) when another site opens the socket
(``streaming.origins``); a prompt over the limits (``streaming.limits``, decided per
prompt by ``get_limits``) gets an error frame ``TOO_MANY_REPLIES`` or ``RATE_LIMITED``
with ``retry_after`` seconds. Frames are parsed strictly (``streaming.requests.parse_json``):
a frame that is not JSON, or nested too deeply to parse, gets a ``BAD_REQUEST`` frame.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import aclosing
from functools import partial
from typing import Any, ClassVar

from autobahn.exception import Disconnected
from channels.auth import get_user
from channels.exceptions import DenyConnection
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.contrib.auth import SESSION_KEY
from django.core.exceptions import PermissionDenied

from . import shutdown
from .addresses import scope_client_address
from .conf import setting
from .errors import StreamError, StreamErrorCode
from .events import Chunk, Complete, Event, text_carried
from .flat_json import plain_json
from .generations import MAX_SEQ_DIGITS, DisconnectPolicy, Generations, get_generations
from .limits import Limits
from .login import check_logged_in
from .origins import check_scope_origin
from .owners import CONNECTION_OWNER, aowner_of
from .protocols import WebSocketFrames, WireProtocol
from .requests import (
    PipelineChoiceMixin,
    call_hook,
    call_stopping,
    get_shown,
    parse_json,
    start_reply,
    stream_params,
)

#: A resume's ``after`` is a seq: at most ``MAX_SEQ_DIGITS`` digits, as in an SSE event id.
MAX_SEQ = 10**MAX_SEQ_DIGITS

logger = logging.getLogger("streaming")

#: Close code for a client that floods the connection: RFC 6455's "policy violation"
#: (1008) in the application range, as daphne only sends 1000 and 3000-4999.
CLOSE_POLICY_VIOLATION = 4008
#: Close code for a socket whose session ended (signed out, expired): HTTP's 403.
CLOSE_SESSION_ENDED = 4003
#: Close code for an anonymous user where the project requires a login: HTTP's 401.
CLOSE_UNAUTHENTICATED = 4001

Frame = dict[str, Any]


class StreamConsumer(PipelineChoiceMixin, AsyncJsonWebsocketConsumer):
    """Subclass and implement ``stream(prompt, **params)``; pick extractors like ``SSEView``.

    Hooks (the same names and shape as ``SSEView``'s), with ``self.scope`` at hand:
    ``check_permissions`` and ``get_owner`` (each may be sync, run in a thread, or
    async), ``get_prompt``, ``get_extractors`` (from ``extractors`` / ``pipelines``) and
    ``stream(prompt, **params)``; frames go out through ``protocol``.
    """

    #: When the socket closes: ``"cancel"`` stops the reply; ``"keep"`` lets it run for
    #: ``STREAMING["KEEP_GRACE"]`` seconds unwatched, so a ``resume`` can pick it up.
    disconnect_policy: DisconnectPolicy = "cancel"
    #: How the reply's events become frames.
    protocol: WireProtocol[Frame] = WebSocketFrames()
    #: Let extractor events reach the client (``event`` frames), as ``SSEView``'s.
    send_extractor_events = False
    #: No channel layer: a reply needs none, and listening on one costs every socket a
    #: task and a queue (with Channels' ``InMemoryChannelLayer``, a pass over every
    #: socket's channel each time one connects). Name a layer (``"default"``) for groups.
    channel_layer_alias: str | None = None
    # Per connection, set only once a cancel frame comes (defaults here: an idle socket
    # holds neither).
    #: A cancel that came while the current reply was starting, as its ``shown`` in a
    #: tuple (for ``stopping``): applied as the reply is followed.
    cancel_on_start: tuple[int | None] | None = None
    #: The reply a cancel frame stopped, until that frame is answered: a ``cancelled``
    #: or ``error`` frame, also when the reply completed first.
    cancelling: str | None = None
    #: Frames that act for the socket's owner (start or read replies): before each, the
    #: owner is asked again of the session, which may have ended since the handshake.
    owner_frames: ClassVar[frozenset[str]] = frozenset({"prompt", "resume"})
    #: Serve anonymous users even where the project requires a login everywhere
    #: (``LoginRequiredMiddleware``, which Channels does not run): what Django's
    #: ``@login_not_required`` is to a view. Otherwise such a socket gets an error frame
    #: ``UNAUTHENTICATED`` and is closed (4001).
    login_not_required: ClassVar[bool] = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Prompts waiting their turn (at most ``WS_MAX_PENDING``: a list, as a deque
        #: would take a block of 64 slots for every open socket).
        self.pending: list[Frame] = []
        self.current: asyncio.Task[None] | None = None
        self.current_id: str | None = None
        self.owner = ""
        self.accepted = False
        self.closing = False
        self.tokens = float(setting("WS_BURST"))
        self.refilled = time.monotonic()
        #: Characters of reply text this socket's resumes have sent (``check_resume``).
        self.resent = 0
        #: The client closed the socket while frames were still being sent (see
        #: ``send_json``): what is left to send is dropped.
        self.client_gone = False

    @property
    def generations(self) -> Generations:
        return get_generations()

    # ------------------------------------------------------------------ hooks
    def stream(self, prompt: str, **params: Any) -> Any:
        """The model's raw text chunks for ``prompt``, as ``SSEView.stream``: a generator
        or async generator of str, an (async) iterable, or a coroutine resolving to one.
        ``params`` are the prompt frame's other keys (``pipeline`` …); ``self.scope`` is
        at hand."""
        raise NotImplementedError(f"{type(self).__name__} must implement stream()")

    def generation_options(self) -> dict[str, Any]:
        """More arguments for ``Generations.start`` (``generation_id``, ``on_end``), asked
        after ``stream()``, as ``SSEView.generation_options``."""
        return {}

    async def check_permissions(self) -> bool | None:
        """Raise ``PermissionDenied`` (or return False) to refuse the connection: the
        handshake is answered with HTTP 403. May be sync (run in a thread) or async."""
        return None

    async def stopping(self, generation_id: str, owner: str, shown: int | None) -> None:
        """The owner stops its reply (a ``cancel`` frame), which is then cancelled:
        ``shown`` is how many characters of its text the client had shown (``None``: not
        said). The chat stores a stopped reply cut there, as its user saw it. Sync or
        async; a failure is logged and the reply stopped all the same."""

    async def get_owner(self) -> str:
        """Who may resume or cancel the replies of this connection (sync or async).

        The session's visitor token is only read here (a WebSocket cannot set a cookie):
        a request that called ``owner_of`` before the handshake (the chat page's first
        ``POST`` of a conversation) makes replies resumable across connections; without
        one, only this connection owns its replies.
        """
        return await aowner_of(self.scope.get("user"), self.scope.get("session"), create=False)

    async def get_limits(self) -> Limits:
        """The limits of a prompt (``STREAMING`` settings by default). Return
        ``streaming.limits.UNLIMITED`` to exempt it (a staff user, an API key), or other
        ``Limits``; ``self.scope`` is at hand. May be sync (run in a thread) or async."""
        return Limits.from_settings()

    @classmethod
    async def encode_json(cls, content: Any) -> str:
        """``json.dumps(content)``, as Channels writes frames; a small flat frame (a
        ``chunk``, once per token) without the encoder's set-up."""
        return plain_json(content)

    @classmethod
    async def decode_json(cls, text_data: str) -> Any:
        """Frames are parsed strictly: ``ValueError`` for anything but plain JSON."""
        return parse_json(text_data)

    # ------------------------------------------------------------ connection
    async def connect(self) -> None:
        try:
            allowed = await call_hook(self.check_permissions)
        except PermissionDenied:
            allowed = False
        except StreamError as exc:  # the database failed under it (logged)
            raise DenyConnection from exc
        if allowed is False:
            raise DenyConnection
        try:
            check_scope_origin(self.scope)
        except StreamError as exc:
            raise DenyConnection from exc
        if not self.login_not_required:
            try:
                check_logged_in(self.scope.get("user"))
            except StreamError as exc:
                await self._refuse_anonymous(exc)
                return
        try:
            self.owner = await call_hook(self.get_owner)
        except StreamError as exc:  # the database failed under it (logged)
            raise DenyConnection from exc
        self.accepted = True
        await self.accept()
        shutdown.register(self)

    async def _refuse_anonymous(self, refusal: StreamError) -> None:
        """Accept, say why in an error frame, close: a refused handshake would tell the
        client nothing (a browser sees only code 1006, and retries)."""
        self.closing = self.accepted = True
        await self.accept()
        await self.send_error(refusal)
        await self.close(code=CLOSE_UNAUTHENTICATED)

    async def shut_down(self) -> None:
        """The process drains: let the current reply end (with ``SHUTTING_DOWN`` when it
        was cut), then close with code 4012 so the client reconnects elsewhere."""
        self.closing = True
        self.pending.clear()
        if self.current is not None:
            await asyncio.wait({self.current})
        await self.close(code=shutdown.CLOSE_SERVICE_RESTART)

    async def disconnect(self, code: int) -> None:
        if not self.accepted:
            return
        self.pending.clear()
        generation_id = self.current_id
        if self.current is not None:
            self.current.cancel()
        if generation_id is not None and self.disconnect_policy == "cancel":
            await self.generations.cancel(generation_id)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.closing:
            return  # frames still in flight after we closed
        if not self._within_rate():
            self.closing = True
            self.pending.clear()
            await self.send_error(
                StreamError(StreamErrorCode.RATE_LIMITED, "Too many messages; slow down")
            )
            await self.close(code=CLOSE_POLICY_VIOLATION)
            return
        if text_data is None:
            await self.send_error(
                StreamError(StreamErrorCode.BAD_REQUEST, "Binary frames are not supported")
            )
            return
        try:
            content = await self.decode_json(text_data)
        except ValueError as exc:
            await self.send_error(
                StreamError(StreamErrorCode.BAD_REQUEST, f"Frames must be JSON objects: {exc}")
            )
            return
        await self.receive_json(content)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """Dispatch a frame by its ``type`` to ``on_<type>`` (a frame with only a
        ``prompt`` is a prompt)."""
        if not isinstance(content, dict):
            await self.send_error(
                StreamError(StreamErrorCode.BAD_REQUEST, "Frames must be JSON objects")
            )
            return
        kind = content.get("type", "prompt" if "prompt" in content else None)
        known = isinstance(kind, str) and kind.isidentifier()
        handler = getattr(self, f"on_{kind}", None) if known else None
        if handler is None:
            await self.send_error(
                StreamError(
                    StreamErrorCode.BAD_REQUEST,
                    f"Unknown message type {kind[:100]!r}"
                    if isinstance(kind, str)
                    else "A frame's 'type' must be a string"
                    if "type" in content
                    else "A frame needs a 'type' (one with a 'prompt' and no 'type' is a prompt)",
                )
            )
            return
        try:
            if kind in self.owner_frames and await call_hook(self._session_ended):
                await self._close_ended_session()
                return
        except StreamError as exc:  # the database, down
            await self.send_error(exc)
            return
        try:
            await handler(content)
        except Exception:
            # A failing handler (ours or a subclass's) answers its frame, not the socket:
            # the replies streaming on it go on.
            logger.exception("%s failed on a %r frame", type(self).__name__, kind)
            await self.send_error(
                StreamError(StreamErrorCode.INTERNAL_ERROR, "The server failed on this frame")
            )

    # --------------------------------------------------------------- messages
    async def on_ping(self, content: Frame) -> None:
        await self.send_json({"type": "pong"})

    async def on_prompt(self, content: Frame) -> None:
        try:
            self.get_prompt(content)
            self.get_pipeline_name(content)
            stream_params(self.stream, content, "type", "prompt")
        except StreamError as exc:
            await self.send_error(exc)
            return
        if len(self.pending) >= setting("WS_MAX_PENDING"):
            await self.send_error(
                StreamError(
                    StreamErrorCode.QUEUE_FULL, "Too many prompts waiting; wait or cancel first"
                )
            )
            return
        self.pending.append(content)
        if self.current is None or self.current.done():
            self.current = asyncio.create_task(self._run_pending())

    async def on_cancel(self, content: Frame) -> None:
        """Stop the current reply: its follower then sends the ``cancelled`` frame.
        ``shown``: how many characters of its text the client had shown (``stopping``)."""
        try:
            shown = get_shown(content)
        except StreamError as exc:
            await self.send_error(exc)
            return
        self.pending.clear()
        if self.current_id is not None:
            await self._stop(self.current_id, shown)
        elif self.current is not None and not self.current.done():
            self.cancel_on_start = (shown,)  # a prompt's reply is starting: stopped as it starts
        else:
            await self.send_error(StreamError(StreamErrorCode.BAD_REQUEST, "Nothing to cancel"))

    async def on_resume(self, content: Frame) -> None:
        """``{"type": "resume", "message_id": ..., "after": N}``: the events after ``N``."""
        message_id, after = content.get("message_id"), content.get("after", 0)
        if not isinstance(message_id, str) or type(after) is not int or not 0 <= after < MAX_SEQ:
            await self.send_error(
                StreamError(
                    StreamErrorCode.BAD_REQUEST,
                    "'message_id' must be a string and 'after' a non-negative integer "
                    f"of at most {MAX_SEQ_DIGITS} digits",
                )
            )
            return
        if self.current is not None and not self.current.done():
            await self.send_error(
                StreamError(StreamErrorCode.BAD_REQUEST, "A reply is streaming; cancel it first")
            )
            return
        try:
            self.check_resume()
            if not await self.generations.has_more(message_id, self.owner, after):
                after -= 1  # the client has every event: its end frame again, so it knows
        except StreamError as exc:
            await self.send_error(exc)
            return
        self.current = asyncio.create_task(self._follow_resumed(message_id, max(after, 0)))

    def check_resume(self) -> None:
        """Refuse a resume once this socket's resumes have sent ``MAX_REPLY_CHARS``
        characters: daphne's ``send`` never waits, so a client that asks for a reply
        again and again without reading would have the server buffer each copy. Below
        that, a resume may send one more reply, so a socket buffers at most about twice
        ``MAX_REPLY_CHARS``; a new socket resumes afresh."""
        cap = setting("MAX_REPLY_CHARS")
        if cap is not None and self.resent >= cap:
            raise StreamError(
                StreamErrorCode.RATE_LIMITED,
                f"This socket has resent {self.resent:,} characters of replies; "
                "open a new one to resume more",
            )

    async def send_error(self, error: StreamError, message_id: str | None = None) -> None:
        await self.send_json(self.protocol.failure(error, message_id))

    async def send_json(self, content: Any, close: bool = False) -> None:
        """Send a frame, unless the client has closed the socket. A close that arrives
        while a reply streams is seen by the server before it reaches this consumer (as
        ``disconnect``, which stops the reply's follow); meanwhile the server refuses
        every send. That is the client leaving, not a failure: the frames are dropped."""
        if self.client_gone:
            return
        try:
            await super().send_json(content, close)
        except (Disconnected, OSError):  # daphne's refusal; an OSError in the ASGI spec
            self.client_gone = True

    async def _session_ended(self) -> bool:
        """Whether the session the socket was opened with has ended since (signed out,
        expired, its user's password changed): ``get_owner`` asked again, of the session
        as its store has it now, names someone else. Channels resolves the session and
        the user once, at the handshake; a socket owned by itself has no session."""
        from django.contrib.auth.models import AnonymousUser  # a model module: once apps load

        session = self.scope.get("session")
        if session is None or self.owner.startswith(CONNECTION_OWNER):
            return False
        fresh = self.scope["session"] = session.__class__(session.session_key)  # read afresh
        # The user again, if the session named one (not one another middleware resolved).
        if "user" in self.scope and await session.aget(SESSION_KEY) is not None:
            named = await fresh.aget(SESSION_KEY) is not None  # no thread once signed out
            self.scope["user"] = await get_user(self.scope) if named else AnonymousUser()
        return bool(await call_hook(self.get_owner) != self.owner)

    async def _close_ended_session(self) -> None:
        """Refuse the frame and close: the client reconnects with its current session."""
        self.closing = True
        self.pending.clear()
        refusal = StreamError(
            StreamErrorCode.FORBIDDEN,
            "The session of this connection has ended (signed out or expired); reconnect",
        )
        if not self.login_not_required:
            try:
                check_logged_in(self.scope.get("user"))
            except StreamError as signed_out:  # where a login is required: log in again
                refusal = signed_out
        await self.send_error(refusal)
        await self.close(code=CLOSE_SESSION_ENDED)

    # ------------------------------------------------------------ generation
    async def _run_pending(self) -> None:
        while self.pending:
            try:
                generation_id = await self._start(self.pending.pop(0))
                if generation_id is not None:
                    await self._follow(generation_id, 0)
            except Exception:
                # A failing hook answers its prompt; the prompts queued after it still run.
                logger.exception("%s failed on a prompt", type(self).__name__)
                await self.send_error(
                    StreamError(StreamErrorCode.INTERNAL_ERROR, "The server failed on this prompt")
                )
            finally:
                # A cancel that came while this prompt started is spent (its start may
                # have been refused): it must not stop a later reply.
                self.cancel_on_start = None

    async def _stop(self, generation_id: str, shown: int | None) -> None:
        """A cancel frame's stop: ``stopping``, then the cancel, whose answer is due."""
        self.cancelling = generation_id
        await call_stopping(self.stopping, generation_id, self.owner, shown)
        await self.generations.cancel(generation_id)

    async def _follow_resumed(self, generation_id: str, after: int) -> None:
        """A resumed reply (what it sends counts against ``check_resume``), then the
        prompts that came while it streamed."""
        self.resent += await self._follow(generation_id, after)
        await self._run_pending()

    async def _start(self, content: Frame) -> str | None:
        """Start the reply to a prompt frame; its id, or None when refused (the client is
        told why). Apart from ``_follow``, so that the frame is not held while it streams."""
        try:
            params = stream_params(self.stream, content, "type", "prompt")
            prompt, pipeline = self.get_prompt(content), self.get_pipeline(content)
            reservation = await self.generations.reserve(
                await call_hook(self.get_limits),
                owner=self.owner,
                address=scope_client_address(self.scope),
            )
            return await start_reply(
                self.generations,
                partial(self.stream, prompt, **params),
                pipeline,
                owner=self.owner,
                reservation=reservation,
                policy=self.disconnect_policy,
                forward_events=self.send_extractor_events,
                options=self.generation_options,
            )
        except StreamError as exc:
            await self.send_error(exc)
            return None

    async def _follow(self, generation_id: str, after: int) -> int:
        """Send the generation's events after ``after`` as frames, until its end; the
        characters of text and reasoning sent (``events.characters_of``).

        The ``complete`` frame's whole text is joined here, once, from the chunks this
        follower sent (and, after a resume, the ones before ``after``): the store keeps a
        reply's text once, in its chunks."""
        self.current_id = generation_id
        generations = self.generations
        if self.cancel_on_start is not None:
            (shown,) = self.cancel_on_start
            self.cancel_on_start = None
            await self._stop(generation_id, shown)
        last = after
        sent: list[str] = []
        carried = 0  # the text of events (reasoning)
        completed = False
        try:
            async with aclosing(generations.follow(generation_id, self.owner, after)) as batches:
                async for batch in batches:
                    for event in batch:
                        if isinstance(event, Chunk):
                            sent.append(event.text)
                        elif isinstance(event, Event):
                            carried += text_carried(event)
                    end = batch[-1]
                    if isinstance(end, Complete):
                        before = await generations.text_before(generation_id, after)
                        batch = [*batch[:-1], Complete(end.seq, before + "".join(sent))]
                        completed = True
                    for frame in self.protocol.messages(generation_id, batch):
                        await self.send_json(frame)
                    last = batch[-1].seq
        except StreamError as exc:
            await self.send_json(self.protocol.failure(exc, generation_id, last))
        finally:
            self.current_id = None
        if self.cancelling == generation_id:
            self.cancelling = None
            if completed:  # the cancel came too late: it is answered all the same
                await self.send_error(
                    StreamError(StreamErrorCode.BAD_REQUEST, "Nothing to cancel: the reply ended"),
                    generation_id,
                )
        return sum(map(len, sent)) + carried

    def _within_rate(self) -> bool:
        """Token bucket: ``WS_RATE`` messages a second on average, ``WS_BURST`` at once."""
        now = time.monotonic()
        burst = float(setting("WS_BURST"))
        self.tokens = min(burst, self.tokens + (now - self.refilled) * float(setting("WS_RATE")))
        self.refilled = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True
