"""System checks for settings that would break event streams."""

from __future__ import annotations

import django
import pytest
from django.conf import settings
from django.db.utils import ConnectionHandler
from django.test import override_settings

from streaming.checks import (
    check_connection_pool,
    check_middleware,
    check_runserver,
    check_sessions,
    check_settings,
    check_sqlite_locking,
)

GZIP = "django.middleware.gzip.GZipMiddleware"


@pytest.mark.skipif(django.VERSION >= (6, 1), reason="GZipMiddleware streams since 6.1")
def test_gzip_middleware_warns_before_django_6_1() -> None:
    with override_settings(MIDDLEWARE=[GZIP]):
        assert [m.id for m in check_middleware()] == ["streaming.W001"]


def test_known_buffering_middleware_warns() -> None:
    with override_settings(MIDDLEWARE=["django_brotli.middleware.BrotliMiddleware"]):
        assert [m.id for m in check_middleware()] == ["streaming.W002"]


def test_the_demo_settings_pass_every_check() -> None:
    assert (
        check_middleware()
        + check_runserver()
        + check_settings()
        + check_sqlite_locking()
        + check_connection_pool()
        == []
    )


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        ("KEEPALIVE_SECONDS", "Did you mean 'KEEPALIVE'?"),
        ("max_prompt_length", "Did you mean 'MAX_PROMPT_LENGTH'?"),
        ("MAX_PROMPT_LENGHT", "Did you mean 'MAX_PROMPT_LENGTH'?"),
        ("FLUSH_INTERVAL", "Did you mean 'FLUSH_INTERVAL_MS'?"),
        ("COLOUR", "Known settings: "),
        (7, "Known settings: "),
    ],
)
def test_an_unknown_setting_names_the_one_it_likely_meant(key: object, hint: str) -> None:
    with override_settings(STREAMING={key: 1}):
        [error] = check_settings()
    assert error.id == "streaming.E002" and error.hint.startswith(hint)
    if hint == "Known settings: ":
        assert "MAX_PROMPT_LENGTH" in error.hint


def test_daphne_after_staticfiles_warns() -> None:
    with override_settings(INSTALLED_APPS=["django.contrib.staticfiles", "daphne", "streaming"]):
        assert [m.id for m in check_runserver()] == ["streaming.W003"]


def test_an_asgi_project_without_daphne_warns_that_runserver_will_not_stream() -> None:
    apps = ["django.contrib.staticfiles", "streaming"]
    with override_settings(INSTALLED_APPS=apps, ASGI_APPLICATION="project.asgi.application"):
        assert [m.id for m in check_runserver()] == ["streaming.W006"]
    with override_settings(INSTALLED_APPS=apps, ASGI_APPLICATION=None):
        assert check_runserver() == []
    with override_settings(INSTALLED_APPS=["daphne", *apps]):
        assert check_runserver() == []


@pytest.mark.parametrize(
    ("value", "ids"),
    [
        ("not a dict", ["streaming.E001"]),
        ({"KEEPALIVE_SECONDS": 1}, ["streaming.E002"]),
        ({"COLOUR": 1, 7: 2}, ["streaming.E002", "streaming.E002"]),
        ({"KEEPALIVE": 0}, ["streaming.E003"]),
        ({"MAX_QUEUE": 1.5}, ["streaming.E003"]),
        ({"MAX_BUFFER": True}, ["streaming.E003"]),
        ({"KEEP_GRACE": -1}, ["streaming.E003"]),
        ({"MAX_REPLY_CHARS": 0}, ["streaming.E003"]),
        ({"MAX_REPLY_CHARS": 2.5}, ["streaming.E003"]),
        ({"MAX_REPLY_SECONDS": "600"}, ["streaming.E003"]),
        ({"LEASE_SECONDS": 0}, ["streaming.E003"]),
        ({"SHUTDOWN_TIMEOUT": None}, ["streaming.E003"]),
        ({"MAX_REPLY_CHARS": None, "MAX_REPLY_SECONDS": None}, []),
        ({"STORE": "redis"}, ["streaming.E004"]),
        ({"STORE": {"BACKEND": "streaming.store.nope.Store"}}, ["streaming.E004"]),
        ({"STORE": {"OPTIONS": {"ttl_finished": -5}}}, ["streaming.E004"]),
        ({"STORE": {"OPTIONS": {"colour": "blue"}}}, ["streaming.E004"]),
        ({"STORE": {"OPTIONS": {"ttl_finished": "300"}}}, ["streaming.E004"]),
        ({"STORE": {"OPTIONS": {"ttl_active": float("inf")}}}, ["streaming.E004"]),
        ({"STORE": {"OPTIONS": {"max_events": 1.5}}}, ["streaming.E004"]),
        ({"STORE": {"OPTIONS": {"max_batch": True}}}, ["streaming.E004"]),
        *(
            (
                {"STORE": {"BACKEND": "streaming.store.redis.RedisStore", "OPTIONS": options}},
                ["streaming.E004"],
            )
            for options in (
                {"pool_timeout": "5"},
                {"socket_timeout": None},
                {"connect_timeout": float("nan")},
                {"max_connections": "50"},
                {"max_connections": 0},
                {"url": None},
                {"key_prefix": 7},
                {"process_leases": "yes"},
            )
        ),
        (
            {"STORE": {"BACKEND": "streaming.store.redis.RedisStore", "OPTIONS": {}}},
            [],
        ),
        (
            {
                "STORE": {
                    "BACKEND": "streaming.store.redis.RedisStore",
                    "OPTIONS": {"process_leases": True},
                }
            },
            [],
        ),
        ({"MAX_ACTIVE_PER_OWNER": 0}, ["streaming.E003"]),
        ({"MAX_ACTIVE_PER_ADDRESS": "10"}, ["streaming.E003"]),
        ({"MAX_STARTS_PER_MINUTE": 2.5}, ["streaming.E003"]),
        ({"MAX_CONVERSATIONS_PER_OWNER": 0}, ["streaming.E003"]),
        ({"MAX_CONVERSATIONS_PER_MINUTE": "20"}, ["streaming.E003"]),
        ({"MAX_ACTIVE_PER_OWNER": None, "MAX_STARTS_PER_MINUTE": None}, []),
        ({"MAX_ACTIVE_PER_PROCESS": 500}, []),
        ({"MAX_ACTIVE_PER_PROCESS": 0}, ["streaming.E003"]),
        ({"MAX_ACTIVE_PER_PROCESS": "500"}, ["streaming.E003"]),
        ({"FLUSH_INTERVAL_MS": 16}, []),
        ({"FLUSH_INTERVAL_MS": None}, []),
        ({"FLUSH_INTERVAL_MS": -1}, ["streaming.E003"]),
        ({"FLUSH_INTERVAL_MS": "16"}, ["streaming.E003"]),
        ({"STORE_BATCH_MS": 0}, []),
        ({"STORE_BATCH_MS": 5}, []),
        ({"STORE_BATCH_MS": 5000}, ["streaming.E003"]),
        ({"STORE_BATCH_MS": True}, ["streaming.E003"]),
        ({"TRUSTED_PROXIES": "10.0.0.1"}, ["streaming.E005"]),
        ({"TRUSTED_PROXIES": ["10.0.0.1", "proxy.local", "10.0.0.0/33"]}, ["streaming.E005"] * 2),
        ({"TRUSTED_PROXIES": ["10.0.0.1", "10.1.0.0/16", "::1", "unix"]}, []),
        ({"CLIENT_ADDRESS_HEADER": "X_Forwarded_For"}, ["streaming.E005"]),
        ({"CLIENT_ADDRESS_HEADER": ""}, ["streaming.E005"]),
        ({"CLIENT_ADDRESS_HEADER": "X Forwarded For"}, ["streaming.E005"]),
        ({"CLIENT_ADDRESS_HEADER": "X-Real-IP"}, []),
        ({"KEEPALIVE": float("inf")}, ["streaming.E003"]),
        ({"CANCEL_GRACE": float("nan")}, ["streaming.E003"]),
        ({"MAX_REPLY_SECONDS": float("inf")}, ["streaming.E003"]),
        ({"MAX_REPLY_CHARS": 1e6}, ["streaming.E003"]),
        ({"STORE": {"backend": "streaming.store.memory.MemoryStore"}}, ["streaming.E004"]),
        ({"STORE": {"OPTIONS": {}}}, ["streaming.E004"]),
        (
            {"STORE": {"BACKEND": "streaming.store.memory.MemoryStore", "options": {}}},
            ["streaming.E004"],
        ),
    ],
)
def test_misconfigured_streaming_settings_are_errors(value: object, ids: list[str]) -> None:
    with override_settings(STREAMING=value):
        assert [m.id for m in check_settings()] == ids


def test_a_store_option_of_the_wrong_type_names_itself() -> None:
    store = {"BACKEND": "streaming.store.redis.RedisStore", "OPTIONS": {"pool_timeout": "5"}}
    with override_settings(STREAMING={"STORE": store}):
        [message] = check_settings()
    assert "pool_timeout must be a positive number of seconds, not '5'" in message.msg


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
@pytest.mark.parametrize(
    ("options", "ids"),
    [
        ({}, ["streaming.W004"]),
        ({"transaction_mode": "DEFERRED"}, ["streaming.W004"]),
        ({"transaction_mode": "IMMEDIATE"}, []),
        ({"transaction_mode": "EXCLUSIVE"}, []),
    ],
)
def test_sqlite_without_an_immediate_write_lock_warns(
    options: dict[str, str], ids: list[str]
) -> None:
    database = {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:", "OPTIONS": options}
    with override_settings(DATABASES={"default": database}):
        assert [m.id for m in check_sqlite_locking()] == ids


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_postgresql_needs_no_write_lock_option() -> None:
    database = {"ENGINE": "django.db.backends.postgresql", "NAME": "chat"}
    with override_settings(DATABASES={"default": database}):
        assert check_sqlite_locking() == []


#: Whether this Django gives psycopg's pool a ``check`` of its own, whatever the options say.
DJANGO_SETS_POOL_CHECK = django.VERSION < (6, 1)


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
@pytest.mark.parametrize(
    ("engine", "pool", "ids"),
    [
        (
            "django.db.backends.postgresql",
            {"check": print, "max_size": 4},
            ["streaming.E007"] if DJANGO_SETS_POOL_CHECK else [],
        ),
        ("django.db.backends.postgresql", {"max_size": 4}, []),
        ("django.db.backends.postgresql", True, []),
        ("django.db.backends.sqlite3", {"check": print}, []),
    ],
)
def test_a_pool_check_option_is_an_error_where_django_passes_its_own(
    engine: str, pool: object, ids: list[str]
) -> None:
    """Before 6.1, Django gives psycopg's pool ``check=`` itself (from
    ``CONN_HEALTH_CHECKS``): one more among the pool's options is a ``TypeError`` on every
    connection. 6.1 lets the pool's own win."""
    database = {"ENGINE": engine, "NAME": "chat", "OPTIONS": {"pool": pool}}
    with override_settings(DATABASES={"default": database}):
        assert [m.id for m in check_connection_pool()] == ids


def test_this_django_makes_a_pool_with_a_check_option_as_the_check_expects() -> None:
    """The check's premise, against the Django installed: making a pool whose options have
    a ``check`` fails with ``TypeError`` exactly where ``streaming.E007`` says so."""
    pytest.importorskip("psycopg_pool")
    options = {"pool": {"check": print}}
    pooled = {"ENGINE": "django.db.backends.postgresql", "NAME": "chat", "OPTIONS": options}
    unused = {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
    wrapper = ConnectionHandler({"default": unused, "pool_check": pooled})["pool_check"]
    if DJANGO_SETS_POOL_CHECK:
        with pytest.raises(TypeError, match="check"):
            wrapper.pool  # noqa: B018 - the property makes the pool
    else:
        try:
            assert wrapper.pool.closed  # made, not opened
        finally:
            type(wrapper)._connection_pools.pop("pool_check").close()


@pytest.mark.parametrize(
    ("backend", "mentions_redis"),
    [("streaming.store.nope.Store", False), ("streaming.store.redis_nope.RedisStore", True)],
)
def test_the_redis_extra_is_named_only_for_a_redis_store_that_does_not_import(
    backend: str, mentions_redis: bool
) -> None:
    with override_settings(STREAMING={"STORE": {"BACKEND": backend}}):
        [message] = check_settings()
    assert message.id == "streaming.E004"
    assert ("[redis] extra" in (message.hint or "")) is mentions_redis


def test_sessions_off_warn() -> None:
    """Without them an anonymous visitor is a stranger on their next request."""
    assert check_sessions() == []
    without = [m for m in settings.MIDDLEWARE if "SessionMiddleware" not in m]
    with override_settings(MIDDLEWARE=without):
        assert [m.id for m in check_sessions()] == ["streaming.W005"]
