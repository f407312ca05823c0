"""How a generation's typed events (``streaming.events``) are written on the wire.

Each protocol maps every event once: ``SSEMessages`` to our SSE messages (``SSEView``),
``WebSocketFrames`` to our WebSocket frames (``StreamConsumer``). A new protocol subclasses
``WireProtocol`` and says what each kind of event becomes.
"""

from .base import WireProtocol
from .sse import SSEMessages
from .websocket import WebSocketFrames

__all__ = ["SSEMessages", "WebSocketFrames", "WireProtocol"]
