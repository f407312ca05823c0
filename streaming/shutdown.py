"""A clean stop: SIGTERM or SIGINT tells every open reply, then lets the server stop.

Under daphne (Twisted's asyncio reactor) ``StreamingConfig.ready`` arranges, once the
reactor runs, that

* SIGTERM and SIGINT first *drain* the process: ``is_stopping()`` turns true (new replies
  are refused with ``SHUTTING_DOWN``), every registered participant (``register``: the
  generations registry, each WebSocket consumer) ends what it serves with that error,
  and the followers get ``SHUTTING_DOWN_TIMEOUT`` seconds to write it; then the reactor
  stops as daphne would have stopped it (a second signal stops it at once);
* before the asyncio loop stops, every task still pending is cancelled and awaited and
  the async generators are closed. Left for the garbage collector after the loop stops,
  they crash CPython 3.11 (a segfault while a suspended ``asyncio.Queue.get`` frame is
  collected at exit; daphne's own input queues have them).

Under uvicorn (also as gunicorn's worker) and hypercorn, ``lifespan`` (the ASGI
application of the ``lifespan`` scope, routed beside ``http`` and ``websocket``) does the
same at the server's startup: it puts the drain before the server's own handling of SIGTERM
and SIGINT, which then stops the server as it would have (a second signal is passed on at
once). Without it, uvicorn waits for every open stream to end (a reply runs on to its end,
an idle stream forever) and closes WebSockets with 1012 and no word of the reply;
hypercorn cuts every connection after its ``graceful_timeout`` (3 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import threading
import weakref
from collections.abc import Callable
from types import FrameType
from typing import Any, Protocol

from .conf import setting

logger = logging.getLogger("streaming")

#: The WebSocket close code of a server restart: RFC 6455's 1012 moved into the
#: application range, as daphne lets an application send only 1000 and 3000-4999.
CLOSE_SERVICE_RESTART = 4012
#: The ``retry:`` hint (milliseconds) on an SSE stream's final ``SHUTTING_DOWN`` event.
SHUTDOWN_RETRY_MS = 1000


class Participant(Protocol):
    """Something that serves clients and must tell them before the process stops."""

    async def shut_down(self) -> None:
        """End what it serves with ``SHUTTING_DOWN`` and return once clients were told."""


_participants: weakref.WeakSet[Any] = weakref.WeakSet()
_stopping = False
_events: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Event] = (
    weakref.WeakKeyDictionary()
)


def register(participant: Participant) -> None:
    """Have ``participant.shut_down()`` awaited when the process drains (held weakly)."""
    _participants.add(participant)


def is_stopping() -> bool:
    """True once the process has started to drain: start no new reply."""
    return _stopping


def stopping_event() -> asyncio.Event:
    """An event of the running loop that is set when the process drains."""
    loop = asyncio.get_running_loop()
    event = _events.get(loop)
    if event is None:
        event = _events[loop] = asyncio.Event()
        if _stopping:
            event.set()
    return event


async def drain(timeout: float | None = None) -> None:
    """Tell every participant to end with ``SHUTTING_DOWN``; wait up to ``timeout``
    seconds (``SHUTTING_DOWN_TIMEOUT``) for them."""
    global _stopping
    _stopping = True
    for event in list(_events.values()):
        event.set()
    limit = float(setting("SHUTDOWN_TIMEOUT") if timeout is None else timeout)
    tasks = [asyncio.ensure_future(participant.shut_down()) for participant in _participants]
    if not tasks:
        return
    done, pending = await asyncio.wait(tasks, timeout=limit)
    for task in pending:
        task.cancel()
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            logger.error("Shutdown of a participant failed", exc_info=task.exception())
    logger.info(
        "Drained %d participants (%d did not finish within %ss)", len(tasks), len(pending), limit
    )


def reset() -> None:
    """Forget that the process drained (tests that drain in process)."""
    global _stopping
    _stopping = False
    _events.clear()


async def cancel_remaining_tasks() -> None:
    """Cancel and await every other task of the running loop, then close the async
    generators: nothing suspended is left for the garbage collector."""
    loop = asyncio.get_running_loop()
    current = asyncio.current_task()
    for _ in range(3):  # a cancelled task may start another one while it unwinds
        tasks = [task for task in asyncio.all_tasks(loop) if task is not current]
        if not tasks:
            break
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks, timeout=float(setting("CLEANUP_TIMEOUT")))
    await loop.shutdown_asyncgens()


# ------------------------------------------------------------------------- daphne
def daphne_reactor() -> Any | None:
    """Twisted's reactor when it is the asyncio one daphne installs, else None (never
    imports Twisted: importing its reactor would install the default one)."""
    reactor = sys.modules.get("twisted.internet.reactor")
    module = sys.modules.get("twisted.internet.asyncioreactor")
    if reactor is None or module is None:
        return None
    return reactor if isinstance(reactor, module.AsyncioSelectorReactor) else None


def install_for_daphne() -> None:
    """Arrange the drain and the orderly loop stop once daphne's reactor runs."""
    reactor = daphne_reactor()
    if reactor is not None:
        reactor.callWhenRunning(_install, reactor)


def _install(reactor: Any) -> None:
    """Runs in the reactor, after Twisted installed its own signal handlers: wrap them."""
    loop: asyncio.AbstractEventLoop = reactor._asyncioEventloop
    signalled: list[int] = []

    async def drain_then_stop() -> None:
        try:
            await drain()
        finally:
            _stop(reactor)

    def on_signal(number: int, frame: FrameType | None) -> None:
        signalled.append(number)
        if len(signalled) > 1:  # a second signal: stop now
            loop.call_soon_threadsafe(_stop, reactor)
            return
        logger.info("Received %s: ending open replies, then stopping", signal.Signals(number).name)
        loop.call_soon_threadsafe(lambda: _keep(loop.create_task(drain_then_stop())))

    try:
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, on_signal)
    except ValueError:  # the reactor runs outside the main thread: signals are not ours
        logger.info("Not in the main thread: SIGTERM is left to the server")

    def before_shutdown() -> Any:
        from twisted.internet import defer

        return defer.Deferred.fromFuture(loop.create_task(_after_daphne()))

    reactor.addSystemEventTrigger("before", "shutdown", before_shutdown)


async def _after_daphne() -> None:
    """Let daphne cancel its application instances (same trigger phase), then the rest."""
    await asyncio.sleep(0)
    with contextlib.suppress(Exception):
        await cancel_remaining_tasks()


def _stop(reactor: Any) -> None:
    if reactor.running:
        reactor.stop()


#: Tasks started from signal handlers, held until they end.
_background: set[asyncio.Task[None]] = set()


def _keep(task: asyncio.Task[None]) -> None:
    _background.add(task)
    task.add_done_callback(_background.discard)


# ------------------------------------------------------------------ other servers
async def lifespan(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The ASGI application of the ``lifespan`` scope, for uvicorn and hypercorn (daphne
    sends none): at startup, ``install_for_server()``; at shutdown (the server has closed
    its connections), the drain of whatever still runs, if no signal drained it."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            install_for_server()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if not _stopping:
                await drain()
            await send({"type": "lifespan.shutdown.complete"})
            return


def install_for_server() -> None:
    """Put the drain before the running server's handlers of SIGTERM and SIGINT: the
    first signal drains the process, then is handed to the server's handler; a second is
    handed on at once. Call it from the server's event loop once the server has set its
    handlers (``lifespan`` does, at startup). uvicorn sets them with ``signal.signal``,
    hypercorn with ``loop.add_signal_handler``: either is wrapped."""
    if threading.current_thread() is not threading.main_thread():
        logger.info("Not in the main thread: SIGTERM is left to the server")
        return
    loop = asyncio.get_running_loop()
    signalled: list[int] = []

    def on_signal(number: int, pass_on: Callable[[], None]) -> None:
        signalled.append(number)
        if len(signalled) > 1:  # a second signal: the server's own handling, now
            pass_on()
            return
        logger.info("Received %s: ending open replies, then stopping", signal.Signals(number).name)

        async def drain_then_pass_on() -> None:
            try:
                await drain()
            finally:
                pass_on()

        _keep(loop.create_task(drain_then_pass_on()))

    handlers: dict[int, Any] = getattr(loop, "_signal_handlers", None) or {}
    for number in (signal.SIGTERM, signal.SIGINT):
        handle = handlers.get(number)
        callback = getattr(handle, "_callback", None)
        if callback is not None:  # loop.add_signal_handler (hypercorn)
            args = tuple(getattr(handle, "_args", None) or ())
            loop.add_signal_handler(number, on_signal, number, lambda c=callback, a=args: c(*a))
            continue
        previous = signal.getsignal(number)
        if not callable(previous) or previous is signal.default_int_handler:
            continue  # the server does not handle it: Python's default stays

        def handler(
            received: int, frame: FrameType | None, previous: Callable[..., Any] = previous
        ) -> None:
            loop.call_soon_threadsafe(on_signal, received, lambda: previous(received, None))

        signal.signal(number, handler)
