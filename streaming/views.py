"""``SSEView``: the class-based view users subclass to stream a model's reply as SSE.

Implement ``stream(prompt, **params)`` to yield the model's raw text chunks; choose the
extractors that filter them (``extractors``, or named ``pipelines`` a request picks with
``pipeline=``). The reply runs as a generation (``streaming.generations``); its events
are written as our SSE messages (``streaming.protocols.SSEMessages``): ``{"chunk": text}``
per piece, ``{"done": true}`` at the end, ``{"error": ..., "code": ...}`` on failure, each
with the id ``<generation>:<seq>``, so a reconnect carrying ``Last-Event-ID`` resumes it,
and ``DELETE ?id=<generation>`` cancels it.

A request that would start a reply is refused when another site sent it
(``streaming.origins``: 403 ``CROSS_SITE``) or when the client runs or starts too many
(``streaming.limits``, decided per request by ``get_limits``: 429 ``TOO_MANY_REPLIES`` /
``RATE_LIMITED`` with ``Retry-After``). Every refusal is JSON ``{"error", "code"}``: a
failed CSRF check (403 ``CSRF_FAILED``; the view runs Django's check itself), a method it
does not answer (405 ``METHOD_NOT_ALLOWED``, with ``Allow``), ``check_permissions``
saying no (403 ``FORBIDDEN``), an anonymous user where the project requires a login
(401 ``UNAUTHENTICATED``, ``streaming.login``).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from functools import partial
from typing import Any, ClassVar

from asgiref.sync import markcoroutinefunction, sync_to_async
from django.core.exceptions import PermissionDenied
from django.core.handlers.asgi import ASGIRequest
from django.db import connections, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import View

from .addresses import client_address
from .csrf import check_csrf, exempted
from .errors import StreamError, StreamErrorCode
from .generations import DisconnectPolicy, Generations, get_generations, parse_event_id
from .limits import Limits, Reservation, retry_after
from .login import check_logged_in, login_required_everywhere
from .origins import check_request_origin
from .owners import aowner_of, atake_back_owner
from .protocols import SSEMessages, WireProtocol
from .protocols.sse import chunk_data, done_data, error_data
from .reply_body import ReplyBody, SSEFrames, needs_asgi
from .request_thread import close_request_connections
from .requests import (
    PipelineChoiceMixin,
    call_hook,
    call_stopping,
    get_shown,
    json_object,
    query_params,
    start_reply,
    stream_params,
)
from .response import NoContent, SSEResponse
from .sse import ServerSentEvent

#: HTTP status of a refused request, by error code (others: 400).
ERROR_STATUS = {
    "NOT_FOUND": 404,
    "EVENTS_EXPIRED": 410,
    "STORE_UNAVAILABLE": 503,
    "SERVER_BUSY": 503,
    "CROSS_SITE": 403,
    "CSRF_FAILED": 403,
    "FORBIDDEN": 403,
    "UNAUTHENTICATED": 401,
    "METHOD_NOT_ALLOWED": 405,
    "TOO_MANY_REPLIES": 429,
    "RATE_LIMITED": 429,
    "TOO_MANY_CONVERSATIONS": 409,
    "CONVERSATION_BUSY": 409,
    "SHUTTING_DOWN": 503,
    "INTERNAL_ERROR": 500,
}


logger = logging.getLogger("streaming")
_wsgi_logged = False


def not_atomic(view: Callable[..., Any]) -> Callable[..., Any]:
    """Mark the async ``view`` out of ``ATOMIC_REQUESTS``' transaction, on every database:
    Django cannot run an async view in one, and answers every request to an unmarked one
    with a 500 (``RuntimeError: You cannot use ATOMIC_REQUESTS with async views``). A reply
    lasts minutes: it writes its rows in transactions of its own."""
    for alias in connections:
        transaction.non_atomic_requests(using=alias)(view)
    return view


def _log_wsgi_once(path: str) -> None:
    """Say once per process, in the server's log, why every reply is refused here."""
    global _wsgi_logged
    if _wsgi_logged:
        return
    _wsgi_logged = True
    logger.error(
        "A reply was asked for at %s under WSGI: replies need an ASGI server, so each is "
        "refused (500 'Following a reply needs an ASGI server'). Serve the ASGI application "
        "(daphne, uvicorn, hypercorn; for runserver, 'daphne' first in INSTALLED_APPS) "
        "instead of the WSGI one. Said once per process.",
        path,
    )


class SSEView(PipelineChoiceMixin, View):
    """Stream a model's reply to ``GET`` (query parameters, for ``EventSource``) and ``POST``
    (a JSON object, for ``fetch``) as Server-Sent Events.

    Hooks, in the order they run, with ``self.request`` at hand (the same names and shape
    as ``StreamConsumer``'s): ``check_permissions`` and ``get_owner`` (each may be sync,
    run in a thread, or async), ``get_params``, ``get_prompt``, ``get_extractors`` (from
    ``extractors`` / ``pipelines``), ``stream(prompt, **params)``, and the message
    builders ``chunk_message``, ``done_message``, ``error_message``.
    """

    http_method_names: ClassVar[list[str]] = ["get", "post", "delete", "options"]
    #: When the client goes away: ``"cancel"`` stops the reply; ``"keep"`` lets it run
    #: for ``STREAMING["KEEP_GRACE"]`` seconds unwatched, so a reconnect resumes it.
    disconnect_policy: DisconnectPolicy = "cancel"
    #: Send extractor events (``ValidationStreamExtractor``'s ``field_validated`` …) as
    #: named SSE events.
    send_extractor_events = False
    #: Skip Django's CSRF check, for clients that authenticate by a header rather than a
    #: cookie (a server, an app). ``csrf_exempt`` around ``as_view()`` does the same.
    csrf_exempt = False
    #: Serve anonymous users even where the project requires a login everywhere
    #: (``LoginRequiredMiddleware``): what Django's ``@login_not_required`` is to a view.
    #: Otherwise the view refuses them itself, as JSON (401 ``UNAUTHENTICATED``), where the
    #: middleware would redirect its ``fetch`` to the login page.
    login_not_required: ClassVar[bool] = False
    #: ``event`` and ``retry`` written on every message.
    event: str | None = None
    retry: int | None = None

    # ------------------------------------------------------------------ hooks
    def stream(self, prompt: str, **params: Any) -> Any:
        """The model's raw text chunks for ``prompt``: a generator or async generator of
        str, an (async) iterable, or a coroutine resolving to one. ``params`` are the
        request's other parameters (``pipeline`` …); ``self.request`` is at hand."""
        raise NotImplementedError(f"{type(self).__name__} must implement stream()")

    def generation_options(self) -> dict[str, Any]:
        """More arguments for ``Generations.start`` (``generation_id``, ``on_end``), asked
        after ``stream()``: the chat stores its conversation's messages this way."""
        return {}

    async def check_permissions(self) -> bool | None:
        """Raise ``PermissionDenied`` (or return False) to refuse the request with 403.
        May be sync (it then runs in a thread, so it may use the ORM) or async."""
        return None

    async def stopping(self, generation_id: str, owner: str, shown: int | None) -> None:
        """The owner stops its reply (``DELETE``), which is then cancelled: ``shown`` is how
        many characters of its text the client had shown (``None``: not said). The chat
        stores a stopped reply cut there, as its user saw it. Sync or async; a failure is
        logged and the reply stopped all the same."""

    async def get_owner(self) -> str:
        """Who may resume, watch or cancel the replies this request starts (sync or async).
        An anonymous visitor's token is made only by a request that may start a reply: a
        resume or a stop without one owns nothing, and stores no session (a bot's)."""
        auser = getattr(self.request, "auser", None)
        user = await auser() if auser is not None else None
        session = getattr(self.request, "session", None)
        return await aowner_of(user, session, create=self._may_start_reply())

    def _may_start_reply(self) -> bool:
        """Whether this request may start a reply: a ``GET`` or ``POST`` that resumes none."""
        request = self.request
        return request.method in ("GET", "POST") and not request.META.get("HTTP_LAST_EVENT_ID")

    def get_params(self) -> dict[str, Any]:
        """The request's parameters: the query string for GET, a JSON object for POST."""
        request = self.request
        if request.method == "POST":
            return json_object(request, StreamErrorCode.PROMPT_TOO_LARGE)
        return dict(query_params(request).items())

    def chunk_message(self, text: str) -> Any:
        return chunk_data(text)

    def done_message(self) -> Any:
        return done_data()

    def error_message(self, error: StreamError) -> Any:
        return error_data(error)

    def get_protocol(self) -> WireProtocol[ServerSentEvent]:
        """How the reply's events become SSE messages: ours, built by the hooks above."""
        chunk_message: Callable[[str], Any] = self.chunk_message
        if type(self).chunk_message is SSEView.chunk_message:
            chunk_message = chunk_data  # not overridden: SSEMessages writes it pre-encoded
        return SSEMessages(chunk_message, self.done_message, self.error_message)

    # -------------------------------------------------------------- dispatch
    async def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return await self._respond()

    async def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return await self._respond()

    async def _respond(self) -> HttpResponse:
        generations = get_generations()
        # An empty header names nothing (EventSource sends none before its first id).
        last_event_id = self.request.META.get("HTTP_LAST_EVENT_ID") or None
        starting = False
        try:
            if last_event_id is None:
                # Before the CSRF check, which another site's POST also fails: say why.
                check_request_origin(self.request)
            await self._check_request()
            owner = await call_hook(self.get_owner)
            if last_event_id is not None:
                self._require_asgi()
                return await self._resume(generations, owner, last_event_id)
            params = self.get_params()
            prompt = self.get_prompt(params)
            pipeline = self.get_pipeline(params)
            stream = partial(self.stream, prompt, **stream_params(self.stream, params, "prompt"))
            self._require_asgi()
            reservation = await self._reserve(generations, owner)
            # The request's hooks are done: its thread's connection is not held while the
            # reply starts (the chat's waits on the database workers).
            await close_request_connections()
            starting = True
            generation_id = await start_reply(
                generations,
                stream,
                pipeline,
                owner=owner,
                reservation=reservation,
                policy=self.disconnect_policy,
                forward_events=self.send_extractor_events,
                options=self.generation_options,
            )
        except StreamError as exc:
            if not starting:  # refused before anything was made (a turn may be, after)
                await atake_back_owner(getattr(self.request, "session", None))
            return self.error_response(exc)
        return self.follow_response(generations, generation_id, owner, after=0)

    async def delete(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """Cancel a reply: ``DELETE ?id=<generation>`` (the part of an event id before ``:``),
        with ``&shown=<characters>`` when the client says how much of it it had shown."""
        generations = get_generations()
        try:
            params = query_params(request)
            generation_id = params.get("id", "")
            shown = get_shown(params, query=True)
            await self._check_request()
            owner = await call_hook(self.get_owner)
            await generations.check_owner(generation_id, owner)
        except StreamError as exc:
            return self.error_response(exc)
        await call_stopping(self.stopping, generation_id, owner, shown)
        await generations.cancel(generation_id, settle=True)
        return NoContent()

    async def get_limits(self) -> Limits:
        """The limits of this request (``STREAMING`` settings by default). Return
        ``streaming.limits.UNLIMITED`` to exempt it (a staff user, an API key), or other
        ``Limits``; ``self.request`` is at hand. May be sync (run in a thread) or async."""
        return Limits.from_settings()

    async def _reserve(self, generations: Generations, owner: str) -> Reservation:
        limits = await call_hook(self.get_limits)
        address = client_address(self.request)
        return await generations.reserve(limits, owner=owner, address=address)

    def _require_asgi(self) -> None:
        """Under WSGI, refuse a reply before anything is reserved, started or stored: it
        would run on an event loop that ends with the request. The first refusal of the
        process says why in the log, where Django's own line says only "Internal Server
        Error"."""
        if not isinstance(self.request, ASGIRequest):
            _log_wsgi_once(self.request.path)
            raise needs_asgi()

    async def _check_request(self) -> None:
        """The login a project may require everywhere (before the CSRF check, which a
        session ended by a logout may fail too: the user is told to log in), Django's CSRF
        check (the view is ``csrf_exempt`` so that a failure is JSON) unless the project
        exempted it, then ``check_permissions``."""
        if not self.login_not_required and login_required_everywhere():
            auser = getattr(self.request, "auser", None)
            check_logged_in(await auser() if auser is not None else None)
        if not (self.csrf_exempt or exempted(self.request, type(self))):
            await check_csrf(self.request)
        try:
            allowed = await call_hook(self.check_permissions)
        except PermissionDenied as exc:
            raise StreamError(StreamErrorCode.FORBIDDEN, str(exc) or "Permission denied") from exc
        if allowed is False:
            raise StreamError(StreamErrorCode.FORBIDDEN, "Permission denied")

    def error_response(self, error: StreamError) -> HttpResponse:
        """A refused request: ``error_message`` as JSON, with the status its code calls for
        (and ``Retry-After`` when the refusal has one)."""
        status = ERROR_STATUS.get(str(error.code), 400)
        response = JsonResponse(self.error_message(error), status=status, safe=False)
        seconds = retry_after(error)
        if seconds is not None:
            response["Retry-After"] = str(seconds)
        return response

    def http_method_not_allowed(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        """405 as JSON, naming the allowed methods (in the body and in ``Allow``)."""
        allowed = ", ".join(self._allowed_methods())
        response = self.error_response(
            StreamError(
                StreamErrorCode.METHOD_NOT_ALLOWED,
                f"Method {request.method} is not allowed; allowed: {allowed}",
                {"allowed": self._allowed_methods()},
            )
        )
        response["Allow"] = allowed

        async def answer() -> HttpResponse:
            return response

        return answer()

    async def _resume(
        self, generations: Generations, owner: str, last_event_id: str
    ) -> HttpResponse:
        """A reconnect: the events after ``Last-Event-ID``, or 204 when there are none left."""
        parsed = parse_event_id(last_event_id)
        if parsed is None:
            raise StreamError(StreamErrorCode.NOT_FOUND, "Last-Event-ID names no reply")
        generation_id, after = parsed
        if not await generations.has_more(generation_id, owner, after):
            return NoContent()  # the client has everything: EventSource stops
        return self.follow_response(generations, generation_id, owner, after=after)

    def follow_response(
        self, generations: Generations, generation_id: str, owner: str, *, after: int
    ) -> HttpResponse:
        """The generation's events after ``after`` as an SSE response, until its end. Its
        first bytes carry the id ``<generation>:<after>`` (no data), so the client knows
        the reply before its first message and a reconnect resumes it."""
        cancel = partial(generations.cancel, generation_id)
        body = ReplyBody.following(
            generations,
            generation_id,
            owner,
            SSEFrames(self.get_protocol(), generation_id, event=self.event, retry=self.retry),
            after=after,
            opening_id=f"{generation_id}:{after}",
            on_cut=cancel if self.disconnect_policy == "cancel" else None,
        )
        return SSEResponse(body)

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Callable[..., Any]:
        """An async view in which sync mixin code (``LoginRequiredMixin``…) runs in a thread.

        A mixin's ``dispatch`` may answer by itself (a redirect, a 403) or return our
        async handler's coroutine; both are handled, so Django's access mixins work here.
        Without such a mixin nothing sync runs first, and no thread is involved. A mixin's
        ``PermissionDenied`` is a JSON 403 too. The view is ``csrf_exempt``: it runs
        Django's CSRF check itself, to answer a failure as JSON; and ``login_not_required``
        for ``LoginRequiredMiddleware``: it checks the login itself, to answer as JSON.
        """
        view = super().as_view(**initkwargs)
        view.csrf_exempt = True
        view.login_required = False
        not_atomic(view)
        if cls.dispatch is View.dispatch:
            return view

        def dispatch_in_thread(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            # Django marks ``view`` as a coroutine function (our handlers are async), so
            # sync_to_async refuses it; this plain function runs the sync part.
            return view(request, *args, **kwargs)

        async def async_view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            try:
                result = await sync_to_async(dispatch_in_thread)(request, *args, **kwargs)
            except PermissionDenied as exc:
                refusal = StreamError(StreamErrorCode.FORBIDDEN, str(exc) or "Permission denied")
                return cls(**initkwargs).error_response(refusal)
            if inspect.isawaitable(result):
                result = await result
            return result

        for attribute in ("view_class", "view_initkwargs", "__doc__", "__module__", "__name__"):
            setattr(async_view, attribute, getattr(view, attribute))
        async_view.__dict__.update(
            {k: v for k, v in view.__dict__.items() if k not in async_view.__dict__}
        )
        return markcoroutinefunction(async_view)
