"""``SSEView``: the class-based view users subclass to stream a model's reply as SSE.

Override ``stream()`` to yield the model's raw text chunks; choose the extractors that
filter them (``extractors``, or named ``pipelines`` a request picks with ``pipeline=``).
Messages: ``{"chunk": text}`` per piece, ``{"done": true}`` at the end, ``{"error": ...,
"code": ...}`` on failure, each with the id ``<generation>:<seq>``. The reply runs as a
generation (``streaming.generations``) that writes to the event store, so a reconnect
carrying ``Last-Event-ID`` resumes it, and ``DELETE ?id=<generation>`` cancels it.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar

from asgiref.sync import markcoroutinefunction, sync_to_async
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import View

from .errors import StreamError, StreamErrorCode
from .generations import (
    TERMINAL,
    DisconnectPolicy,
    Generations,
    aowner_of,
    get_generations,
    merge_chunks,
    parse_event_id,
    terminal_error,
)
from .requests import PipelineChoiceMixin
from .response import sse_response
from .sse import ServerSentEvent
from .store.base import StoredEvent
from .stream import Stream

#: HTTP status of a refused request, by error code (others: 400).
ERROR_STATUS = {"NOT_FOUND": 404, "EVENTS_EXPIRED": 410, "STORE_UNAVAILABLE": 503}


class SSEView(PipelineChoiceMixin, View):
    """Stream a model's reply to ``GET`` (query parameters, for ``EventSource``) and ``POST``
    (a JSON object, for ``fetch``) as Server-Sent Events.

    Subclass hooks, in the order they run: ``check_permissions``, ``get_params``,
    ``get_extractors`` (from ``extractors`` / ``pipelines``), ``stream``, and the message
    builders ``chunk_message``, ``done_message``, ``error_message``.
    """

    http_method_names: ClassVar[list[str]] = ["get", "post", "delete", "options"]
    #: When the client goes away: ``"cancel"`` stops the reply; ``"keep"`` lets it run
    #: for ``STREAMING["KEEP_GRACE"]`` seconds unwatched, so a reconnect resumes it.
    disconnect_policy: DisconnectPolicy = "cancel"
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
            except RequestDataTooBig as exc:
                raise StreamError(
                    StreamErrorCode.PROMPT_TOO_LARGE,
                    "The request body is larger than DATA_UPLOAD_MAX_MEMORY_SIZE",
                ) from exc
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
        await self._check_permissions(request)
        generations = get_generations()
        owner = await self.get_owner(request)
        try:
            last_event_id = request.headers.get("Last-Event-ID")
            if last_event_id is not None:
                return await self._resume(generations, owner, last_event_id)
            self.params = self.get_params(request)
            pipeline = self.get_pipeline(self.params)
            source = self.stream(request, *args, **kwargs)
            if inspect.iscoroutine(source):
                source = await source
            if isinstance(source, Stream):
                return sse_response(source)
            generation_id = await generations.start(
                source,
                pipeline,
                owner=owner,
                policy=self.disconnect_policy,
                forward_events=self.send_extractor_events,
            )
        except StreamError as exc:
            return self.error_response(exc)
        return self.follow_response(generations, generation_id, owner, after=0)

    async def delete(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """Cancel a reply: ``DELETE ?id=<generation>`` (the part of an event id before ``:``)."""
        await self._check_permissions(request)
        generations = get_generations()
        generation_id = request.GET.get("id", "")
        try:
            owner = await self.get_owner(request)
            await generations.check_owner(generation_id, owner)
        except StreamError as exc:
            return self.error_response(exc)
        await generations.cancel(generation_id)
        return HttpResponse(status=204)

    async def get_owner(self, request: HttpRequest) -> str:
        """Who may resume, watch or cancel the replies this request starts."""
        auser = getattr(request, "auser", None)
        user = await auser() if auser is not None else None
        return await aowner_of(user, getattr(request, "session", None))

    async def _check_permissions(self, request: HttpRequest) -> None:
        """Run the sync ``check_permissions`` hook in a thread, when a subclass has one."""
        if type(self).check_permissions is not SSEView.check_permissions:
            await sync_to_async(self.check_permissions)(request)

    def error_response(self, error: StreamError) -> HttpResponse:
        """A refused request: ``error_message`` as JSON, with the status its code calls for."""
        status = ERROR_STATUS.get(str(error.code), 400)
        return JsonResponse(self.error_message(error), status=status, safe=False)

    async def _resume(
        self, generations: Generations, owner: str, last_event_id: str
    ) -> HttpResponse:
        """A reconnect: the events after ``Last-Event-ID``, or 204 when there are none left."""
        parsed = parse_event_id(last_event_id)
        if parsed is None:
            raise StreamError(StreamErrorCode.NOT_FOUND, "Last-Event-ID names no reply")
        generation_id, after = parsed
        await generations.check_owner(generation_id, owner)
        store = generations.store
        if await store.is_finished(generation_id) and not await store.read(
            generation_id, after, timeout=0
        ):
            return HttpResponse(status=204)  # the client has everything: EventSource stops
        return self.follow_response(generations, generation_id, owner, after=after)

    def follow_response(
        self, generations: Generations, generation_id: str, owner: str, *, after: int
    ) -> HttpResponse:
        """The generation's events after ``after`` as SSE, each id ``<generation>:<seq>``."""

        async def messages() -> AsyncIterator[ServerSentEvent]:
            ended = False
            try:
                async for batch in generations.follow(generation_id, owner, after):
                    for message in self.batch_messages(generation_id, batch):
                        yield message
                    ended = batch[-1].data["type"] in TERMINAL
            except StreamError as exc:
                ended = True
                yield ServerSentEvent(self.error_message(exc))
            finally:
                if not ended and self.disconnect_policy == "cancel":
                    await generations.cancel(generation_id)

        return sse_response(messages(), event=self.event, retry=self.retry)

    def batch_messages(self, generation_id: str, batch: list[StoredEvent]) -> list[ServerSentEvent]:
        """One message per run of chunks (merged: the text is what counts), per extractor
        event and for the end."""
        out: list[ServerSentEvent] = []
        for stored in merge_chunks(batch):
            data = stored.data
            kind = data["type"]
            event_id = f"{generation_id}:{stored.seq}"
            if kind == "chunk":
                out.append(ServerSentEvent(self.chunk_message(data["text"]), id=event_id))
            elif kind == "event":
                out.append(ServerSentEvent(data["data"], event=data["name"], id=event_id))
            elif kind == "complete":
                out.append(ServerSentEvent(self.done_message(), id=event_id))
            else:
                out.append(ServerSentEvent(self.error_message(terminal_error(data)), id=event_id))
        return out

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Callable[..., Any]:
        """An async view in which sync mixin code (``LoginRequiredMixin``…) runs in a thread.

        A mixin's ``dispatch`` may answer by itself (a redirect, a 403) or return our
        async handler's coroutine; both are handled, so Django's access mixins work here.
        Without such a mixin nothing sync runs first, and no thread is involved.
        """
        view = super().as_view(**initkwargs)
        if cls.dispatch is View.dispatch:
            return view

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
