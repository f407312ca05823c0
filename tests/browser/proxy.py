"""A TCP proxy in front of a test server whose open connections a test can cut, as a
dropped network would, or stall, as a network change does to a half-open connection,
while the server (and the reply it runs) goes on."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Self


class CuttingProxy:
    """``url`` forwards to 127.0.0.1:``target``; ``cut()`` aborts every connection open
    now (both sides); later connections are forwarded again, unless ``down()`` cut them
    and refuses new ones until ``up()``; ``stall()`` makes every connection open now carry
    nothing more, in either direction, without closing it. ``connections`` counts them."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.connections = 0
        self.url = ""
        self.refusing = False
        self._open: set[asyncio.StreamWriter] = set()
        self._stalled: set[asyncio.StreamWriter] = set()
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
                _pipe(upstream_reader, writer, self._stalled),
            )
        finally:
            self._open -= pair
            self._stalled -= pair


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stalled: set[asyncio.StreamWriter]
) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            if writer in stalled:
                continue  # lost on the way
            writer.write(data)
            await writer.drain()
    # One side ended: end the other once what it was sent has left.
    writer.close()
