"""Routes the benchmarks measure: the same events raw and through ``streaming``."""

from collections.abc import AsyncIterator

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.urls import path

from streaming import sse_response
from streaming.limits import UNLIMITED, Limits
from streaming.views import SSEView

from . import resume_views

EVENT = b"data: hello world\n\n"


def _count(request: HttpRequest) -> int:
    return int(request.GET.get("n", "1000"))


async def raw(request: HttpRequest) -> HttpResponse:
    """The baseline: a plain async StreamingHttpResponse, one event per yield."""
    n = _count(request)

    async def events() -> AsyncIterator[bytes]:
        for _ in range(n):
            yield EVENT

    return StreamingHttpResponse(events(), content_type="text/event-stream")


async def ours(request: HttpRequest) -> HttpResponse:
    """The same events through ``sse_response`` (ids, framing, batching, keep-alive)."""
    n = _count(request)

    async def events() -> AsyncIterator[str]:
        for _ in range(n):
            yield "hello world"

    return sse_response(events())


class View(SSEView):
    """The same text through ``SSEView``: a generation, the event store, a follower."""

    def stream(self, prompt: str, **params: object) -> AsyncIterator[str]:
        n = _count(self.request)

        async def pieces() -> AsyncIterator[str]:
            for _ in range(n):
                yield "hello world"

        return pieces()


class UnlimitedView(View):
    """``View`` exempt from the limits: the difference is what checking them costs."""

    async def get_limits(self) -> Limits:
        return UNLIMITED


urlpatterns = [
    path("raw", raw),
    path("ours", ours),
    path("view", View.as_view()),
    path("unlimited", UnlimitedView.as_view()),
    path("stamps/direct", resume_views.direct),
    path("stamps/stored", resume_views.StoredView.as_view()),
    path("stamps/owner", resume_views.owner),
]
