"""HTTP routes of the ready-made chat: ``include("streaming.urls")``."""

from django.urls import path, re_path

from .chat import ChatView, chat_page
from .chat_ui import AISDKChatView
from .conversations import ConversationListView, ConversationView

app_name = "streaming"

urlpatterns = [
    path("", chat_page, name="chat"),
    path("chat/stream", ChatView.as_view(), name="chat-stream"),
    path("chat/conversations", ConversationListView.as_view(), name="conversations"),
    # Ids match anything (a slash, an empty id) so that a malformed one gets the API's
    # JSON refusal, not Django's HTML 404 page.
    re_path(
        r"^chat/conversations/(?P<conversation_id>[\s\S]*)\Z",
        ConversationView.as_view(),
        name="conversation",
    ),
    # The AI SDK's useChat (DefaultChatTransport): send, then resume / stop a chat's reply
    # (any id, an empty one too, gets the API's JSON refusal).
    path("chat/ui", AISDKChatView.as_view(), name="chat-ui"),
    re_path(
        r"^chat/ui/(?P<chat_id>[\s\S]*)/stream\Z", AISDKChatView.as_view(), name="chat-ui-stream"
    ),
]
