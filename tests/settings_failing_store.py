"""The test project with an event store whose writes fail mid-reply (``FailingStore``)."""

from .settings import *  # noqa: F403
from .settings import STREAMING

STREAMING = {
    **STREAMING,
    "STORE": {"BACKEND": "tests.failing_store.FailingStore", "OPTIONS": {"fail_at": 3}},
}
