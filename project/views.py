"""Views of the demo project."""

import asyncio
from collections.abc import AsyncIterator

from django.http import HttpRequest, HttpResponse

from streaming import sse_response


async def clock(request: HttpRequest) -> HttpResponse:
    """Ten ticks, one every 300 ms: the smallest useful ``sse_response``."""

    async def ticks() -> AsyncIterator[dict[str, int]]:
        for n in range(1, 11):
            yield {"tick": n}
            await asyncio.sleep(0.3)

    return sse_response(ticks(), event="tick")
