"""System checks for settings that would break or buffer event streams."""

from __future__ import annotations

import difflib
import math
import re
from typing import Any

import django
from django.apps import apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.db import router
from django.utils.module_loading import import_string

from .addresses import check_trusted_proxies
from .conf import DEFAULTS

# Middleware that compresses or collects whole bodies, so events arrive late or never.
BUFFERING_MIDDLEWARE = {
    "django_brotli.middleware.BrotliMiddleware": "compresses whole responses",
    "compression_middleware.middleware.CompressionMiddleware": "compresses whole responses",
    "django_minify_html.middleware.MinifyHtmlMiddleware": "collects response bodies",
}

#: An HTTP header name: RFC 9110 token characters, without ``_`` (which servers drop).
HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^`|~-]+")
_POSITIVE_NUMBERS = (
    "KEEPALIVE",
    "CLEANUP_TIMEOUT",
    "WS_RATE",
    "UPSTREAM_CONNECT_TIMEOUT",
    "UPSTREAM_READ_TIMEOUT",
    "DEMO_TOKEN_DELAY",
    "KEEP_GRACE",
    "CANCEL_GRACE",
    "LEASE_SECONDS",
    "SHUTDOWN_TIMEOUT",
)
#: Seconds that ``None`` turns off.
_OPTIONAL_POSITIVE_NUMBERS = ("MAX_REPLY_SECONDS",)
_POSITIVE_INTS = (
    "MAX_QUEUE",
    "MAX_BATCH",
    "MAX_PROMPT_LENGTH",
    "WS_BURST",
    "WS_MAX_PENDING",
    "SAFE_MARGIN",
    "MAX_BUFFER",
    "MAX_CHUNK_SIZE",
    "UPSTREAM_MAX_LINE",
    "HISTORY_MAX_CHARS",
)
# Limits that ``None`` turns off.
_OPTIONAL_POSITIVE_INTS = (
    "MAX_ACTIVE_PER_OWNER",
    "MAX_ACTIVE_PER_ADDRESS",
    "MAX_STARTS_PER_MINUTE",
    "MAX_ACTIVE_PER_PROCESS",
    "MAX_REPLY_CHARS",
    "MAX_CONVERSATIONS_PER_OWNER",
    "MAX_CONVERSATIONS_PER_MINUTE",
)


@register(Tags.compatibility)
def check_middleware(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Warn about middleware known to buffer or corrupt ``text/event-stream`` bodies."""
    messages: list[CheckMessage] = []
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    if "django.middleware.gzip.GZipMiddleware" in middleware and django.VERSION < (6, 1):
        messages.append(
            Warning(
                "GZipMiddleware buffers or breaks event streams before Django 6.1.",
                hint="Remove it, or compress in the reverse proxy and exclude "
                "text/event-stream there.",
                id="streaming.W001",
            )
        )
    for path, why in BUFFERING_MIDDLEWARE.items():
        if path in middleware:
            messages.append(
                Warning(
                    f"{path} {why}, so event streams arrive late or all at once.",
                    hint="Remove it or exclude streaming views from it.",
                    id="streaming.W002",
                )
            )
    return messages


@register(Tags.compatibility)
def check_runserver(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """``runserver`` only serves ASGI (and so streams) if daphne is installed, before
    staticfiles. A project with an ``ASGI_APPLICATION`` but without daphne is warned
    too: its ``runserver`` is the WSGI one, under which every reply is refused."""
    apps = list(settings.INSTALLED_APPS)
    static = "django.contrib.staticfiles"
    if "daphne" not in apps and getattr(settings, "ASGI_APPLICATION", None):
        return [
            Warning(
                "'daphne' is not in INSTALLED_APPS, so runserver is the WSGI one: every "
                "reply is refused (500 'Following a reply needs an ASGI server').",
                hint="Put 'daphne' at the top of INSTALLED_APPS, or silence this warning "
                "if you only serve the project with another ASGI server (uvicorn…).",
                id="streaming.W006",
            )
        ]
    if "daphne" in apps and static in apps and apps.index("daphne") > apps.index(static):
        return [
            Warning(
                "'daphne' is listed after 'django.contrib.staticfiles' in INSTALLED_APPS, "
                "so runserver is the WSGI one and buffers async event streams.",
                hint="Move 'daphne' to the top of INSTALLED_APPS.",
                id="streaming.W003",
            )
        ]
    return []


@register()
def check_sqlite_locking(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Replies store their messages from many requests at once: on SQLite, a transaction
    that starts reading and then writes fails with "database is locked" when another
    writes meanwhile, instead of waiting, unless it takes the lock when it begins."""
    from .models import Conversation

    database = settings.DATABASES.get(router.db_for_write(Conversation), {})
    sqlite = database.get("ENGINE") == "django.db.backends.sqlite3"
    mode = (database.get("OPTIONS") or {}).get("transaction_mode")
    if not sqlite or mode in {"IMMEDIATE", "EXCLUSIVE"}:
        return []
    return [
        Warning(
            "The chat's SQLite database does not take its write lock when a transaction "
            "begins: replies that end together fail with 'database is locked' and their "
            "clients get STORE_UNAVAILABLE instead of the end.",
            hint='Add "OPTIONS": {"transaction_mode": "IMMEDIATE"} to the database in '
            "DATABASES, or use PostgreSQL.",
            id="streaming.W004",
        )
    ]


@register()
def check_connection_pool(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Before 6.1, Django makes a PostgreSQL pool (``OPTIONS["pool"]``) with a ``check`` of
    its own (``CONN_HEALTH_CHECKS``'s), so a ``check`` among the pool's options fails every
    connection with a ``TypeError``: every request a 500, not the database's 503. (6.1
    lets the pool's own ``check`` win.)"""
    messages: list[CheckMessage] = []
    if django.VERSION >= (6, 1):
        return messages
    for alias, database in settings.DATABASES.items():
        pool = (database.get("OPTIONS") or {}).get("pool")
        if isinstance(pool, dict) and "check" in pool and _postgresql(database.get("ENGINE", "")):
            messages.append(
                Error(
                    f'DATABASES["{alias}"]["OPTIONS"]["pool"] has a "check": Django gives the '
                    "pool its own, and cannot make it (TypeError on the first connection).",
                    hint=f'Remove "check"; "CONN_HEALTH_CHECKS": True on DATABASES["{alias}"] '
                    "has the pool check each connection before handing it out.",
                    id="streaming.E007",
                )
            )
    return messages


def _postgresql(engine: str) -> bool:
    """Whether the database backend ``engine`` is PostgreSQL's (or built on it: PostGIS)."""
    try:
        return bool(import_string(f"{engine}.base.DatabaseWrapper").vendor == "postgresql")
    except ImportError:
        return False


@register()
def check_sessions(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """An anonymous visitor owns their replies and conversations through the session:
    without sessions, each request is a new owner (``connection:<random>``)."""
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    if (
        apps.is_installed("django.contrib.sessions")
        and "django.contrib.sessions.middleware.SessionMiddleware" in middleware
    ):
        return []
    return [
        Warning(
            "Sessions are off: an anonymous visitor is a new owner on every request and "
            "every socket, so their conversations are never listed, a second prompt in one "
            "is NOT_FOUND, and a reply cannot be resumed or stopped from another request.",
            hint='Install "django.contrib.sessions" and its SessionMiddleware (as '
            "startproject does), or let only logged-in users chat.",
            id="streaming.W005",
        )
    ]


def unknown_hint(key: object) -> str:
    """The known setting a misspelt ``key`` most likely meant (one it lengthens or
    shortens, else a close spelling), else them all."""
    name = str(key).upper()
    close = [k for k in DEFAULTS if name and (name.startswith(k) or k.startswith(name))]
    close = close or difflib.get_close_matches(name, DEFAULTS, n=1, cutoff=0.8)
    if close:
        return f"Did you mean {max(close, key=len)!r}?"
    return f"Known settings: {', '.join(sorted(DEFAULTS))}."


@register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """``STREAMING`` must be a dict of known keys with sensible values."""
    user = getattr(settings, "STREAMING", {})
    if not isinstance(user, dict):
        return [Error("settings.STREAMING must be a dict.", id="streaming.E001")]
    errors: list[CheckMessage] = []
    for key in sorted(set(user) - set(DEFAULTS), key=str):
        errors.append(
            Error(
                f"Unknown STREAMING setting {key!r}.", hint=unknown_hint(key), id="streaming.E002"
            )
        )
    for key in _POSITIVE_NUMBERS:
        if not _positive_number(user.get(key, DEFAULTS[key])):
            errors.append(
                Error(f"STREAMING[{key!r}] must be a finite positive number.", id="streaming.E003")
            )
    for key in _POSITIVE_INTS:
        value = user.get(key, DEFAULTS[key])
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            errors.append(
                Error(f"STREAMING[{key!r}] must be a positive integer.", id="streaming.E003")
            )
    for key in _OPTIONAL_POSITIVE_INTS:
        value = user.get(key, DEFAULTS[key])
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value <= 0
        ):
            errors.append(
                Error(
                    f"STREAMING[{key!r}] must be a positive integer, or None for no limit.",
                    id="streaming.E003",
                )
            )
    for key in _OPTIONAL_POSITIVE_NUMBERS:
        value = user.get(key, DEFAULTS[key])
        if value is not None and not _positive_number(value):
            errors.append(
                Error(
                    f"STREAMING[{key!r}] must be a finite positive number, or None for no limit.",
                    id="streaming.E003",
                )
            )
    errors += _check_client_address(user)
    for key, hint in (
        ("FLUSH_INTERVAL_MS", "For example 16 (one display frame)."),
        ("STORE_BATCH_MS", "For example 10; 0 writes at the next event-loop turn."),
    ):
        value = user.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1000
        ):
            errors.append(
                Error(
                    f"STREAMING[{key!r}] must be a number of milliseconds from 0 to 1000, "
                    "or None (off).",
                    hint=hint,
                    id="streaming.E003",
                )
            )
    return (
        errors
        + _check_store(user.get("STORE", DEFAULTS["STORE"]))
        + _check_model(user.get("MODEL", DEFAULTS["MODEL"]))
    )


def _positive_number(value: Any) -> bool:
    """An int or float above 0 and finite (``inf`` and ``nan`` break the timers)."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def _check_client_address(user: dict[str, Any]) -> list[CheckMessage]:
    """``TRUSTED_PROXIES`` must be IPs or networks, ``CLIENT_ADDRESS_HEADER`` a header name."""
    errors: list[CheckMessage] = [
        Error(
            f'STREAMING["TRUSTED_PROXIES"] {problem}.',
            hint='For example ["127.0.0.1", "10.0.0.0/8"]: the reverse proxies in front of '
            "the server, whose forwarded header names the client.",
            id="streaming.E005",
        )
        for problem in check_trusted_proxies(user.get("TRUSTED_PROXIES", []))
    ]
    header = user.get("CLIENT_ADDRESS_HEADER", DEFAULTS["CLIENT_ADDRESS_HEADER"])
    if not isinstance(header, str) or not HEADER_NAME.fullmatch(header):
        errors.append(
            Error(
                'STREAMING["CLIENT_ADDRESS_HEADER"] must be an HTTP header name.',
                hint='For example "X-Forwarded-For" or "X-Real-IP".',
                id="streaming.E005",
            )
        )
    return errors


def _check_store(store: Any) -> list[CheckMessage]:
    """The event store's backend must import and its options must build it."""
    hint = 'For example {"BACKEND": "streaming.store.redis.RedisStore", "OPTIONS": {"url": ...}}.'
    if (
        not isinstance(store, dict)
        or not isinstance(store.get("BACKEND"), str)
        or not isinstance(store.get("OPTIONS", {}), dict)
        or set(store) - {"BACKEND", "OPTIONS"}
    ):
        return [
            Error(
                'STREAMING["STORE"] must be a dict of "BACKEND" (a dotted path) and '
                '"OPTIONS" (a dict), and nothing else.',
                hint=hint,
                id="streaming.E004",
            )
        ]
    try:
        backend = import_string(store["BACKEND"])
        backend(**store.get("OPTIONS", {}))
    except Exception as exc:
        if isinstance(exc, ImportError) and "redis" in store["BACKEND"]:
            hint += " The Redis store needs redis-py: install the package with its [redis] extra."
        return [Error(f'STREAMING["STORE"] cannot be built: {exc}', hint=hint, id="streaming.E004")]
    return []


def _check_model(model: Any) -> list[CheckMessage]:
    """The chat's model: None, an OpenAI-compatible server's dict, or a factory's path."""
    from .sources.model import ModelSettingError, model_factory

    try:
        model_factory(model)
    except ModelSettingError as exc:
        return [
            Error(
                f'STREAMING["MODEL"] is invalid: {exc}',
                hint='None, {"BASE_URL": ..., "NAME": ..., "API_KEY_ENV": "OPENAI_API_KEY"} '
                'or "yourapp.models.chat_source" (a callable).',
                id="streaming.E006",
            )
        ]
    return []
