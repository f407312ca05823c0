"""The browser tests' settings with an event store that takes a second to create a reply's
stream: the response, whose first bytes name the reply, comes a second after its request."""

from .settings import *  # noqa: F403

STREAMING = {
    **STREAMING,  # noqa: F405
    "STORE": {"BACKEND": "tests.slow_create_store.SlowCreateStore", "OPTIONS": {"delay": 1.0}},
}
