"""The test project for hostile clients and failing processes (``tests.hostile_asgi``):
database-backed sessions and logins, as Django's defaults have them.

``$STREAMING_TEST_DATABASE`` is the ``DATABASES["default"]`` entry as JSON (a migrated
SQLite file or a PostgreSQL cluster, see ``tests.hostile.migrated_database``);
``$STREAMING_TEST_SETTINGS`` overrides ``STREAMING`` keys (JSON).
"""

import json
import os

from .settings import *  # noqa: F403
from .settings import STREAMING

ROOT_URLCONF = "tests.hostile_urls"
SESSION_ENGINE = "django.contrib.sessions.backends.db"
DATABASES = {
    "default": json.loads(
        os.environ.get(
            "STREAMING_TEST_DATABASE",
            '{"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}',
        )
    )
}
STREAMING = {**STREAMING, **json.loads(os.environ.get("STREAMING_TEST_SETTINGS", "{}"))}
