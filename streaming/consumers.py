"""``StreamConsumer``: a model's reply over a WebSocket, as JSON text frames.

Client → server: ``{"type": "prompt", "prompt": ..., "pipeline": ...}`` (or just
``{"prompt": ...}``), ``{"type": "cancel"}``, ``{"type": "resume", "message_id": ...,
"after": N}``, ``{"type": "ping"}``.
Server → client: ``chunk`` (``content``, ``message_id``, ``seq``), ``complete``
(``fullResponse``, ``message_id``), ``error`` (``code``, ``message``), ``cancelled``
(``message_id``), ``pong``.

Each reply runs as a generation (``streaming.generations``), never inside
``receive_json``, so a ``cancel`` is handled while text streams; this connection follows
it from the event store. Text that is ready at once goes out as one ``chunk`` frame, and
no ready text is held back. Prompts that arrive during a reply wait their turn (at most
``WS_MAX_PENDING``).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections import deque
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from .conf import setting
from .errors import StreamError, StreamErrorCode
from .generations import (
    OWNER_SESSION_KEY,
    DisconnectPolicy,
    get_generations,
    merge_chunks,
    owner_of,
    terminal_error,
)
from .requests import PipelineChoiceMixin, get_prompt
from .store.base import StoredEvent

#: Close code for a client that floods the connection: RFC 6455's "policy violation"
#: (1008) in the application range, as daphne only sends 1000 and 3000-4999.
CLOSE_POLICY_VIOLATION = 4008


class StreamConsumer(PipelineChoiceMixin, AsyncJsonWebsocketConsumer):
    """Subclass and implement ``stream(prompt, **params)``; pick extractors like ``SSEView``."""

    #: When the socket closes: ``"cancel"`` stops the reply; ``"keep"`` lets it run for
    #: ``STREAMING["KEEP_GRACE"]`` seconds unwatched, so a ``resume`` can pick it up.
    disconnect_policy: DisconnectPolicy = "cancel"

    def stream(self, prompt: str, **params: Any) -> Any:
        """The model's raw text chunks for ``prompt``, as ``SSEView.stream``: a generator
        or async generator of str, an (async) iterable, or a coroutine resolving to one.
        ``params`` are the prompt frame's other keys (``pipeline`` …)."""
        raise NotImplementedError(f"{type(self).__name__} must implement stream()")

    async def check_permissions(self) -> bool:
        """Return False to refuse the connection: the handshake is answered with HTTP 403."""
        return True

    # ------------------------------------------------------------ connection
    async def connect(self) -> None:
        if not await self.check_permissions():
            await self.close()
            return
        self.pending: deque[dict[str, Any]] = deque()
        self.current: asyncio.Task[None] | None = None
        self.current_id: str | None = None
        self.generations = get_generations()
        self.owner = await database_sync_to_async(self.get_owner)()
        self.closing = False
        self.tokens = float(setting("WS_BURST"))
        self.refilled = time.monotonic()
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if not hasattr(self, "pending"):
            return  # refused before accept
        self.pending.clear()
        generation_id = self.current_id
        if self.current is not None:
            self.current.cancel()
        if generation_id is not None and self.disconnect_policy == "cancel":
            await self.generations.cancel(generation_id)

    def get_owner(self) -> str:
        """Who may resume or cancel the replies of this connection (runs in a thread).

        The session's visitor token is only read here (a WebSocket cannot set a cookie):
        a page view that called ``owner_of`` first makes replies resumable across
        connections; without one, only this connection owns its replies.
        """
        session = self.scope.get("session")
        has_token = session is not None and OWNER_SESSION_KEY in session
        return owner_of(self.scope.get("user"), session if has_token else None)

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
            content = json.loads(text_data)
        except ValueError:
            await self.send_error(
                StreamError(StreamErrorCode.BAD_REQUEST, "Frames must be JSON objects")
            )
            return
        await self.receive_json(content)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict):
            await self.send_error(
                StreamError(StreamErrorCode.BAD_REQUEST, "Frames must be JSON objects")
            )
            return
        kind = content.get("type", "prompt" if "prompt" in content else None)
        handlers = {
            "prompt": self.on_prompt,
            "cancel": self.on_cancel,
            "resume": self.on_resume,
            "ping": self.on_ping,
        }
        handler = handlers.get(kind if isinstance(kind, str) else "")
        if handler is None:
            await self.send_error(
                StreamError(StreamErrorCode.BAD_REQUEST, f"Unknown message type {kind!r}")
            )
            return
        await handler(content)

    # --------------------------------------------------------------- messages
    async def on_ping(self, content: dict[str, Any]) -> None:
        await self.send_json({"type": "pong"})

    async def on_prompt(self, content: dict[str, Any]) -> None:
        try:
            get_prompt(content)
            self.get_pipeline_name(content)
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

    async def on_cancel(self, content: dict[str, Any]) -> None:
        """Stop the current reply: its follower then sends the ``cancelled`` frame."""
        self.pending.clear()
        if self.current_id is None:
            await self.send_error(StreamError(StreamErrorCode.BAD_REQUEST, "Nothing to cancel"))
            return
        await self.generations.cancel(self.current_id)

    async def on_resume(self, content: dict[str, Any]) -> None:
        """``{"type": "resume", "message_id": ..., "after": N}``: the events after ``N``."""
        message_id, after = content.get("message_id"), content.get("after", 0)
        if not isinstance(message_id, str) or not isinstance(after, int) or after < 0:
            await self.send_error(
                StreamError(
                    StreamErrorCode.BAD_REQUEST,
                    "'message_id' must be a string and 'after' a non-negative integer",
                )
            )
            return
        if self.current is not None and not self.current.done():
            await self.send_error(
                StreamError(StreamErrorCode.BAD_REQUEST, "A reply is streaming; cancel it first")
            )
            return
        try:
            await self.generations.check_owner(message_id, self.owner)
        except StreamError as exc:
            await self.send_error(exc)
            return
        self.current = asyncio.create_task(self._follow(message_id, after))

    async def send_error(self, error: StreamError, message_id: str | None = None) -> None:
        frame: dict[str, Any] = {"type": "error", "code": str(error.code), "message": error.message}
        if message_id is not None:
            frame["message_id"] = message_id
        await self.send_json(frame)

    # ------------------------------------------------------------ generation
    async def _run_pending(self) -> None:
        while self.pending:
            content = self.pending.popleft()
            params = {k: v for k, v in content.items() if k not in {"type", "prompt"}}
            try:
                source = self.stream(get_prompt(content), **params)
                if inspect.iscoroutine(source):
                    source = await source
                generation_id = await self.generations.start(
                    source,
                    self.get_pipeline(content),
                    owner=self.owner,
                    policy=self.disconnect_policy,
                )
            except StreamError as exc:
                await self.send_error(exc)
                continue
            await self._follow(generation_id, 0)

    async def _follow(self, generation_id: str, after: int) -> None:
        """Send the generation's events after ``after`` as frames, until its end."""
        self.current_id = generation_id
        try:
            async for batch in self.generations.follow(generation_id, self.owner, after):
                for frame in self.batch_frames(generation_id, batch):
                    await self.send_json(frame)
        except StreamError as exc:
            await self.send_error(exc, generation_id)
        finally:
            self.current_id = None

    def batch_frames(self, generation_id: str, batch: list[StoredEvent]) -> list[dict[str, Any]]:
        """One ``chunk`` frame per run of text (with the ``seq`` to resume after), and the end."""
        frames: list[dict[str, Any]] = []
        for stored in merge_chunks(batch):
            data = stored.data
            kind = data["type"]
            if kind == "chunk":
                frames.append(
                    {
                        "type": "chunk",
                        "content": data["text"],
                        "message_id": generation_id,
                        "seq": stored.seq,
                    }
                )
            elif kind == "complete":
                frames.append(
                    {"type": "complete", "fullResponse": data["text"], "message_id": generation_id}
                )
            elif kind == "cancelled":
                frames.append({"type": "cancelled", "message_id": generation_id})
            elif kind == "error":
                error = terminal_error(data)
                frames.append(
                    {
                        "type": "error",
                        "code": str(error.code),
                        "message": error.message,
                        "message_id": generation_id,
                    }
                )
        return frames

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
