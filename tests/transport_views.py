"""``SSEView`` and ``StreamConsumer`` subclasses the transport tests drive over daphne.

Every one streams a scripted model reply chosen by the request's parameters:

* ``reply``: ``xml`` (default, :data:`XML_REPLY`) or ``plain`` (:data:`PLAIN_REPLY`);
* ``size``: characters per chunk (default 3), so tags and characters are split anywhere;
* ``delay``: seconds before each chunk (default 0);
* ``fail``: ``crash`` (a ``RuntimeError``) or ``upstream`` (a ``StreamError``) after
  ``fail_after`` chunks (default 2);
* ``key``: the probe key under which ``started`` and ``finally`` are recorded.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt

from streaming import StreamError, StreamErrorCode
from streaming.chat import CHAT_PIPELINES
from streaming.conf import setting
from streaming.consumers import StreamConsumer
from streaming.extractors import ResponseStreamExtractor, ValidationStreamExtractor
from streaming.generations import WATCH_INTERVAL
from streaming.limits import UNLIMITED, Limits
from streaming.sources import openai_chat
from streaming.views import SSEView

from .routes import record

XML_REPLY = (
    "<response>\n<thought>The user greets me; secret plan.</thought>\n"
    "<actions>REPLY</actions>\n<text>Hello, wörld! 👋 Ünïcode, a < b & c,\n"
    "two lines.</text>\n</response>"
)
#: What ``ResponseStreamExtractor`` streams of :data:`XML_REPLY`.
XML_TEXT = "Hello, wörld! 👋 Ünïcode, a < b & c,\ntwo lines."
PLAIN_REPLY = "Plain text, streamed as it is: <b>not a tag</b> 🎉"


def pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _options(params: Mapping[str, Any]) -> tuple[list[str], float, str | None, int, str]:
    reply = PLAIN_REPLY if params.get("reply") == "plain" else XML_REPLY
    size = max(1, int(params.get("size", 3)))
    return (
        pieces(reply, size),
        float(params.get("delay", 0)),
        params.get("fail"),
        int(params.get("fail_after", 2)),
        str(params.get("key", "default")),
    )


def _failure(kind: str) -> Exception:
    if kind == "upstream":
        return StreamError(StreamErrorCode.UPSTREAM_ERROR, "The upstream model failed")
    return RuntimeError("secret internal detail")


async def scripted_reply(params: Mapping[str, Any]) -> AsyncIterator[str]:
    """The scripted reply as an async generator that records its start and its end."""
    chunks, delay, fail, fail_after, key = _options(params)
    record(key, "started")
    try:
        for index, chunk in enumerate(chunks):
            if fail and index == fail_after:
                raise _failure(fail)
            if delay:
                await asyncio.sleep(delay)
            yield chunk
    finally:
        record(key, "finally")


class ScriptedPrompt:
    """A scripted model needs no prompt: a request without one gets a fixed prompt."""

    def get_prompt(self, params: Mapping[str, Any]) -> str:
        return str(params.get("prompt") or "scripted")


class ScriptedView(ScriptedPrompt, SSEView):
    """The scripted reply through the chat pipelines (``response`` by default)."""

    pipelines = CHAT_PIPELINES
    default_pipeline = "response"

    def stream(self, prompt: str, **params: Any) -> Any:
        return scripted_reply(params)


class KeepView(ScriptedView):
    """A reply that runs on when its client goes away, so a reconnect resumes it."""

    disconnect_policy = "keep"


class ResponseOnlyView(ScriptedPrompt, SSEView):
    """The issue's example: ``extractors = [ResponseStreamExtractor]``, a sync generator."""

    extractors = (ResponseStreamExtractor,)

    def stream(self, prompt: str, **params: Any) -> Iterator[str]:
        chunks, _, _, _, key = _options(params)
        record(key, "started")
        try:
            yield from chunks
        finally:
            record(key, "finally")


class LoginScriptedView(LoginRequiredMixin, ScriptedView):
    """Anonymous users are redirected to the login page."""


class HeaderAuthView(ScriptedView):
    """Its clients authenticate by a header, not a cookie: no CSRF check."""

    csrf_exempt = True


@method_decorator(csrf_exempt, name="dispatch")
class ExemptDispatchView(ScriptedView):
    """Exempted the way Django documents for class-based views."""


class DeniedView(ScriptedView):
    def check_permissions(self) -> None:
        raise PermissionDenied("No streams for you")


class CustomMessagesView(ScriptedView):
    """Other message shapes, as an OpenAI-style client expects them."""

    def chunk_message(self, text: str) -> Any:
        return {"delta": text}

    def done_message(self) -> Any:
        return "[DONE]"

    def error_message(self, error: StreamError) -> Any:
        return {"failure": error.message}


class ValidationView(ScriptedPrompt, SSEView):
    """Validated fields stream as chunks; the extractor's events as named SSE events."""

    send_extractor_events = True

    def get_extractors(self, params: Mapping[str, Any]) -> list[Any]:
        return [
            ValidationStreamExtractor(level=0, schema=["thought", "text"], stream_fields=["text"])
        ]

    def stream(self, prompt: str, **params: Any) -> Any:
        return scripted_reply(params)


class OpenAIView(SSEView):
    """The OpenAI SDK source against the OpenAI-compatible server named by ``base_url``."""

    extractors = (ResponseStreamExtractor,)

    def stream(self, prompt: str, **params: Any) -> Any:
        messages = [{"role": "user", "content": prompt}]
        return openai_chat(messages, base_url=params["base_url"], api_key="test-key")


class KeepOpenAIView(OpenAIView):
    """The OpenAI source with the ``keep`` policy: only the generation can stop it."""

    disconnect_policy = "keep"


class SlowToAnswerView(OpenAIView):
    """A reply that starts, then a slow step (a middleware, say) before the response is
    sent: a client that leaves meanwhile never gets a follower."""

    async def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = await super().get(request, *args, **kwargs)
        await asyncio.sleep(1.0)
        return response


class SlowToReadView(ScriptedView):
    """A busy server: the response is returned, and begun being read, only after the
    reply's ``CANCEL_GRACE`` (plus two turns of the watcher) has passed."""

    async def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = await super().get(request, *args, **kwargs)
        await asyncio.sleep(float(setting("CANCEL_GRACE")) + 2 * WATCH_INTERVAL)
        return response


class ScriptedConsumer(StreamConsumer):
    """The scripted reply over a WebSocket, through the chat pipelines."""

    pipelines = CHAT_PIPELINES
    default_pipeline = "response"

    def stream(self, prompt: str, **params: Any) -> Any:
        return scripted_reply(params)


class KeepConsumer(ScriptedConsumer):
    disconnect_policy = "keep"


class SlowStopConsumer(ScriptedConsumer):
    """Its ``stopping`` hook records its call (key ``stop-<reply>``), then takes half a
    second: a short reply ends meanwhile, before its cancel lands."""

    async def stopping(self, generation_id: str, owner: str, shown: int | None) -> None:
        record(f"stop-{generation_id}", f"shown {shown}")
        await asyncio.sleep(0.5)


class DeniedConsumer(ScriptedConsumer):
    def check_permissions(self) -> None:
        raise PermissionDenied("No streams for you")


def query_a_missing_table() -> None:
    """A real database failure: ``OperationalError`` (a ``DatabaseError``)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM no_such_table")


class PermissionsFailConsumer(ScriptedConsumer):
    """Its ``check_permissions`` fails on the database."""

    def check_permissions(self) -> None:
        query_a_missing_table()


class OwnerFailsConsumer(ScriptedConsumer):
    """Its ``get_owner`` fails on the database."""

    def get_owner(self) -> str:
        query_a_missing_table()
        return "never"


class OpenAIConsumer(StreamConsumer):
    extractors = (ResponseStreamExtractor,)

    def stream(self, prompt: str, **params: Any) -> Any:
        messages = [{"role": "user", "content": prompt}]
        return openai_chat(messages, base_url=params["base_url"], api_key="test-key")


class KeepOpenAIConsumer(OpenAIConsumer):
    disconnect_policy = "keep"


# ------------------------------------------------------ hostile input and limits
#: A lone surrogate the model "sends" after echoing the prompt.
LONE_SURROGATE = "\udc9f"


async def echo_reply(prompt: str) -> AsyncIterator[str]:
    """The prompt back, then a piece of broken model text (a lone surrogate)."""
    yield f"You said: {prompt} "
    yield f"and {LONE_SURROGATE}!"


class EchoView(SSEView):
    """Hooks as a subclass may write them: ``stream`` takes no parameters (another one
    fails the start) and ``get_limits`` is sync."""

    def stream(self, prompt: str) -> Any:  # type: ignore[override]
        return echo_reply(prompt)

    def get_limits(self) -> Limits:  # type: ignore[override]
        return Limits.from_settings()


class EchoConsumer(StreamConsumer):
    """As ``EchoView``."""

    def stream(self, prompt: str) -> Any:  # type: ignore[override]
        return echo_reply(prompt)

    def get_limits(self) -> Limits:  # type: ignore[override]
        return Limits.from_settings()


class ApiKeyView(ScriptedView):
    """Requests with the ``X-Api-Key: partner`` header are exempt from the limits."""

    async def get_limits(self) -> Limits:
        if self.request.headers.get("X-Api-Key") == "partner":
            return UNLIMITED
        return await super().get_limits()
