"""Async tests that use the database, each in a thread of its own."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import ThreadSensitiveContext


def own_db_thread(test: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Run an async test in a ``ThreadSensitiveContext``, as daphne runs each request: the
    database connection the async ORM (or the session middleware) opens in its thread goes
    with it. In asgiref's shared thread it would stay open (an in-memory SQLite one
    ignores ``close()``), and a later test without database access would fail on it
    ("Database access not allowed", in Channels' ``close_old_connections``)."""

    @functools.wraps(test)
    async def in_own_thread(*args: Any, **kwargs: Any) -> Any:
        async with ThreadSensitiveContext():
            return await test(*args, **kwargs)

    return in_own_thread
