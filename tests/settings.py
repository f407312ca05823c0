"""Settings for the tests: the demo project plus the test-only routes."""

from project.settings import *  # noqa: F403

ROOT_URLCONF = "tests.urls"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
STREAMING = {"KEEPALIVE": 1.0, "DEMO_TOKEN_DELAY": 0.002}
LOGGING = {"version": 1, "disable_existing_loggers": False}
