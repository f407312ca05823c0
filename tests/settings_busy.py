"""The test project with the limits on (``tests.settings_limits``) and at most two
replies running in the process (``MAX_ACTIVE_PER_PROCESS``)."""

from .settings_limits import *  # noqa: F403
from .settings_limits import STREAMING

STREAMING = {**STREAMING, "MAX_ACTIVE_PER_PROCESS": 2}
