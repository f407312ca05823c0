"""The test project with its sessions in the database (Django's ``db`` backend, as the
deploy keeps them), on SQLite."""

from .settings import *  # noqa: F403

SESSION_ENGINE = "django.contrib.sessions.backends.db"
