"""Views of the demo project."""

import asyncio
from collections.abc import AsyncIterator

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie

from streaming import sse_response
from streaming.generations import owner_of


@ensure_csrf_cookie
def index(request: HttpRequest) -> HttpResponse:
    """The chat page. It sets the CSRF cookie its POST requests send back, and the
    visitor's owner token, so its WebSocket can resume this visitor's replies."""
    owner_of(request.user, request.session)
    return render(request, "index.html")


async def clock(request: HttpRequest) -> HttpResponse:
    """Ten ticks, one every 300 ms: the smallest useful ``sse_response``."""

    async def ticks() -> AsyncIterator[dict[str, int]]:
        for n in range(1, 11):
            yield {"tick": n}
            await asyncio.sleep(0.3)

    return sse_response(ticks(), event="tick")
