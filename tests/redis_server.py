"""A real ``redis-server`` for tests and benchmarks, on 127.0.0.1 and a free port.

No persistence (``--save "" --appendonly no``), its files in a temporary directory.
It can be stopped, restarted on the same port, and paused (SIGSTOP) to play a hung
server; it is always killed at the end (context manager, and ``atexit`` as a backstop)::

    from tests.redis_server import redis_server
    with redis_server() as server:
        RedisStore(url=server.url)
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from .servers import daphne_server, free_port, stop_process

REDIS_SERVER = shutil.which("redis-server")
#: Marks a test that needs a real redis-server (Debian ``redis-server``).
needs_redis = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")
_running: set[RedisServer] = set()


class RedisServer:
    """One redis-server process; ``start()``, ``stop()``, ``restart()``, ``url``."""

    def __init__(self, port: int | None = None) -> None:
        if REDIS_SERVER is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.port = port or free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="redis-test-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait (at most ``timeout`` s) until it answers PING."""
        assert self.process is None, "already running"
        log = self.directory / "redis.log"
        command = [
            str(REDIS_SERVER),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--logfile", str(log),
            "--daemonize", "no",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL
        )
        _running.add(self)
        deadline = time.monotonic() + timeout
        while not self.ping():
            if self.process.poll() is not None or time.monotonic() > deadline:
                output = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                self.stop()
                raise RuntimeError(f"redis-server on port {self.port} did not start:\n{output}")
            time.sleep(0.02)

    def ping(self) -> bool:
        """Whether the server answers PING right now."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """Kill the server (SIGTERM, then SIGKILL after 5 s) and wait for it to exit."""
        process, self.process = self.process, None
        _running.discard(self)
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGCONT)  # a paused server could not handle SIGTERM
        stop_process(process, grace=5)

    def restart(self) -> None:
        """Stop, then start again on the same port (all data is lost: no persistence)."""
        self.stop()
        self.start()

    def pause(self) -> None:
        """SIGSTOP: the server keeps its connections but answers nothing (a hung Redis)."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def close(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    """A started ``RedisServer``, closed at the end whatever happens."""
    server = RedisServer()
    try:
        server.start()
        yield server
    finally:
        server.close()


@contextmanager
def redis_daphnes(settings: str, redis: RedisServer, count: int = 1) -> Iterator[list[str]]:
    """The URLs of ``count`` daphne processes of ``tests.asgi`` with the settings module
    ``settings`` (one of ``tests.settings_*``) sharing ``redis`` as their store."""
    env = {"DJANGO_SETTINGS_MODULE": settings, "STREAMING_TEST_REDIS": redis.url}
    with ExitStack() as stack:
        yield [
            stack.enter_context(daphne_server("tests.asgi:application", env=env))
            for _ in range(count)
        ]


@atexit.register
def _kill_leftovers() -> None:
    for server in list(_running):
        server.close()
