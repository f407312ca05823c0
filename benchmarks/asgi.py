"""The benchmark project's ASGI application: the benchmark HTTP routes and consumers."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from .ws_consumers import OurConsumer, RawConsumer  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": URLRouter(
            [path("ws/raw/", RawConsumer.as_asgi()), path("ws/ours/", OurConsumer.as_asgi())]
        ),
    }
)
