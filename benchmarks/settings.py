"""Settings for the benchmarks: the demo project with the benchmark routes."""

from project.settings import *  # noqa: F403

DEBUG = False
# No middleware: each one costs a thread hop per request under ASGI, the same for both
# sides, which would hide what the streaming itself costs.
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "benchmarks.urls"
LOGGING = {"version": 1, "disable_existing_loggers": False}
