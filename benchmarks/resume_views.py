"""Views the resume benchmark drives: a paced reply whose text carries timestamps.

Each chunk is ``"<time.time()>;"``, so a client on the same machine can tell how long each
piece took to reach it, directly (``sse_response``) or through a generation and the event
store (``SSEView``, ``keep`` policy).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse

import streaming
from streaming import sse_response
from streaming.owners import aowner_of
from streaming.views import SSEView


async def stamps(count: int, delay: float) -> AsyncIterator[str]:
    for _ in range(count):
        await asyncio.sleep(delay)
        yield f"{time.time():.6f};"


def _options(params: Any) -> tuple[int, float]:
    return int(params.get("n", 100)), float(params.get("delay", 0.002))


async def direct(request: HttpRequest) -> HttpResponse:
    """The baseline: the same chunks straight to the client, no store in between."""
    count, delay = _options(request.GET)
    return sse_response({"chunk": text} async for text in stamps(count, delay))


class StoredView(SSEView):
    """The same chunks as a resumable generation."""

    disconnect_policy = "keep"

    def stream(self, prompt: str, **params: Any) -> AsyncIterator[str]:
        return stamps(*_options(params))


async def owner(request: HttpRequest) -> HttpResponse:
    """Who this session is to the event store (the benchmark writes replies it owns), and
    where the server's ``streaming`` comes from (the code measured)."""
    name = await aowner_of(request.user, request.session)
    return JsonResponse({"owner": name, "module": streaming.__file__})
