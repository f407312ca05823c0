"""``FailingStore``: a ``MemoryStore`` whose writes fail from the ``fail_at``-th append of
each stream on, as a full disk or a lost connection would make them fail."""

from __future__ import annotations

from typing import Any

from streaming.store.base import STORE_UNAVAILABLE, store_error
from streaming.store.memory import MemoryStore

#: The message of the store's error, which followers must receive.
MESSAGE = "the event store is full"


class FailingStore(MemoryStore):
    def __init__(self, *, fail_at: int = 3, **options: Any) -> None:
        super().__init__(**options)
        self.fail_at = fail_at
        self.appends: dict[str, int] = {}

    async def append_many(self, stream_id: str, items: list[dict[str, Any]]) -> int:
        count = self.appends[stream_id] = self.appends.get(stream_id, 0) + 1
        if count >= self.fail_at:
            raise store_error(STORE_UNAVAILABLE, MESSAGE, stream_id=stream_id)
        return await super().append_many(stream_id, items)

    async def append(self, stream_id: str, data: dict[str, Any]) -> int:
        return await self.append_many(stream_id, [data])
