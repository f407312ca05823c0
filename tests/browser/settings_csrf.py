"""The browser tests' settings with the CSRF token where a project may keep it instead of
the ``csrftoken`` cookie: a cookie of another name that scripts cannot read, or (with
``CSRF_USE_SESSIONS`` in the environment) the session."""

import os

from .settings import *  # noqa: F403

CSRF_COOKIE_NAME = "site_csrftoken"
CSRF_COOKIE_HTTPONLY = True
CSRF_USE_SESSIONS = bool(os.environ.get("CSRF_USE_SESSIONS"))
