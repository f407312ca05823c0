"""The test project on PostgreSQL with its sessions there (as the deploy keeps them) and
an event store that holds every reply at its start (``HeldCreateStore``)."""

from .settings_postgres_sessions import *  # noqa: F403
from .settings_postgres_sessions import STREAMING

STREAMING = {**STREAMING, "STORE": {"BACKEND": "tests.held_create_store.HeldCreateStore"}}
