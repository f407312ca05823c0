"""The test project with the Redis event store at ``$STREAMING_TEST_REDIS``, as several
daphne processes behind a load balancer would share it."""

import os

from .settings import *  # noqa: F403
from .settings import STREAMING

#: Seconds a finished reply stays replayable in these tests (a resume on a loaded machine
#: may come seconds after the reply ended).
FINISHED_TTL = 5.0

STREAMING = {
    **STREAMING,
    "STORE": {
        "BACKEND": "streaming.store.redis.RedisStore",
        "OPTIONS": {
            "url": os.environ.get("STREAMING_TEST_REDIS", "redis://127.0.0.1:6379/0"),
            "ttl_finished": FINISHED_TTL,
        },
    },
}
