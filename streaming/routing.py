"""WebSocket routes of the ready-made chat, for a Channels ``URLRouter``; and
``unknown_path``, to put last in it."""

from channels.generic.websocket import AsyncWebsocketConsumer
from django.urls import path, re_path

from .chat import ChatConsumer
from .chat_ui import AISDKChatConsumer

websocket_urlpatterns = [
    path("ws/chat/", ChatConsumer.as_asgi()),
    # The AI SDK's WebSocketChatTransport.
    path("ws/chat/ui/", AISDKChatConsumer.as_asgi()),
]


class UnknownPathConsumer(AsyncWebsocketConsumer):
    """A handshake to a path no route serves (``/ws/chat`` without its slash): refused,
    which the server answers with HTTP 403. Without it Channels raises "No route found",
    a 500 and a traceback in the log for every such handshake, anyone's to send."""

    async def connect(self) -> None:
        await self.close()


#: Last in a ``URLRouter``: every path the routes before it do not serve.
unknown_path = re_path(r"", UnknownPathConsumer.as_asgi())
