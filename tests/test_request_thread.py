"""``release_request_thread``: a streamed response lets its request's own sync thread go.

Over sockets, ``test_stream_lifecycle`` counts the server's threads with streams open and
``test_runtime_database`` its database connections; here, what the release does inside
one request's ``ThreadSensitiveContext``, as Django's ASGI handler opens it.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from asgiref.sync import SyncToAsync, ThreadSensitiveContext, sync_to_async

from streaming.request_thread import release_request_thread

LIMIT = 5.0


def ended(name: str) -> bool:
    """Whether the thread named ``name`` ended within ``LIMIT`` seconds."""
    deadline = time.monotonic() + LIMIT
    while time.monotonic() < deadline:
        if all(t.name != name for t in threading.enumerate()):
            return True
        time.sleep(0.01)
    return False


def thread_name() -> str:
    return threading.current_thread().name


async def request_thread() -> str:
    """The name of the thread thread-sensitive sync code runs in now (names are not
    reused, unlike thread ids)."""
    return await sync_to_async(thread_name)()


async def test_the_thread_ends_and_later_sync_calls_get_another() -> None:
    async with ThreadSensitiveContext():
        first = await request_thread()
        assert await request_thread() == first  # the request's own thread, kept
        release_request_thread()
        assert await asyncio.to_thread(ended, first)
        second = await request_thread()
        assert second != first
        assert await request_thread() == second  # and that one is kept in turn


async def test_work_already_on_the_thread_finishes_first() -> None:
    started, go_on = threading.Event(), threading.Event()

    def slow() -> str:
        started.set()
        assert go_on.wait(LIMIT)
        return "done"

    async with ThreadSensitiveContext():
        running = asyncio.create_task(sync_to_async(slow)())
        assert await asyncio.to_thread(started.wait, LIMIT)
        release_request_thread()
        go_on.set()
        assert await asyncio.wait_for(running, LIMIT) == "done"


async def test_the_released_thread_closes_its_database_connections() -> None:
    from django.db import connections

    closed: list[str] = []

    def open_one() -> str:
        connection = connections["default"]  # this thread's own
        connection.close = lambda: closed.append(thread_name())  # type: ignore[method-assign]
        return thread_name()

    async with ThreadSensitiveContext():
        name = await sync_to_async(open_one)()
        release_request_thread()
        assert await asyncio.to_thread(ended, name)
    assert closed == [name]


async def test_outside_a_request_it_does_nothing() -> None:
    before = await request_thread()  # the process's one thread for sync code
    release_request_thread()
    assert await request_thread() == before
    assert before in {t.name for t in threading.enumerate()}


@pytest.mark.skipif(
    "executor" not in inspect.signature(ThreadSensitiveContext).parameters,
    reason="this asgiref's ThreadSensitiveContext takes no executor: there is none of its "
    "caller's to leave alone",
)
async def test_an_executor_its_caller_owns_is_left_alone() -> None:
    executor = ThreadPoolExecutor(max_workers=1)
    context = ThreadSensitiveContext(executor=executor)
    try:
        async with context:
            first = await request_thread()
            release_request_thread()
            assert await request_thread() == first
            assert SyncToAsync.context_to_thread_executor[context] is executor
    finally:
        executor.shutdown()
