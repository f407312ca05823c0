"""ASGI entry point: HTTP through Django, WebSockets through Channels.

No channel layer: replies need none (see the README's Deploy section). The collector
settings are the ones that section gives for a process holding many open sockets.
"""

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
django_asgi_app = get_asgi_application()
gc.set_threshold(20_000, 5, 100)  # young: 20,000 allocations; full: rarely
gc.freeze()  # what was loaded at start is never scanned again

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from streaming.auth import AuthMiddlewareStack  # noqa: E402
from streaming.routing import unknown_path, websocket_urlpatterns  # noqa: E402
from streaming.shutdown import lifespan  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter([*websocket_urlpatterns, unknown_path]))
        ),
        # uvicorn and hypercorn: a clean stop on SIGTERM, as under daphne (which sends none)
        "lifespan": lifespan,
    }
)
