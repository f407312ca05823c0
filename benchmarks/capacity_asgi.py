"""The capacity benchmark's ASGI application: its HTTP routes and WebSocket consumers.

``STREAMING_BENCH_GC_THRESHOLD="a,b,c"``: ``gc.set_threshold(a, b, c)`` and ``gc.freeze()``
once Django is loaded, as the README's "Deploy" section advises for many open replies.
"""

import gc
import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings_capacity")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from . import loop_stalls  # noqa: E402
from .capacity_app import websocket_urlpatterns  # noqa: E402

if os.environ.get("STREAMING_BENCH_GC_THRESHOLD"):
    gc.set_threshold(*(int(v) for v in os.environ["STREAMING_BENCH_GC_THRESHOLD"].split(",")))
    gc.freeze()

router = ProtocolTypeRouter(
    {"http": django_asgi_app, "websocket": URLRouter(websocket_urlpatterns)}
)


async def application(scope: dict, receive: Any, send: Any) -> None:
    """The router, with ``loop_stalls`` watching the loop when the environment asks."""
    loop_stalls.start()
    await router(scope, receive, send)
