"""Django's CSRF check, run inside our async views so that a failure is a JSON error.

``CsrfViewMiddleware`` answers a failed check with Django's HTML 403 page, which a
client of a JSON and event-stream API cannot read. ``SSEView`` is therefore marked
``csrf_exempt`` and runs the same check itself (as Django REST framework's
``SessionAuthentication`` does), for the methods and the projects the middleware would
check: unsafe methods, and only when ``CsrfViewMiddleware`` is installed.

Since the view is marked exempt already, the usual ways to exempt it are looked for
here: Django's ``csrf_exempt`` around ``as_view()`` (found by its wrapper's code, as
``functools.wraps`` copies the view's own mark onto it) or on the class's ``dispatch``.
"""

from __future__ import annotations

from types import CodeType
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, QueryDict
from django.middleware.csrf import CsrfViewMiddleware
from django.utils.datastructures import MultiValueDict
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from .errors import StreamError, StreamErrorCode

MIDDLEWARE = "django.middleware.csrf.CsrfViewMiddleware"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
#: How many decorators around a view are looked through for ``csrf_exempt``.
MAX_DECORATORS = 20


def _exempting_code() -> frozenset[CodeType]:
    """The code of the wrappers Django's ``csrf_exempt`` makes, for sync and async views."""

    def view(request: HttpRequest) -> None:
        """A sync view."""

    async def async_view(request: HttpRequest) -> None:
        """An async view."""

    return frozenset(csrf_exempt(wrapped).__code__ for wrapped in (view, async_view))


_EXEMPTING_CODE = _exempting_code()


def exempted(request: HttpRequest, view_class: type[View]) -> bool:
    """Whether the project exempted this view from the CSRF check: ``csrf_exempt`` on
    ``view_class.dispatch`` (``method_decorator``) or around the view its URL routes to."""
    if getattr(view_class.dispatch, "csrf_exempt", False):
        return True
    match = request.resolver_match
    view = match.func if match is not None else None
    for _ in range(MAX_DECORATORS):
        if view is None:
            return False
        if getattr(view, "__code__", None) in _EXEMPTING_CODE:
            return True
        view = getattr(view, "__wrapped__", None)
    return False


class _Check(CsrfViewMiddleware):
    """The middleware's checks, answering with the reason instead of a response."""

    def _reject(self, request: HttpRequest, reason: str) -> Any:
        return reason


def _failure(request: HttpRequest) -> str | None:
    if not hasattr(request, "_post"):
        # Our bodies are JSON, read whole by the view: the token comes in the header, and
        # the body is not parsed as a form here (a multipart body would be read from the
        # stream, leaving ``request.body`` unreadable; a form of many fields raises).
        request._post, request._files = QueryDict(), MultiValueDict()
    check = _Check(lambda request: None)
    check.process_request(request)
    reason = check.process_view(request, lambda request: None, (), {})
    return reason if isinstance(reason, str) else None


async def csrf_failure(request: HttpRequest) -> str | None:
    """Why ``request`` fails Django's CSRF check (``None``: it passes, or is not checked)."""
    if request.method in SAFE_METHODS or MIDDLEWARE not in settings.MIDDLEWARE:
        return None
    if settings.CSRF_USE_SESSIONS:
        return await sync_to_async(_failure)(request)  # reads the session
    return _failure(request)


async def check_csrf(request: HttpRequest) -> None:
    """``StreamError`` (``CSRF_FAILED``, 403) when ``request`` fails Django's CSRF check."""
    reason = await csrf_failure(request)
    if reason is not None:
        raise StreamError(StreamErrorCode.CSRF_FAILED, f"CSRF check failed: {reason}")
