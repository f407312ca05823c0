"""A real ``redis-server`` for tests and benchmarks, on 127.0.0.1 and a free port.

No persistence (``--save "" --appendonly no``), its files in a temporary directory.
It can be stopped, restarted on the same port, and paused (SIGSTOP) to play a hung
server; it is always killed at the end (context manager, and ``atexit`` as a backstop)::

    from tests.redis_server import redis_server
    with redis_server() as server:
        RedisStore(url=server.url)

It can instead listen on TLS alone (``tls``: certificates from ``make_certificates``), its
``url`` then a ``rediss://`` one that trusts their CA, and have ACL users of its own
(``users``: rules as ``ACL SETUSER`` takes them, the name first).
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from .servers import daphne_server, free_port, require_installed, stop_process

REDIS_SERVER = shutil.which("redis-server")
#: Marks a test that needs a real redis-server (Debian ``redis-server``): skipped where it
#: is missing, except in CI (``.ci/run`` sets ``CI``), where ``scripts/test`` installs it and
#: the test then fails on the missing server: a skipped Redis test must not pass unseen.
needs_redis = pytest.mark.skipif(
    REDIS_SERVER is None and not os.environ.get("CI"),
    reason="redis-server is not installed (scripts/test installs it)",
)
_running: set[RedisServer] = set()


def require_redis() -> None:
    """Skip a test whose fixture needs redis-server where it is missing, but fail in CI,
    as ``needs_redis`` does."""
    require_installed(
        REDIS_SERVER is not None, "redis-server is not installed (scripts/test installs it)"
    )


@dataclass(frozen=True)
class Certificates:
    """PEM files: a CA of the test's own, and a certificate it signed for 127.0.0.1."""

    ca: Path
    certificate: Path
    key: Path


def make_certificates(directory: Path) -> Certificates:
    """A new CA and its certificate for 127.0.0.1, written in ``directory``."""
    authority = trustme.CA()
    issued = authority.issue_cert("127.0.0.1")
    files = Certificates(directory / "ca.pem", directory / "server.pem", directory / "key.pem")
    authority.cert_pem.write_to_path(str(files.ca))
    issued.cert_chain_pems[0].write_to_path(str(files.certificate))
    issued.private_key_pem.write_to_path(str(files.key))
    return files


class RedisServer:
    """One redis-server process; ``start()``, ``stop()``, ``restart()``, ``url``."""

    def __init__(
        self,
        port: int | None = None,
        *,
        tls: Certificates | None = None,
        users: Sequence[str] = (),
    ) -> None:
        if REDIS_SERVER is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.port = port or free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="redis-test-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.tls = tls
        self.users = users

    @property
    def url(self) -> str:
        if self.tls is None:
            return f"redis://127.0.0.1:{self.port}/0"
        return f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={self.tls.ca}&ssl_cert_reqs=required"

    def _listening(self) -> list[str]:
        """The command line's options for the port: plain TCP, or TLS alone."""
        if self.tls is None:
            return ["--port", str(self.port)]
        return [
            "--port", "0",
            "--tls-port", str(self.port),
            "--tls-cert-file", str(self.tls.certificate),
            "--tls-key-file", str(self.tls.key),
            "--tls-ca-cert-file", str(self.tls.ca),
            "--tls-auth-clients", "no",
        ]  # fmt: skip

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait (at most ``timeout`` s) until it answers PING."""
        assert self.process is None, "already running"
        log = self.directory / "redis.log"
        command = [
            str(REDIS_SERVER),
            "--bind", "127.0.0.1",
            *self._listening(),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--logfile", str(log),
            "--daemonize", "no",
            *(word for rule in self.users for word in ("--user", *rule.split())),
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
        """Whether the server answers PING right now (as the default user)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as plain:
                if self.tls is None:
                    return _pong(plain)
                context = ssl.create_default_context(cafile=str(self.tls.ca))
                with context.wrap_socket(plain, server_hostname="127.0.0.1") as secure:
                    return _pong(secure)
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


def _pong(sock: socket.socket) -> bool:
    sock.sendall(b"PING\r\n")
    return sock.recv(64).startswith(b"+PONG")


@contextmanager
def redis_server(
    *, tls: Certificates | None = None, users: Sequence[str] = ()
) -> Iterator[RedisServer]:
    """A started ``RedisServer``, closed at the end whatever happens."""
    server = RedisServer(tls=tls, users=users)
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
