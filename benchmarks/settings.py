"""Settings for the benchmarks: the demo project with the benchmark routes."""

from project.settings import *  # noqa: F403

DEBUG = False
# No middleware: each one costs a thread hop per request under ASGI, the same for both
# sides, which would hide what the streaming itself costs.
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "benchmarks.urls"
LOGGING = {"version": 1, "disable_existing_loggers": False}
# Every client is 127.0.0.1: the limits are checked on every reply (so their cost is
# measured) but set too high to refuse any.
STREAMING = {
    **STREAMING,  # noqa: F405
    "MAX_ACTIVE_PER_OWNER": 10**9,
    "MAX_ACTIVE_PER_ADDRESS": 10**9,
    "MAX_STARTS_PER_MINUTE": 10**9,
}
