"""The test project on PostgreSQL: the cluster at ``$STREAMING_TEST_POSTGRES``
(``host:port``, as ``tests.postgres_server`` starts it), database ``$DJANGO_DB``."""

import os

from .settings import *  # noqa: F403

_host, _, _port = os.environ.get("STREAMING_TEST_POSTGRES", "127.0.0.1:5432").rpartition(":")

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("DJANGO_DB", "streaming"),
        "USER": "postgres",
        "PASSWORD": "",
        "HOST": _host,
        "PORT": _port,
    }
}
