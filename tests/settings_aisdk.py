"""Settings for the AI SDK's Node tests (tests/test_ai_sdk_node.py): the test project with
the demo model paced so a reply lasts long enough (about two seconds) to be cut, resumed and
stopped midway."""

from .settings import *  # noqa: F403
from .settings import STREAMING

STREAMING = {**STREAMING, "DEMO_TOKEN_DELAY": 0.006}
