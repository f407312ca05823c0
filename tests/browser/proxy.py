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
    ``release()``, as a server slow to answer would. ``connections`` counts them."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.connections = 0
        self.url = ""
        self.refusing = False
        self._open: set[asyncio.StreamWriter] = set()
        self._stalled: set[asyncio.StreamWriter] = set()
        self._holding = False
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

    def _hold(self, writer: asyncio.StreamWriter, data: bytes, first: bool) -> bool:
        """Whether ``data``, from the server to ``writer``, is held (``hold_websockets``)."""
        if writer in self._held:
            self._held[writer].append(data)
            return True
        if first and self._holding and data.startswith(b"HTTP/1.1 101"):
            self._held[writer] = []  # the handshake goes; what follows it waits
        return False

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
                _pipe(reader, upstream_writer, self._stalled),
                _pipe(upstream_reader, writer, self._stalled, self._hold),
            )
        finally:
            self._open -= pair
            self._stalled -= pair


async def _pipe(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    stalled: set[asyncio.StreamWriter],
    hold: Callable[[asyncio.StreamWriter, bytes, bool], bool] | None = None,
) -> None:
    first = True
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            if writer in stalled:
                continue  # lost on the way
            if hold is not None and hold(writer, data, first):
                continue  # forwarded on release
            first = False
            writer.write(data)
            await writer.drain()
    # One side ended: end the other once what it was sent has left.
    writer.close()
