"""The test project with ``FLUSH_INTERVAL_MS`` on (50 ms): text a reply's model writes
within the interval goes out as one message (``tests/test_flush_live.py``)."""

from .settings import *  # noqa: F403
from .settings import STREAMING

STREAMING = {**STREAMING, "FLUSH_INTERVAL_MS": 50}
