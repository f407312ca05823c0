"""Settings for the resume benchmark: the demo project (sessions, so a visitor can
resume) with the benchmark routes, and the Redis store at ``$STREAMING_BENCH_REDIS`` when
it is set."""

import os

from project.settings import *  # noqa: F403

DEBUG = False
ROOT_URLCONF = "benchmarks.urls"
LOGGING = {"version": 1, "disable_existing_loggers": False}
# Many replies from 127.0.0.1 in a minute: no limits here (sse_throughput measures them).
STREAMING = {
    **STREAMING,  # noqa: F405
    "MAX_ACTIVE_PER_OWNER": None,
    "MAX_ACTIVE_PER_ADDRESS": None,
    "MAX_STARTS_PER_MINUTE": None,
}
if os.environ.get("STREAMING_BENCH_REDIS"):
    STREAMING = {
        **STREAMING,
        "STORE": {
            "BACKEND": "streaming.store.redis.RedisStore",
            "OPTIONS": {"url": os.environ["STREAMING_BENCH_REDIS"]},
        },
    }
if os.environ.get("STREAMING_BENCH_STORE_BATCH_MS"):
    STREAMING = {**STREAMING, "STORE_BATCH_MS": float(os.environ["STREAMING_BENCH_STORE_BATCH_MS"])}
