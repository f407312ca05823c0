"""``StreamConsumer``: a model's reply over a WebSocket, as JSON text frames.

Client → server: ``{"type": "prompt", "prompt": ..., "pipeline": ...}`` (or just
``{"prompt": ...}``), ``{"type": "cancel"}``, ``{"type": "ping"}``.
Server → client: ``chunk`` (``content``, ``message_id``), ``complete`` (``fullResponse``,
``message_id``), ``error`` (``code``, ``message``), ``cancelled`` (``message_id``), ``pong``.

Each reply runs in its own task, so a ``cancel`` is handled while text streams. Prompts
that arrive during a reply wait their turn (at most ``WS_MAX_PENDING``). Text that is
ready at once goes out as one ``chunk`` frame, and no ready text is held back.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
import uuid
from collections import deque
from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from .conf import setting
from .errors import StreamError, StreamErrorCode
from .requests import PipelineChoiceMixin, get_prompt
from .runtime import run_generation

logger = logging.getLogger("streaming")

#: Close code for a client that floods the connection: RFC 6455's "policy violation"
#: (1008) in the application range, as daphne only sends 1000 and 3000-4999.
CLOSE_POLICY_VIOLATION = 4008


class _Outbox:
    """Text waiting to be sent as one ``chunk`` frame: merged while the socket is busy."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.ready = asyncio.Event()
        self.closed = False

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.ready.set()

    def close(self) -> None:
        """No more text: the sender sends what is left and stops."""
        self.closed = True
        self.ready.set()

    def take(self) -> str:
        text = "".join(self.parts)
        self.parts.clear()
        self.ready.clear()
        return text


class StreamConsumer(PipelineChoiceMixin, AsyncJsonWebsocketConsumer):
    """Subclass and implement ``stream(prompt, **params)``; pick extractors like ``SSEView``."""

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
        self.pending: deque[tuple[str, dict[str, Any]]] = deque()
        self.current: asyncio.Task[None] | None = None
        self.current_id: str | None = None
        self.closing = False
        self.tokens = float(setting("WS_BURST"))
        self.refilled = time.monotonic()
        await self.accept()

    async def disconnect(self, code: int) -> None:
        pending = getattr(self, "pending", None)
        if pending is not None:
            pending.clear()
        await self._cancel_current()

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
        handler = {"prompt": self.on_prompt, "cancel": self.on_cancel, "ping": self.on_ping}.get(
            kind if isinstance(kind, str) else ""
        )
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
        self.pending.append((uuid.uuid4().hex, content))
        if self.current is None or self.current.done():
            self.current = asyncio.create_task(self._run_pending())

    async def on_cancel(self, content: dict[str, Any]) -> None:
        self.pending.clear()
        message_id = self.current_id
        if not await self._cancel_current():
            await self.send_error(StreamError(StreamErrorCode.BAD_REQUEST, "Nothing to cancel"))
            return
        await self.send_json({"type": "cancelled", "message_id": message_id})

    async def send_error(self, error: StreamError, message_id: str | None = None) -> None:
        frame: dict[str, Any] = {"type": "error", "code": str(error.code), "message": error.message}
        if message_id is not None:
            frame["message_id"] = message_id
        await self.send_json(frame)

    # ------------------------------------------------------------ generation
    async def _run_pending(self) -> None:
        while self.pending:
            message_id, content = self.pending.popleft()
            self.current_id = message_id
            try:
                await self._generate(message_id, content)
            finally:
                self.current_id = None

    async def _generate(self, message_id: str, content: dict[str, Any]) -> None:
        outbox = _Outbox()
        sender = asyncio.create_task(self._send_chunks(outbox, message_id))
        try:
            params = {k: v for k, v in content.items() if k not in {"type", "prompt"}}
            source = self.stream(get_prompt(content), **params)
            if inspect.iscoroutine(source):
                source = await source
            full = await run_generation(
                source,
                self.get_pipeline(content),
                lambda text, _id: outbox.add(text),
                message_id=message_id,
            )
            await self._drain(outbox, sender)
            await self.send_json(
                {"type": "complete", "fullResponse": full, "message_id": message_id}
            )
        except StreamError as exc:
            logger.warning("Generation %s failed: %r", message_id, exc)
            await self._drain(outbox, sender)
            await self.send_error(exc, message_id)
        except asyncio.CancelledError:
            sender.cancel()
            raise
        except Exception:
            logger.exception("Generation %s failed", message_id)
            await self._drain(outbox, sender)
            await self.send_error(
                StreamError(StreamErrorCode.INTERNAL_ERROR, "The model stream failed"), message_id
            )

    async def _send_chunks(self, outbox: _Outbox, message_id: str) -> None:
        while not (outbox.closed and not outbox.parts):
            await outbox.ready.wait()
            text = outbox.take()
            if text:
                await self.send_json({"type": "chunk", "content": text, "message_id": message_id})

    @staticmethod
    async def _drain(outbox: _Outbox, sender: asyncio.Task[None]) -> None:
        """Let the sender send what is left, in order, and stop."""
        outbox.close()
        await sender

    async def _cancel_current(self) -> bool:
        task = self.current
        if task is None or task.done():
            return False
        task.cancel()
        await asyncio.wait({task}, timeout=setting("CLEANUP_TIMEOUT"))
        return True

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
