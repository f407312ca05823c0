"""The test project on PostgreSQL, sessions there too, through Django's native connection
pool (psycopg_pool) of at most 2 connections: fewer than the replies a test runs at once.
A request waits ``$STREAMING_TEST_POOL_TIMEOUT`` seconds (default 30) for a connection;
``$STREAMING_TEST_POOL_CHECK=1`` turns on ``CONN_HEALTH_CHECKS`` (the pool then checks a
connection before handing it out)."""

import os

from .settings_postgres_sessions import *  # noqa: F403
from .settings_postgres_sessions import DATABASES

DATABASES["default"]["OPTIONS"] = {
    "pool": {
        "min_size": 1,
        "max_size": 2,
        "timeout": float(os.environ.get("STREAMING_TEST_POOL_TIMEOUT", "30")),
    }
}
DATABASES["default"]["CONN_HEALTH_CHECKS"] = os.environ.get("STREAMING_TEST_POOL_CHECK") == "1"
