"""Settings of the browser tests with the sessions in the database, as the deploy keeps
them (``deploy/settings_production.py``), where the demo signs them into a cookie."""

from .settings import *  # noqa: F403

SESSION_ENGINE = "django.contrib.sessions.backends.db"
