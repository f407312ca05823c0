"""Settings for the resume benchmark: the demo project (sessions, so a visitor can
resume) with the benchmark routes, and the Redis store at ``$STREAMING_BENCH_REDIS`` when
it is set."""

import os

from project.settings import *  # noqa: F403

DEBUG = False
ROOT_URLCONF = "benchmarks.urls"
LOGGING = {"version": 1, "disable_existing_loggers": False}
if os.environ.get("STREAMING_BENCH_REDIS"):
    STREAMING = {
        "STORE": {
            "BACKEND": "streaming.store.redis.RedisStore",
            "OPTIONS": {"url": os.environ["STREAMING_BENCH_REDIS"]},
        }
    }
