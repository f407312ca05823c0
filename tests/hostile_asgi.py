"""ASGI application of ``tests.settings_hostile``: HTTP through Django, the hostile test
consumers and the chat's through Channels."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings_hostile")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import path  # noqa: E402

from streaming.auth import AuthMiddlewareStack  # noqa: E402
from streaming.routing import websocket_urlpatterns  # noqa: E402
from streaming.shutdown import lifespan  # noqa: E402

from . import hostile_views  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(
                URLRouter(
                    [
                        path("ws/h/openai/", hostile_views.OpenAIPlainConsumer.as_asgi()),
                        path("ws/h/slow/", hostile_views.SlowConsumer.as_asgi()),
                        path("ws/h/open/", hostile_views.OpenSlowConsumer.as_asgi()),
                        *websocket_urlpatterns,
                    ]
                )
            )
        ),
        "lifespan": lifespan,
    }
)
