"""A level 2 ``ValidationStreamExtractor`` whose async ``on_event`` records the event
types it awaited: its fields come at the flush, so a caller that does not drain after the
flush leaves the list short."""

from __future__ import annotations

import asyncio
from typing import Any

from streaming.extractors import ValidationStreamExtractor


def recording_flush_callbacks() -> tuple[ValidationStreamExtractor, list[str]]:
    """The extractor (one stream field, ``text``) and the event types its callback ran for."""
    seen: list[str] = []

    async def on_event(event: dict[str, Any]) -> None:
        await asyncio.sleep(0)
        seen.append(event["event_type"])

    extractor = ValidationStreamExtractor(
        level=2, schema=["text"], stream_fields=["text"], on_event=on_event
    )
    return extractor, seen
