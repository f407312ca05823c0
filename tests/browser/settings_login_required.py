"""Settings of the browser tests in a project that requires a login everywhere (Django's
``LoginRequiredMiddleware``), with database sessions, the test login and logout, and a
login page of its own (``tests.login_required_urls``)."""

from .settings import *  # noqa: F403
from .settings import MIDDLEWARE

ROOT_URLCONF = "tests.login_required_urls"
SESSION_ENGINE = "django.contrib.sessions.backends.db"
MIDDLEWARE = [*MIDDLEWARE, "django.contrib.auth.middleware.LoginRequiredMiddleware"]
LOGIN_URL = "/h/login-page"
