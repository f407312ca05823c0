"""Settings for ``benchmarks.pg_connections``: the test project on PostgreSQL with its
sessions there too (as the deploy keeps them), ``CONN_MAX_AGE`` from
``$BENCH_CONN_MAX_AGE``, Django's native connection pool of ``max_size``
``$BENCH_POOL`` (0: none) and ``timeout`` ``$BENCH_POOL_TIMEOUT``, and demo replies of a
few seconds (``$BENCH_TOKEN_DELAY``)."""

import os

from tests.settings_postgres_sessions import *  # noqa: F403
from tests.settings_postgres_sessions import DATABASES, STREAMING

DEBUG = False
DATABASES["default"]["CONN_MAX_AGE"] = int(os.environ.get("BENCH_CONN_MAX_AGE", "0"))
_pool_size = int(os.environ.get("BENCH_POOL", "0"))
if _pool_size:
    DATABASES["default"]["OPTIONS"] = {
        "pool": {
            "min_size": min(4, _pool_size),
            "max_size": _pool_size,
            "timeout": float(os.environ.get("BENCH_POOL_TIMEOUT", "30")),
        }
    }
STREAMING = {**STREAMING, "DEMO_TOKEN_DELAY": float(os.environ.get("BENCH_TOKEN_DELAY", "0.01"))}
