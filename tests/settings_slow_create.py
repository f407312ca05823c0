"""The test project (on PostgreSQL when ``$STREAMING_TEST_POSTGRES`` is set) with an event
store slow to create a reply's stream (``SlowCreateStore``)."""

import os

from .settings import STREAMING

if os.environ.get("STREAMING_TEST_POSTGRES"):
    from .settings_postgres import *  # noqa: F403
else:
    from .settings import *  # noqa: F403

STREAMING = {
    **STREAMING,
    "STORE": {"BACKEND": "tests.slow_create_store.SlowCreateStore", "OPTIONS": {"delay": 1.0}},
}
