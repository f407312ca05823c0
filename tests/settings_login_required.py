"""The hostile test project (database sessions, ``h/login``) in a project that requires a
login everywhere: Django's ``LoginRequiredMiddleware``, and a login page of its own."""

from .settings_hostile import *  # noqa: F403
from .settings_hostile import MIDDLEWARE

ROOT_URLCONF = "tests.login_required_urls"
MIDDLEWARE = [*MIDDLEWARE, "django.contrib.auth.middleware.LoginRequiredMiddleware"]
LOGIN_URL = "/h/login-page"
