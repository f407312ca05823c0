"""HTTP routes of the ready-made chat: ``include("streaming.urls")``."""

from django.urls import path

from .chat import ChatView, chat_page

app_name = "streaming"

urlpatterns = [
    path("", chat_page, name="chat"),
    path("chat/stream", ChatView.as_view(), name="chat-stream"),
]
