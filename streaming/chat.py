"""Ready-made chat endpoints: the configured model through a pipeline the client picks.

The model comes from ``streaming.sources.source_from_settings`` (OpenAI or any compatible
server when ``OPENAI_API_KEY`` is set, else the built-in demo model). Include
``streaming.urls`` and ``streaming.routing.websocket_urlpatterns`` to serve them.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie

from .consumers import StreamConsumer
from .extractors import (
    ActionStreamFilter,
    PassthroughExtractor,
    ResponseStreamExtractor,
    XmlTagExtractor,
)
from .generations import owner_of
from .requests import ExtractorFactory
from .sources import source_from_settings
from .views import SSEView

#: The pipelines a chat client may choose by name; ``response`` is the default.
CHAT_PIPELINES: dict[str, list[ExtractorFactory]] = {
    "passthrough": [PassthroughExtractor],
    "xml": [partial(XmlTagExtractor, "text")],
    "response": [ResponseStreamExtractor],
    "action": [ActionStreamFilter],
}


class ChatView(SSEView):
    """``GET /chat/stream?prompt=...&pipeline=...`` or ``POST`` JSON, answered as SSE."""

    pipelines = CHAT_PIPELINES
    default_pipeline = "response"
    disconnect_policy = "keep"

    def stream(self, prompt: str, **params: Any) -> Any:
        return source_from_settings(prompt, pipeline=self.get_pipeline_name(params) or "response")


class ChatConsumer(StreamConsumer):
    """``/ws/chat/``: the same chat over a WebSocket."""

    pipelines = CHAT_PIPELINES
    default_pipeline = "response"
    disconnect_policy = "keep"

    def stream(self, prompt: str, **params: Any) -> Any:
        return source_from_settings(prompt, pipeline=self.get_pipeline_name(params) or "response")


@ensure_csrf_cookie
def chat_page(request: HttpRequest) -> HttpResponse:
    """The chat page. It sets the CSRF cookie its POST requests send back, and the
    visitor's owner token, so its WebSocket can resume this visitor's replies."""
    owner_of(getattr(request, "user", None), getattr(request, "session", None))
    return render(request, "streaming/chat.html")
