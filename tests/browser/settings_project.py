"""Settings of the browser tests with a real project's choices the demo does not make
(``tests/browser/test_project_settings.py``), picked by ``$STREAMING_TEST_PROJECT``:

* ``atomic``: ``ATOMIC_REQUESTS`` on.
"""

import os

from .settings import *  # noqa: F403
from .settings import DATABASES

PROJECT = os.environ.get("STREAMING_TEST_PROJECT", "")

if PROJECT == "atomic":
    DATABASES = {"default": {**DATABASES["default"], "ATOMIC_REQUESTS": True}}
