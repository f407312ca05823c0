"""The test project on PostgreSQL with its sessions there too (Django's database backend,
as the deploy keeps them): a database outage then fails every request's session."""

from .settings_postgres import *  # noqa: F403

SESSION_ENGINE = "django.contrib.sessions.backends.db"
