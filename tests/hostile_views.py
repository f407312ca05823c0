"""Views and consumers for hostile clients and failing processes (``tests.hostile_urls``,
``tests.hostile_asgi``): an OpenAI-compatible upstream streamed as it is, a slow scripted
reply, a login, and a count of the server's open database connections."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from typing import Any

from django.contrib.auth import get_user_model, login, logout
from django.contrib.auth.mixins import LoginRequiredMixin
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from streaming.consumers import StreamConsumer
from streaming.extractors import PassthroughExtractor
from streaming.sources import openai_chat
from streaming.views import SSEView

from .transport_views import scripted_reply

#: Every database connection this process opened (held weakly, with its thread).
_connections: weakref.WeakSet[BaseDatabaseWrapper] = weakref.WeakSet()


def _opened(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    _connections.add(connection)


connection_created.connect(_opened)


def open_connections(request: HttpRequest) -> JsonResponse:
    """How many database connections of this process are open now (any thread)."""
    return JsonResponse({"open": sum(1 for c in list(_connections) if c.connection is not None)})


@csrf_exempt
def login_view(request: HttpRequest) -> HttpResponse:
    """Log in (creating it once) the user named by ``?name=``."""
    user, _ = get_user_model().objects.get_or_create(username=request.GET.get("name", "alice"))
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    return HttpResponse("ok")


@csrf_exempt
def logout_view(request: HttpRequest) -> HttpResponse:
    """Log out: the session is flushed, as ``LogoutView`` does."""
    logout(request)
    return HttpResponse("ok")


async def plain(request: HttpRequest) -> StreamingHttpResponse:
    """A plain ``StreamingHttpResponse`` that never ends by itself (no ``streaming`` code)."""

    async def ticks() -> AsyncIterator[bytes]:
        while True:
            yield b"data: tick\n\n"
            await asyncio.sleep(0.1)

    return StreamingHttpResponse(ticks(), content_type="text/event-stream")


def _openai(params: dict[str, Any]) -> Any:
    messages = [{"role": "user", "content": str(params.get("prompt", "Hi"))}]
    return openai_chat(messages, base_url=str(params["base_url"]), api_key="test-key")


class OpenAIPlainView(SSEView):
    """The upstream's text as it is."""

    extractors = (PassthroughExtractor,)

    def stream(self, prompt: str, **params: Any) -> Any:
        return _openai({**params, "prompt": prompt})


class OpenAIPlainConsumer(StreamConsumer):
    extractors = (PassthroughExtractor,)

    def stream(self, prompt: str, **params: Any) -> Any:
        return _openai({**params, "prompt": prompt})


class SlowView(SSEView):
    """The scripted reply (``delay``, ``size`` …, see ``tests.transport_views``)."""

    extractors = (PassthroughExtractor,)
    disconnect_policy = "keep"

    def stream(self, prompt: str, **params: Any) -> Any:
        return scripted_reply(params)


class SlowConsumer(StreamConsumer):
    extractors = (PassthroughExtractor,)
    disconnect_policy = "keep"

    def stream(self, prompt: str, **params: Any) -> Any:
        return scripted_reply(params)


class OpenSlowView(SlowView):
    """``SlowView`` for anyone, in a project that requires a login everywhere."""

    login_not_required = True


class OpenSlowConsumer(SlowConsumer):
    """``SlowConsumer`` for anyone, in a project that requires a login everywhere."""

    login_not_required = True


class LoginSlowView(LoginRequiredMixin, SlowView):
    """``SlowView`` for logged-in users only (Django's access mixin runs in a thread)."""
