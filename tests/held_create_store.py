"""``HeldCreateStore``: a ``MemoryStore`` that creates no reply's stream until the file
``$STREAMING_TEST_RELEASE`` exists, so a test holds every reply at its start (its chat
turn stored, its response not yet begun) for as long as it looks at the server."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from streaming.store.memory import MemoryStore

#: Seconds between two looks for the file.
POLL = 0.05


class HeldCreateStore(MemoryStore):
    async def create(self, stream_id: str, *, owner: str, lease: float | None = None) -> None:
        release = Path(os.environ["STREAMING_TEST_RELEASE"])
        while not release.exists():
            await asyncio.sleep(POLL)
        await super().create(stream_id, owner=owner, lease=lease)
