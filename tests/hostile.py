"""Hostile clients and costly upstreams, for the runtime tests and ``benchmarks.memory``.

* ``upstream_in_thread(script)``: a scripted OpenAI-compatible upstream
  (``tests.sources.upstream``) on its own event loop in a thread, so blocking test code
  can run beside it; ``flood(total)`` streams ``total`` characters of text as fast as the
  client takes them, ``comments_every(seconds)`` only SSE comments, forever.
* ``silent_sse`` / ``silent_ws``: raw sockets with a tiny receive buffer that send their
  request (and, for a WebSocket, the prompt frame) and never read a byte.
* ``rss``: a process's resident memory, from ``/proc``; ``daphne_process``: a daphne
  subprocess the test may signal, kill or measure.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from .servers import ROOT, free_port, stop_process, wait_for_port
from .sources.upstream import Reply, Request, Script, Upstream

#: Seconds a daphne process may take to listen (a loaded CI machine is slow to import).
STARTUP_LIMIT = 60.0
#: Characters of text in one upstream event.
PIECE = 16 * 1024


def completion_chunk(content: str | None, finish: str | None = None) -> dict[str, Any]:
    """One ``chat.completion.chunk`` as the OpenAI API streams it."""
    delta = {} if content is None else {"content": content}
    return {
        "id": "chatcmpl-hostile",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "hostile",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def flood(total: int) -> Script:
    """An upstream that streams ``total`` characters as fast as the client reads them."""
    payload = f"data: {json.dumps(completion_chunk('x' * PIECE))}\n\n"

    async def script(request: Request, reply: Reply) -> None:
        await reply.head()
        sent = 0
        while sent < total:
            await reply.chunk(payload)
            sent += PIECE
        await reply.event(completion_chunk(None, "stop"))
        await reply.chunk("data: [DONE]\n\n")
        await reply.end()

    return script


def comments_every(seconds: float) -> Script:
    """An upstream that keeps its connection alive with SSE comments and sends no text."""

    async def script(request: Request, reply: Reply) -> None:
        await reply.head()
        while not reply.gone.is_set():
            await reply.chunk(": still thinking\n\n")
            await asyncio.sleep(seconds)

    return script


class ThreadedUpstream:
    """An ``Upstream`` whose loop runs in a thread; ``requests`` and ``gone()`` are safe
    to read from the test's thread."""

    def __init__(self, upstream: Upstream, loop: asyncio.AbstractEventLoop) -> None:
        self.upstream = upstream
        self.loop = loop

    @property
    def url(self) -> str:
        return self.upstream.url

    @property
    def requests(self) -> list[Request]:
        return list(self.upstream.requests)

    def all_gone(self) -> bool:
        """Whether every request has ended (its client closed it, or its script ended)."""
        return not self.upstream._handlers


@contextmanager
def upstream_in_thread(script: Script) -> Iterator[ThreadedUpstream]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    upstream = Upstream(script)
    asyncio.run_coroutine_threadsafe(upstream.__aenter__(), loop).result(10)
    try:
        yield ThreadedUpstream(upstream, loop)
    finally:
        asyncio.run_coroutine_threadsafe(upstream.__aexit__(None, None, None), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def _tiny_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    sock.connect(("127.0.0.1", port))
    return sock


def silent_sse(port: int, path: str, cookie: str = "") -> socket.socket:
    """Open ``GET path`` and never read the reply."""
    sock = _tiny_socket(port)
    cookie_line = f"Cookie: {cookie}\r\n" if cookie else ""
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{cookie_line}"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    return sock


def silent_ws(port: int, path: str, frame: dict[str, Any], cookie: str = "") -> socket.socket:
    """Open a WebSocket on ``path``, send ``frame`` as JSON, and never read anything."""
    sock = _tiny_socket(port)
    key = base64.b64encode(os.urandom(16)).decode()
    cookie_line = f"Cookie: {cookie}\r\n" if cookie else ""
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Origin: http://127.0.0.1:{port}\r\n{cookie_line}\r\n".encode()
        + masked_text_frame(json.dumps(frame))
    )
    return sock


def masked_text_frame(text: str) -> bytes:
    """A client's (masked) WebSocket text frame."""
    payload = text.encode()
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        head = struct.pack("!BB", 0x81, 0x80 | length)
    elif length < 1 << 16:
        head = struct.pack("!BBH", 0x81, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", 0x81, 0x80 | 127, length)
    masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
    return head + mask + masked


def rss(pid: int) -> int:
    """Resident memory of process ``pid`` in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


@contextmanager
def daphne_process(
    application: str = "tests.hostile_asgi:application",
    settings: str = "tests.settings_hostile",
    env: dict[str, str] | None = None,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A daphne subprocess on a free port: its URL and the process (to signal or measure).
    It is stopped for sure afterwards (unless the test stopped it)."""
    port = free_port()
    command = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), application]
    with server_process(command, port, {"DJANGO_SETTINGS_MODULE": settings, **(env or {})}) as up:
        yield up


@contextmanager
def server_process(
    command: list[str], port: int, env: dict[str, str], output: IO[bytes] | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A server ``command`` listening on ``port``, with ``env`` over ours and its output
    to ``output`` (else nowhere): its URL and the process, stopped for sure afterwards
    (unless the test stopped it)."""
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        stdout=output or subprocess.DEVNULL,
        stderr=subprocess.STDOUT if output else subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process, timeout=STARTUP_LIMIT)
        yield f"http://127.0.0.1:{port}", process
    finally:
        if process.poll() is None:
            stop_process(process)


def sqlite_database(path: Path) -> dict[str, Any]:
    """A SQLite file as ``DATABASES["default"]``."""
    return {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path)}


def migrate(database: dict[str, Any]) -> dict[str, str]:
    """Create the tables in ``database``; return the environment that points daphne at it."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings_hostile",
        "STREAMING_TEST_DATABASE": json.dumps(database),
    }
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--no-input", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=120,
    )
    return {"STREAMING_TEST_DATABASE": json.dumps(database)}
