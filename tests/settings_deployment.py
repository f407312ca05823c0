"""The test project with limits on (``tests.settings_limits``) as one of several
deployments sharing a Redis: ``$STREAMING_TEST_STORE`` is its ``RedisStore`` OPTIONS
(JSON: ``url``, ``key_prefix``). Low per-minute limits, for a test to reach them."""

import json
import os

from .settings_limits import *  # noqa: F403
from .settings_limits import STREAMING

STREAMING = {
    **STREAMING,
    "MAX_STARTS_PER_MINUTE": 4,
    "MAX_CONVERSATIONS_PER_MINUTE": 2,
    "STORE": {
        "BACKEND": "streaming.store.redis.RedisStore",
        "OPTIONS": json.loads(os.environ["STREAMING_TEST_STORE"]),
    },
}
