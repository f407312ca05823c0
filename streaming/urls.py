"""HTTP routes of the ready-made chat: ``include("streaming.urls")``."""

from django.urls import path

from .chat import ChatView, chat_page
from .chat_ui import AISDKChatView
from .conversations import ConversationListView, ConversationView

app_name = "streaming"

urlpatterns = [
    path("", chat_page, name="chat"),
    path("chat/stream", ChatView.as_view(), name="chat-stream"),
    path("chat/conversations", ConversationListView.as_view(), name="conversations"),
    path(
        "chat/conversations/<str:conversation_id>",
        ConversationView.as_view(),
        name="conversation",
    ),
    # The AI SDK's useChat (DefaultChatTransport): send, then resume / stop a chat's reply.
    path("chat/ui", AISDKChatView.as_view(), name="chat-ui"),
    path("chat/ui/<str:chat_id>/stream", AISDKChatView.as_view(), name="chat-ui-stream"),
]
