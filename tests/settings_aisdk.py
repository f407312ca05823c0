"""Settings for the AI SDK's Node tests (tests/test_ai_sdk_node.py): the test project with
a database file daphne's threads share, and the demo model paced so a reply lasts long
enough (about two seconds) to be cut, resumed and stopped midway."""

import os

from tests.settings import *  # noqa: F403
from tests.settings import STREAMING

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("STREAMING_TEST_DB", ":memory:"),
        "OPTIONS": {"transaction_mode": "IMMEDIATE"},
    }
}
STREAMING = {**STREAMING, "DEMO_TOKEN_DELAY": 0.01}
