"""Resumable event stores: the log each generation writes and transports read.

``get_store()`` returns the store configured in ``STREAMING["STORE"]``::

    STREAMING = {"STORE": {
        "BACKEND": "streaming.store.redis.RedisStore",
        "OPTIONS": {"url": "redis://127.0.0.1:6379/0", "ttl_finished": 300},
    }}

The default is ``MemoryStore`` (one process). A backend that holds connections
(``loop_bound``) gets one instance per event loop, the others one per process.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from django.utils.module_loading import import_string

from streaming.conf import setting

from .base import EventStore, StoredEvent
from .memory import MemoryStore

# Keyed by the configuration, so ``override_settings`` picks a new store.
_process_stores: dict[str, EventStore] = {}
_loop_stores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, EventStore]] = (
    weakref.WeakKeyDictionary()
)


def get_store() -> EventStore:
    """The configured store: one per process, or per running event loop for a loop-bound
    backend such as Redis (then call it from async code)."""
    config: dict[str, Any] = setting("STORE")
    backend: str = config["BACKEND"]
    options: dict[str, Any] = config.get("OPTIONS") or {}
    key = f"{backend}:{sorted(options.items())!r}"
    cls = import_string(backend)
    if cls.loop_bound:
        stores = _loop_stores.setdefault(asyncio.get_running_loop(), {})
    else:
        stores = _process_stores
    store = stores.get(key)
    if store is None:
        store = stores[key] = cls(**options)
    return store


def reset_stores() -> None:
    """Forget every store (tests): the next ``get_store()`` builds a fresh one.

    Loop-bound stores are not closed here; their connections go with their loop.
    """
    _process_stores.clear()
    _loop_stores.clear()


__all__ = ["EventStore", "MemoryStore", "StoredEvent", "get_store", "reset_stores"]
