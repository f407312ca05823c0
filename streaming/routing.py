"""WebSocket routes of the ready-made chat, for a Channels ``URLRouter``."""

from django.urls import path

from .chat import ChatConsumer

websocket_urlpatterns = [
    path("ws/chat/", ChatConsumer.as_asgi()),
]
