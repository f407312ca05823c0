"""HTTP routes of the ready-made chat: ``include("streaming.urls")``."""

from django.urls import path

from .chat import ChatView, chat_page
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
]
