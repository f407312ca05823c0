"""The test project with the default limits on (``tests.settings`` turns them off), and
127.0.0.1 as a trusted proxy, so a test plays many clients with ``X-Forwarded-For``.
With ``$STREAMING_TEST_REDIS`` the event store (and so the counts) is that Redis."""

import os

from .settings import *  # noqa: F403
from .settings import STREAMING

STREAMING = {
    **STREAMING,
    "MAX_ACTIVE_PER_OWNER": 3,
    "MAX_ACTIVE_PER_ADDRESS": 10,
    "MAX_STARTS_PER_MINUTE": 30,
    "MAX_CONVERSATIONS_PER_MINUTE": 20,
    # Low enough for a test to reach (the default is 10,000).
    "MAX_CONVERSATIONS_PER_OWNER": 25,
    "TRUSTED_PROXIES": ["127.0.0.1"],
}
if os.environ.get("STREAMING_TEST_REDIS"):
    STREAMING["STORE"] = {
        "BACKEND": "streaming.store.redis.RedisStore",
        "OPTIONS": {"url": os.environ["STREAMING_TEST_REDIS"], "socket_timeout": 1.0},
    }
