"""The test project's ASGI application: the demo's, plus the WebSocket routes tests drive."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import path  # noqa: E402

from streaming.auth import AuthMiddlewareStack  # noqa: E402
from streaming.routing import unknown_path, websocket_urlpatterns  # noqa: E402
from streaming.shutdown import lifespan  # noqa: E402

from . import chat_ui_views, transport_views  # noqa: E402

websocket_application = AllowedHostsOriginValidator(
    AuthMiddlewareStack(
        URLRouter(
            [
                *websocket_urlpatterns,
                path("ws/scripted/", transport_views.ScriptedConsumer.as_asgi()),
                path("ws/keep/", transport_views.KeepConsumer.as_asgi()),
                path("ws/slow-stop/", transport_views.SlowStopConsumer.as_asgi()),
                path("ws/denied/", transport_views.DeniedConsumer.as_asgi()),
                path("ws/permissions-fail/", transport_views.PermissionsFailConsumer.as_asgi()),
                path("ws/owner-fails/", transport_views.OwnerFailsConsumer.as_asgi()),
                path("ws/openai/", transport_views.OpenAIConsumer.as_asgi()),
                path("ws/openai-keep/", transport_views.KeepOpenAIConsumer.as_asgi()),
                path("ws/echo/", transport_views.EchoConsumer.as_asgi()),
                path("ws/chat-ui/", chat_ui_views.ScriptedChatUIConsumer.as_asgi()),
                unknown_path,
            ]
        )
    )
)

application = ProtocolTypeRouter(
    {"http": django_asgi_app, "websocket": websocket_application, "lifespan": lifespan}
)
