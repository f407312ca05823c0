"""``SlowCreateStore``: a ``MemoryStore`` that takes ``delay`` seconds to create a stream,
which widens the moment between a chat turn being stored and its reply being in the store."""

from __future__ import annotations

import asyncio
from typing import Any

from streaming.store.memory import MemoryStore


class SlowCreateStore(MemoryStore):
    def __init__(self, *, delay: float = 1.0, **options: Any) -> None:
        super().__init__(**options)
        self.delay = delay

    async def create(self, stream_id: str, *, owner: str, lease: float | None = None) -> None:
        await asyncio.sleep(self.delay)
        await super().create(stream_id, owner=owner, lease=lease)
