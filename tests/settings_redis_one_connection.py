"""The Redis test project with a pool of one connection, waited for 0.3 s: one command
that hangs (a paused ``redis-server``) keeps every other request of the process waiting
for the pool, as a process overloaded with requests would."""

from .settings_redis import *  # noqa: F403
from .settings_redis import STREAMING

STREAMING = {
    **STREAMING,
    "STORE": {
        **STREAMING["STORE"],
        "OPTIONS": {
            **STREAMING["STORE"]["OPTIONS"],
            "max_connections": 1,
            "pool_timeout": 0.3,
            "socket_timeout": 5.0,
        },
    },
}
