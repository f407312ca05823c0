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

from asgiref.sync import SyncToAsync
from django.db import connections


def release_request_thread() -> None:
    """Let the current request's own sync thread (if it started one) close its database
    connections and exit; work already queued on it runs first."""
    context = SyncToAsync.thread_sensitive_context.get(None)
    if context is None or getattr(context, "_executor", None) is not None:
        return  # no request context, or one whose executor its caller owns
    executor: Executor | None = SyncToAsync.context_to_thread_executor.pop(context, None)
    if executor is None:
        return
    executor.submit(connections.close_all)
    executor.shutdown(wait=False)
