"""Settings for the tests: the demo project plus the test-only routes."""

import os

from project.settings import *  # noqa: F403

ROOT_URLCONF = "tests.urls"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        # A server process started by the tests gets a migrated file (servers.sqlite_database).
        "NAME": os.environ.get("DJANGO_DB", ":memory:"),
        # As the demo project's: concurrent requests wait for the write lock at BEGIN.
        "OPTIONS": {"transaction_mode": "IMMEDIATE"},
    }
}
# The suite starts hundreds of replies from 127.0.0.1: limits are off here, and on in
# tests.settings_limits (the tests of the limits).
STREAMING = {
    "KEEPALIVE": 1.0,
    "DEMO_TOKEN_DELAY": 0.002,
    "MAX_ACTIVE_PER_OWNER": None,
    "MAX_ACTIVE_PER_ADDRESS": None,
    "MAX_STARTS_PER_MINUTE": None,
    "MAX_CONVERSATIONS_PER_MINUTE": None,
    # The demo model, plus slow and failing replies on request (tests/chat_model.py).
    "MODEL": "tests.chat_model.model",
}
LOGGING = {"version": 1, "disable_existing_loggers": False}
