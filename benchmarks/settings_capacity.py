"""Settings for the capacity benchmark: no middleware, the capacity routes, and the
Redis store at ``$STREAMING_BENCH_REDIS`` when it is set (else the memory store), with
one lease per process when ``$STREAMING_BENCH_PROCESS_LEASES`` is set."""

import os

from project.settings import *  # noqa: F403

DEBUG = False
# No middleware: each one costs a thread hop per request under ASGI, the same for every
# path, which would hide what the streaming itself costs.
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "benchmarks.capacity_app"
LOGGING = {"version": 1, "disable_existing_loggers": False}
# Every client is 127.0.0.1: the limits are checked on every reply (so their cost is
# measured) but set too high to refuse any.
STREAMING: dict[str, object] = {
    **STREAMING,  # noqa: F405
    "MAX_ACTIVE_PER_OWNER": 10**9,
    "MAX_ACTIVE_PER_ADDRESS": 10**9,
    "MAX_STARTS_PER_MINUTE": 10**9,
}
if os.environ.get("STREAMING_BENCH_REDIS"):
    STREAMING["STORE"] = {
        "BACKEND": "streaming.store.redis.RedisStore",
        "OPTIONS": {
            "url": os.environ["STREAMING_BENCH_REDIS"],
            "process_leases": bool(os.environ.get("STREAMING_BENCH_PROCESS_LEASES")),
        },
    }
if os.environ.get("STREAMING_BENCH_FLUSH_MS"):
    STREAMING["FLUSH_INTERVAL_MS"] = float(os.environ["STREAMING_BENCH_FLUSH_MS"])
if os.environ.get("STREAMING_BENCH_KEEPALIVE"):
    STREAMING["KEEPALIVE"] = float(os.environ["STREAMING_BENCH_KEEPALIVE"])
if os.environ.get("STREAMING_BENCH_STORE_BATCH_MS"):
    STREAMING["STORE_BATCH_MS"] = float(os.environ["STREAMING_BENCH_STORE_BATCH_MS"])
if os.environ.get("STREAMING_BENCH_MAX_ACTIVE"):
    STREAMING["MAX_ACTIVE_PER_PROCESS"] = int(os.environ["STREAMING_BENCH_MAX_ACTIVE"])
