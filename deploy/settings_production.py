"""Production settings for the demo project behind nginx (see the README's "Deploy").

Every server process, on one machine or on several, must run with the same values: the
same ``SECRET_KEY`` (it signs the session and CSRF cookies any process may receive), the
same Redis (the replies' events, so a reply started on one process resumes or is cancelled
on another) and the same database (which also holds the sessions, and with them an
anonymous visitor's owner token). They come from the environment (systemd:
``EnvironmentFile=/etc/streaming/env``):

    DJANGO_SECRET_KEY=...                  required: a long random string
    DJANGO_ALLOWED_HOSTS=chat.example.com  comma-separated
    STREAMING_REDIS_URL=redis://127.0.0.1:6379/0
    DJANGO_DB=/var/lib/streaming/db.sqlite3  one machine; several: PostgreSQL (README)
    DJANGO_STATIC_ROOT=/srv/streaming/staticfiles
    STREAMING_TRUSTED_PROXIES=10.0.0.1     nginx's address, when it runs on another machine

Use it with ``DJANGO_SETTINGS_MODULE=deploy.settings_production``.
"""

import os

from project.settings import *  # noqa: F403
from project.settings import BASE_DIR, MIDDLEWARE, STREAMING


def _env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]
DEBUG = False
ALLOWED_HOSTS = _env_list("DJANGO_ALLOWED_HOSTS")
CSRF_TRUSTED_ORIGINS = _env_list("DJANGO_CSRF_TRUSTED_ORIGINS") or [
    f"https://{host}" for host in ALLOWED_HOSTS
]

# nginx terminates TLS and says so in X-Forwarded-Proto (it sets the header itself, so a
# client cannot): Django then knows the request was HTTPS and sends cookies only over it.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_SSL_REDIRECT = True  # nginx redirects already; this covers a request that bypasses it
# Browsers remember to use HTTPS only for this long: raise it once HTTPS works everywhere.
SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS", "3600"))
MIDDLEWARE = [*MIDDLEWARE, "django.middleware.clickjacking.XFrameOptionsMiddleware"]

# Redis holds the replies' events (and the limits' counts), which every process shares.
# Sessions are in the database (Django's default backend; the demo signs them into a
# cookie), which every process shares too: a Redis restart, flush or outage then loses
# running replies only, never the sessions that own anonymous visitors' conversations,
# and the page and conversations stay up.
SESSION_ENGINE = "django.contrib.sessions.backends.db"
REDIS_URL = os.environ.get("STREAMING_REDIS_URL", "redis://127.0.0.1:6379/0")
STREAMING = {
    **STREAMING,
    "STORE": {"BACKEND": "streaming.store.redis.RedisStore", "OPTIONS": {"url": REDIS_URL}},
    # nginx, on this machine: the client is the right-most X-Forwarded-For address that is
    # not nginx's. Without it every client would share nginx's address and its limits
    # (MAX_ACTIVE_PER_ADDRESS, MAX_STARTS_PER_MINUTE). nginx elsewhere: list its address.
    "TRUSTED_PROXIES": _env_list("STREAMING_TRUSTED_PROXIES") or ["127.0.0.1"],
}

# `manage.py collectstatic` copies the app's CSS and JavaScript here; nginx serves them.
STATIC_ROOT = os.environ.get("DJANGO_STATIC_ROOT", str(BASE_DIR / "staticfiles"))

# To stderr, which systemd's journal keeps: errors of requests (with tracebacks), and the
# app's own messages (failed replies, an unreachable store).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "{levelname} {name} {message}", "style": "{"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
    "loggers": {"streaming": {"handlers": ["stderr"], "level": "INFO", "propagate": False}},
}
