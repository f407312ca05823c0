"""WebSocket routes of the ready-made chat, for a Channels ``URLRouter``."""

from django.urls import path

from .chat import ChatConsumer
from .chat_ui import AISDKChatConsumer

websocket_urlpatterns = [
    path("ws/chat/", ChatConsumer.as_asgi()),
    # The AI SDK's WebSocketChatTransport.
    path("ws/chat/ui/", AISDKChatConsumer.as_asgi()),
]
