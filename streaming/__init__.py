"""LLM token streaming for Django: Server-Sent Events, WebSockets and extractors.

Names are imported lazily, so ``streaming.extractors`` and ``streaming.sse`` work in
plain Python without Django.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .errors import StreamError, StreamErrorCode
    from .response import SSEResponse, sse_response
    from .sse import ServerSentEvent
    from .stream import Stream

#: The package version (pyproject.toml reads it from here).
__version__ = "0.1.0"

_EXPORTS = {
    "Stream": ".stream",
    "ServerSentEvent": ".sse",
    "StreamError": ".errors",
    "StreamErrorCode": ".errors",
    "SSEResponse": ".response",
    "sse_response": ".response",
}

__all__ = [
    "SSEResponse",
    "ServerSentEvent",
    "Stream",
    "StreamError",
    "StreamErrorCode",
    "sse_response",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'streaming' has no attribute {name!r}")
    return getattr(import_module(module, __name__), name)
