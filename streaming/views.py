"""``SSEView``: the class-based view users subclass to stream a model's reply as SSE.

Override ``stream()`` to yield the model's raw text chunks; choose the extractors that
filter them (``extractors``, or named ``pipelines`` a request picks with ``pipeline=``).
Messages: ``{"chunk": text}`` per piece, ``{"done": true}`` at the end, ``{"error": ...,
"code": ...}`` on failure, each with an increasing id.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Callable
from typing import Any, ClassVar

from asgiref.sync import markcoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import View

from .errors import StreamError, StreamErrorCode
from .extractors import Pipeline, ValidationStreamExtractor
from .requests import PipelineChoiceMixin
from .response import sse_response
from .runtime import run_generation
from .sse import ServerSentEvent
from .stream import Stream

logger = logging.getLogger("streaming")


class SSEView(PipelineChoiceMixin, View):
    """Stream a model's reply to ``GET`` (query parameters, for ``EventSource``) and ``POST``
    (a JSON object, for ``fetch``) as Server-Sent Events.

    Subclass hooks, in the order they run: ``check_permissions``, ``get_params``,
    ``get_extractors`` (from ``extractors`` / ``pipelines``), ``stream``, and the message
    builders ``chunk_message``, ``done_message``, ``error_message``.
    """

    http_method_names: ClassVar[list[str]] = ["get", "post", "options"]
    #: Send extractor events (``ValidationStreamExtractor``'s ``field_validated`` …) as
    #: named SSE events.
    send_extractor_events = False
    #: ``event`` and ``retry`` written on every message.
    event: str | None = None
    retry: int | None = None

    params: dict[str, Any]

    # ------------------------------------------------------------------ hooks
    def stream(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        """The model's raw text chunks: write it as a generator or an async generator
        of str, or return an (async) iterable, a coroutine resolving to one, or a
        ``Stream`` (sent as is). ``self.params`` holds the request's parameters."""
        raise NotImplementedError(f"{type(self).__name__} must implement stream()")

    def check_permissions(self, request: HttpRequest) -> None:
        """Raise ``PermissionDenied`` to refuse the request (403)."""

    def get_params(self, request: HttpRequest) -> dict[str, Any]:
        """The request's parameters: the query string for GET, a JSON object for POST."""
        if request.method == "POST":
            try:
                params = json.loads(request.body or b"{}")
            except (ValueError, UnicodeDecodeError) as exc:
                raise StreamError(
                    StreamErrorCode.BAD_REQUEST, "The request body must be a JSON object"
                ) from exc
            if not isinstance(params, dict):
                raise StreamError(
                    StreamErrorCode.BAD_REQUEST, "The request body must be a JSON object"
                )
            return params
        return dict(request.GET.items())

    def chunk_message(self, text: str) -> Any:
        return {"chunk": text}

    def done_message(self) -> Any:
        return {"done": True}

    def error_message(self, error: StreamError) -> Any:
        return {"error": error.message, "code": str(error.code)}

    # -------------------------------------------------------------- dispatch
    async def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return await self._respond(request, *args, **kwargs)

    async def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return await self._respond(request, *args, **kwargs)

    async def _respond(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        await sync_to_async(self.check_permissions)(request)
        if request.headers.get("Last-Event-ID") is not None:
            # EventSource reconnects whenever a stream ends. This view keeps no finished
            # replies, so there is nothing to resume: 204 makes the browser stop.
            return HttpResponse(status=204)
        try:
            self.params = self.get_params(request)
            pipeline = self.get_pipeline(self.params)
            source = self.stream(request, *args, **kwargs)
            if inspect.iscoroutine(source):
                source = await source
        except StreamError as exc:
            return JsonResponse(self.error_message(exc), status=400)
        if isinstance(source, Stream):
            return sse_response(source)
        return sse_response(self._relay(source, pipeline), event=self.event, retry=self.retry)

    def _relay(self, source: Any, pipeline: Pipeline) -> Callable[[Stream], Any]:
        """The manual-mode callback that runs the generation into the stream."""

        async def run(stream: Stream) -> None:
            self.wire_validation(pipeline, stream)
            try:
                await run_generation(
                    source, pipeline, lambda text, _id: stream.send(self.chunk_message(text))
                )
                stream.send(self.done_message())
            except StreamError as exc:
                logger.warning("Generation failed: %r", exc)
                stream.send(self.error_message(exc))
            except Exception:
                logger.exception("Generation failed")
                stream.send(
                    self.error_message(
                        StreamError(StreamErrorCode.INTERNAL_ERROR, "The model stream failed")
                    )
                )
            finally:
                stream.close()

        return run

    def wire_validation(self, pipeline: Pipeline, stream: Stream) -> None:
        """Route ``ValidationStreamExtractor`` output that has no callback to the client.

        Field text becomes chunk messages; with ``send_extractor_events``, its events
        become named SSE events (``event: field_validated`` …).
        """
        for extractor in pipeline.extractors:
            if not isinstance(extractor, ValidationStreamExtractor):
                continue
            if extractor.on_chunk is None:
                extractor.on_chunk = lambda text, _field, _so_far: stream.send(
                    self.chunk_message(text)
                )
            if self.send_extractor_events and extractor.on_event is None:
                extractor.on_event = lambda event: stream.send(
                    ServerSentEvent(data=event, event=str(event["event_type"]))
                )

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Callable[..., Any]:
        """An async view in which sync mixin code (``LoginRequiredMixin``…) runs in a thread.

        A mixin's ``dispatch`` may answer by itself (a redirect, a 403) or return our
        async handler's coroutine; both are handled, so Django's access mixins work here.
        """
        view = super().as_view(**initkwargs)

        def dispatch_in_thread(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            # Django marks ``view`` as a coroutine function (our handlers are async), so
            # sync_to_async refuses it; this plain function runs the sync part.
            return view(request, *args, **kwargs)

        async def async_view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            result = await sync_to_async(dispatch_in_thread)(request, *args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
            return result

        for attribute in ("view_class", "view_initkwargs", "__doc__", "__module__", "__name__"):
            setattr(async_view, attribute, getattr(view, attribute))
        async_view.__dict__.update(
            {k: v for k, v in view.__dict__.items() if k not in async_view.__dict__}
        )
        return markcoroutinefunction(async_view)
