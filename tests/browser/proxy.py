"""A TCP proxy in front of a test server whose open connections a test can cut, as a
dropped network would, or stall, as a network change does to a half-open connection,
while the server (and the reply it runs) goes on."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Self


class CuttingProxy:
    """``url`` forwards to 127.0.0.1:``target``; ``cut()`` aborts every connection open
    now (both sides); later connections are forwarded again, unless ``down()`` cut them
    and refuses new ones until ``up()``; ``stall()`` makes every connection open now carry
    nothing more, in either direction, without closing it; ``hold_websockets()`` keeps what
    the server sends the WebSockets opened from then on (after their handshake) until
    ``release()``, as a server slow to answer would; ``hold_post_response()`` keeps the
    response to the next POST to a stream URL, all of it or all but its head (the server
    has the prompt, the page not a byte of its reply). ``connections`` counts them."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.connections = 0
        self.url = ""
        self.refusing = False
        self._open: set[asyncio.StreamWriter] = set()
        self._stalled: set[asyncio.StreamWriter] = set()
        self._holding = False
        self._holding_post = False
        self._forward_head = False
        #: The page's connections that carried a request.
        self._carried: set[asyncio.StreamWriter] = set()
        #: Held POST responses whose head is forwarded yet: the rest waits.
        self._heads_to_forward: set[asyncio.StreamWriter] = set()
        #: What the server sent each held WebSocket, not forwarded yet.
        self._held: dict[asyncio.StreamWriter, list[bytes]] = {}
        self._server: asyncio.Server | None = None
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def cut(self) -> None:
        asyncio.run_coroutine_threadsafe(self._cut(), self.loop).result(10)

    def stall(self) -> None:
        """The path of the open connections is gone without a word (a phone moved from
        Wi-Fi to its mobile network): what either end sends them is dropped, and neither
        end is told. Later connections are forwarded."""
        asyncio.run_coroutine_threadsafe(self._stall(), self.loop).result(10)

    async def _stall(self) -> None:
        self._stalled |= self._open

    def hold_websockets(self) -> None:
        """What the server sends the WebSockets opened from now on, once their handshake
        is answered, waits in the proxy (in order) until ``release()``."""
        self._holding = True

    def hold_post_response(self, head: bool = False) -> None:
        """What the server answers the next POST to a URL ending in ``/stream`` waits in
        the proxy until ``release()``, or is lost with ``cut()``: all of it, or with
        ``head`` all but its status line and headers."""
        self._holding_post = True
        self._forward_head = head

    def _hold_post(self, writer: asyncio.StreamWriter, data: bytes) -> bool:
        """Whether ``data``, from the page on the connection answered through ``writer``,
        goes on to the server. The request of a held POST (``hold_post_response``) holds
        its response; on a connection that carried a request before, it is cut instead,
        unsent: Chromium sends a request again by itself, on a new connection, when one
        it reused is reset before a byte of the response (no page can tell), and the
        response held is the one on that new connection."""
        reused = writer in self._carried
        self._carried.add(writer)
        request_line = data.split(b"\r\n", 1)[0]
        if not self._holding_post or not request_line.startswith(b"POST "):
            return True
        if b"/stream " not in request_line:
            return True
        if reused:
            writer.transport.abort()
            return False
        self._holding_post = False
        self._held[writer] = []
        if self._forward_head:
            self._heads_to_forward.add(writer)
        return True

    def release(self) -> None:
        """Forward what was held, and hold nothing more."""
        asyncio.run_coroutine_threadsafe(self._release(), self.loop).result(10)

    async def _release(self) -> None:
        self._holding = False
        held, self._held = self._held, {}
        for writer, pieces in held.items():
            with contextlib.suppress(ConnectionError, OSError):
                writer.write(b"".join(pieces))
                await writer.drain()

    def _hold(self, writer: asyncio.StreamWriter, data: bytes, first: bool) -> bytes:
        """The part of ``data``, from the server to ``writer``, forwarded now; the rest is
        held (``hold_websockets``, ``hold_post_response``)."""
        if writer in self._heads_to_forward:
            head, blank, rest = data.partition(b"\r\n\r\n")
            if blank:
                self._heads_to_forward.discard(writer)
                self._held[writer].append(rest)
            return head + blank
        if writer in self._held:
            self._held[writer].append(data)
            return b""
        if first and self._holding and data.startswith(b"HTTP/1.1 101"):
            self._held[writer] = []  # the handshake goes; what follows it waits
        return data

    def down(self) -> None:
        """The network is gone: open connections are cut, new ones refused."""
        self.refusing = True
        self.cut()

    def up(self) -> None:
        self.refusing = False

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._forward, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    async def _stop(self) -> None:
        await self._cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _cut(self) -> None:
        for writer in list(self._open):
            writer.transport.abort()
            self._held.pop(writer, None)
            self._heads_to_forward.discard(writer)
        self._open.clear()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.refusing:
            writer.transport.abort()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self.target
            )
        except OSError:
            writer.transport.abort()
            return
        pair = {writer, upstream_writer}
        self._open |= pair
        try:
            await asyncio.gather(
                _pipe(
                    reader,
                    upstream_writer,
                    self._stalled,
                    watch=lambda data: self._hold_post(writer, data),
                ),
                _pipe(upstream_reader, writer, self._stalled, self._hold),
            )
        finally:
            self._open -= pair
            self._stalled -= pair
            self._carried.discard(writer)


async def _pipe(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    stalled: set[asyncio.StreamWriter],
    hold: Callable[[asyncio.StreamWriter, bytes, bool], bytes] | None = None,
    watch: Callable[[bytes], bool] | None = None,
) -> None:
    first = True
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            if writer in stalled:
                continue  # lost on the way
            if watch is not None and not watch(data):
                continue
            if hold is not None:
                data = hold(writer, data, first)  # the rest is forwarded on release
            if not data:
                continue
            first = False
            writer.write(data)
            await writer.drain()
    # One side ended: end the other once what it was sent has left.
    writer.close()
