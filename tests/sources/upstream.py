"""A scripted HTTP/1.1 upstream on 127.0.0.1 for the source tests.

Each test gives a script ``async (request, reply) -> None`` that writes the response with
``reply``: a head, chunks (chunked transfer encoding, as streaming servers send them), an
end, or a connection dropped mid-body. The server records every request and whether a
client closed its connection while a script was still running (``client_gone``), so a
test can check that cancelling a source really closes the upstream connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

#: Longest a script waits for the client to go away, so no test can hang on it.
WAIT_LIMIT = 10.0


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    """How a script answers one request."""

    writer: asyncio.StreamWriter
    gone: asyncio.Event

    async def head(
        self,
        status: int = 200,
        content_type: str = "text/event-stream",
        reason: str = "OK",
    ) -> None:
        """A streaming head: chunked body, connection closed after it."""
        self.writer.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
            "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        await self.writer.drain()

    async def chunk(self, data: bytes | str) -> None:
        raw = data.encode() if isinstance(data, str) else data
        self.writer.write(f"{len(raw):x}\r\n".encode() + raw + b"\r\n")
        await self.writer.drain()

    async def event(self, payload: Any) -> None:
        """One SSE ``data:`` event; dicts are sent as JSON."""
        data = payload if isinstance(payload, str) else json.dumps(payload)
        await self.chunk(f"data: {data}\n\n")

    async def end(self) -> None:
        self.writer.write(b"0\r\n\r\n")
        await self.writer.drain()

    async def whole(
        self,
        status: int,
        body: bytes | str,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        """A complete response with ``Content-Length`` (and ``headers``, if any)."""
        raw = body.encode() if isinstance(body, str) else body
        reason = {200: "OK", 401: "Unauthorized", 500: "Internal Server Error"}.get(status, "Error")
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        self.writer.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n{extra}"
            f"Content-Length: {len(raw)}\r\nConnection: close\r\n\r\n".encode()
            + raw
        )
        await self.writer.drain()

    def drop(self) -> None:
        """Cut the connection mid-body, as a crashed upstream does."""
        self.writer.transport.abort()

    async def wait_gone(self) -> None:
        """Hold the response open until the client disconnects (bounded)."""
        await asyncio.wait_for(self.gone.wait(), WAIT_LIMIT)


Script = Callable[[Request, Reply], Awaitable[None]]


class Upstream:
    """The server: start with ``async with Upstream(script) as upstream``; ``upstream.url``."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[Request] = []
        #: Set when a client closed its connection while the script was still running.
        self.client_gone = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self.url = ""

    async def __aenter__(self) -> Upstream:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=WAIT_LIMIT)
        await asyncio.wait_for(self._server.wait_closed(), WAIT_LIMIT)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        gone = asyncio.Event()
        watcher: asyncio.Task[None] | None = None
        try:
            request = await _read_request(reader)
            self.requests.append(request)
            watcher = asyncio.create_task(self._watch(reader, gone))
            try:
                await self.script(request, Reply(writer, gone))
            except ConnectionError:
                # A write failed: the client went away, maybe before the watcher saw it.
                gone.set()
                self.client_gone.set()
        finally:
            if watcher is not None:
                watcher.cancel()
            writer.close()
            self._handlers.discard(task)

    async def _watch(self, reader: asyncio.StreamReader, gone: asyncio.Event) -> None:
        """The client sends nothing after its request: EOF or a reset means it went away."""
        with contextlib.suppress(ConnectionError):
            await reader.read()
        gone.set()
        self.client_gone.set()


async def _read_request(reader: asyncio.StreamReader) -> Request:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT_LIMIT)
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = await asyncio.wait_for(reader.readexactly(length), WAIT_LIMIT) if length else b""
    return Request(method, path, headers, body)
