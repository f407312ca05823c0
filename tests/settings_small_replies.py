"""The test project with replies capped at 400 characters (``MAX_REPLY_CHARS``), so that a
socket's resumes reach that cap within a few replies."""

from .settings import *  # noqa: F403
from .settings import STREAMING

STREAMING = {**STREAMING, "MAX_REPLY_CHARS": 400}
