"""WebSocket consumers the benchmark compares: the same model chunks raw and through
``StreamConsumer``.

A prompt frame ``{"prompt": "...", "n": N, "paced": bool}`` asks for ``N`` chunks of
``"tok "``. ``paced`` chunks each let the event loop run (as tokens arriving one network
read at a time do); unpaced ones are ready at once (as many tokens parsed from one read).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer

from streaming.consumers import StreamConsumer

TOKEN = "tok "


async def model(n: int, paced: bool) -> AsyncIterator[str]:
    for _ in range(n):
        if paced:
            await asyncio.sleep(0)
        yield TOKEN


class RawConsumer(AsyncWebsocketConsumer):
    """The baseline: one ``chunk`` frame per model chunk, then ``complete``."""

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        request = json.loads(text_data or "{}")
        message_id = uuid.uuid4().hex
        parts: list[str] = []
        async for chunk in model(int(request["n"]), bool(request.get("paced"))):
            parts.append(chunk)
            frame = {"type": "chunk", "content": chunk, "message_id": message_id}
            await self.send(text_data=json.dumps(frame))
        complete = {"type": "complete", "fullResponse": "".join(parts), "message_id": message_id}
        await self.send(text_data=json.dumps(complete))


class OurConsumer(StreamConsumer):
    """The same chunks through ``StreamConsumer`` (passthrough pipeline)."""

    def stream(self, prompt: str, **params: Any) -> AsyncIterator[str]:
        return model(int(params["n"]), bool(params.get("paced")))
