"""Views of the demo project."""

import asyncio
from collections.abc import AsyncIterator

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from streaming import sse_response


@require_GET
async def clock(request: HttpRequest) -> HttpResponse:
    """Ten ticks, one every 300 ms: the smallest useful ``sse_response``. ``GET`` only:
    to ``HEAD`` a streaming response sends its body all the same under ASGI servers."""

    async def ticks() -> AsyncIterator[dict[str, int]]:
        for n in range(1, 11):
            yield {"tick": n}
            await asyncio.sleep(0.3)

    return sse_response(ticks(), event="tick")
