"""Django's connection pool for PostgreSQL (``DATABASES[...]["OPTIONS"]["pool"]``) with no
connection free for its ``timeout``: the server is busy, not its database down, so the
client is told to try again shortly (503 ``SERVER_BUSY`` with ``Retry-After``), as when
the event store's pool is exhausted. And a pool's connections that PostgreSQL ended (a
restart, a failover) are all found at the first one's failure, not one request each."""

from __future__ import annotations

import logging

from django.db import InterfaceError, OperationalError, connections

from .errors import StreamError, StreamErrorCode

logger = logging.getLogger("streaming")

#: ``Retry-After`` (seconds) of a request that found no pooled connection free.
POOL_RETRY_AFTER = 1


def pool_timed_out(exc: BaseException) -> bool:
    """Whether ``exc`` is Django's error for psycopg's pool finding no connection free for
    its ``timeout`` (``PoolTimeout``); psycopg_pool is only there with the pool."""
    try:
        from psycopg_pool import PoolTimeout
    except ImportError:
        return False
    return isinstance(exc.__cause__, PoolTimeout)


def log_pool_exhausted(exc: BaseException) -> None:
    """The log's line for a pool that had no connection free: what to raise."""
    logger.error(
        "No database connection was free in the pool for its whole timeout: %r. Raise "
        "the pool's max_size (DATABASES OPTIONS 'pool'; every process's within "
        "PostgreSQL's max_connections) or its timeout, or add processes.",
        exc,
    )


def pool_busy(exc: BaseException) -> StreamError:
    """What a client is told when the pool had no connection free (and the log)."""
    log_pool_exhausted(exc)
    return StreamError(
        StreamErrorCode.SERVER_BUSY,
        "The server is too busy; try again shortly",
        {"retry_after": POOL_RETRY_AFTER},
    )


def discard_broken_connections(exc: BaseException) -> None:
    """After a query failed on its connection (``exc``), have each open pool of Django's
    check its idle connections (psycopg_pool's ``check()``): after a PostgreSQL restart
    every connection a pool held is broken, and each would fail one more request; the
    pool replaces the broken ones. Sync (a round trip per idle connection), so call it
    from a worker thread, once a pool's timeout (``pool_timed_out``) is ruled out."""
    if not isinstance(exc, (OperationalError, InterfaceError)):
        return
    for alias in connections:
        database = connections[alias]
        pool = getattr(database, "pool", None) if database.vendor == "postgresql" else None
        if pool is not None and not pool.closed:
            pool.check()
