"""A streamed response lets its request's own sync thread go.

Django runs each ASGI request in asgiref's ``ThreadSensitiveContext``: the request's
first thread-sensitive sync call (the receivers of ``request_started``, a sync
middleware) starts a thread that only this request uses, and that thread lives until the
request ends. For a streamed reply that is as long as the stream: every open reply held
an idle thread (its stack, and one more against a process's or a container's thread
limit). When the server starts reading the body, the view has returned and the request's
sync work is over, so the thread is let go then: it closes the database connections it
opened (nothing else would use or close them) and exits. A later thread-sensitive call
of the request (Django closing the response, with ``request_finished``) gets a new
thread, which ends with the request.
"""

from __future__ import annotations

from concurrent.futures import Executor

from asgiref.sync import SyncToAsync, ThreadSensitiveContext, sync_to_async
from django.db import connections


def _request_context() -> ThreadSensitiveContext | None:
    """The current request's thread-sensitive context, if it has one whose executor asgiref
    made for it (not one whose caller owns the thread, as under WSGI)."""
    context = SyncToAsync.thread_sensitive_context.get(None)
    if context is None or getattr(context, "_executor", None) is not None:
        return None
    return context


async def close_request_connections() -> None:
    """Close the database connections the current request's own sync thread opened (a
    session or a user loaded from the database), before the view waits on anything else.

    The request's sync work so far is done, and its connection would sit idle until the
    response is read: a burst of replies waiting meanwhile on the database workers of
    ``streaming.storage`` held one connection each, past PostgreSQL's 100 by default.
    A later sync call of the request (saving a session it changed) opens a new one, closed
    when the thread is let go."""
    context = _request_context()
    if context is not None and context in SyncToAsync.context_to_thread_executor:
        await sync_to_async(connections.close_all)()


def release_request_thread() -> None:
    """Let the current request's own sync thread (if it started one) close its database
    connections and exit; work already queued on it runs first."""
    context = _request_context()
    if context is None:
        return
    executor: Executor | None = SyncToAsync.context_to_thread_executor.pop(context, None)
    if executor is None:
        return
    executor.submit(connections.close_all)
    executor.shutdown(wait=False)
