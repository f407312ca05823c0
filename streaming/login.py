"""A project that requires a login everywhere (Django's ``LoginRequiredMiddleware``).

The middleware redirects an anonymous request to ``LOGIN_URL``: right for a page, wrong
for an API or a stream, whose client (``fetch``) follows the redirect and reads the login
page as its answer. And Channels runs no Django middleware: without a check of their own,
the WebSockets would start replies for anyone. So while the middleware is installed the
app's views refuse an anonymous user themselves (401 ``UNAUTHENTICATED``, JSON; they are
marked ``login_not_required`` for the middleware) and its consumers with an error frame.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

from .errors import StreamError, StreamErrorCode

#: What an anonymous user is told where the project requires a login.
LOGIN_REQUIRED_MESSAGE = "This site requires a login: log in again"


def login_required_everywhere() -> bool:
    """Whether ``MIDDLEWARE`` has ``LoginRequiredMiddleware`` (or a subclass of it)."""
    return _has_login_required(tuple(settings.MIDDLEWARE))


@cache
def _has_login_required(middleware: tuple[str, ...]) -> bool:
    # Imported here: the module imports the auth models, which need the app registry.
    from django.contrib.auth.middleware import LoginRequiredMiddleware

    for dotted_path in middleware:
        try:
            factory = import_string(dotted_path)
        except ImportError:
            continue  # Django itself reports a middleware it cannot import
        if isinstance(factory, type) and issubclass(factory, LoginRequiredMiddleware):
            return True
    return False


def is_logged_in(user: Any) -> bool:
    """Whether ``user`` is a logged-in user (not ``None``, not ``AnonymousUser``)."""
    return user is not None and bool(getattr(user, "is_authenticated", False))


def check_logged_in(user: Any) -> None:
    """Refuse an anonymous ``user`` (``UNAUTHENTICATED``) where the project requires a login."""
    if login_required_everywhere() and not is_logged_in(user):
        raise StreamError(StreamErrorCode.UNAUTHENTICATED, LOGIN_REQUIRED_MESSAGE)
