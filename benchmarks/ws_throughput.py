"""WebSocket throughput: ``StreamConsumer`` against a raw Channels consumer sending the
same chunks, side by side on one daphne process.

    .venv/bin/python -m benchmarks.ws_throughput [--quick]

Counts model chunks delivered per second (the text of every ``chunk`` frame, checked
against ``fullResponse``), for model chunks that are ready at once and for chunks that
each let the event loop run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

from websockets.asyncio.client import ClientConnection, connect

from tests.servers import daphne_server

from .ws_consumers import TOKEN

ROUNDS = 5


async def reply(socket: ClientConnection, n: int, paced: bool) -> None:
    """Ask for ``n`` chunks and read frames until ``complete``; check nothing was lost."""
    await socket.send(json.dumps({"prompt": "bench", "n": n, "paced": paced}))
    parts: list[str] = []
    while True:
        frame = json.loads(await socket.recv())
        if frame["type"] != "chunk":
            break
        parts.append(frame["content"])
    assert frame["type"] == "complete", frame
    assert "".join(parts) == frame["fullResponse"] == TOKEN * n, "chunks were lost"


async def throughput(url: str, route: str, connections: int, n: int, paced: bool) -> float:
    """Chunks per second over ``connections`` sockets opened before the clock starts."""
    sockets = [
        await connect(f"{url}/ws/{route}/", max_size=None, compression=None)
        for _ in range(connections)
    ]
    try:
        start = time.perf_counter()
        await asyncio.gather(*(reply(socket, n, paced) for socket in sockets))
        elapsed = time.perf_counter() - start
    finally:
        await asyncio.gather(*(socket.close() for socket in sockets))
    return connections * n / elapsed


async def run(url: str, quick: bool) -> list[tuple[str, float, float]]:
    scale = 10 if quick else 1
    rows = []
    for paced in (False, True):
        for label, connections, n in [
            ("1 connection x 100,000 chunks", 1, 100_000 // scale),
            ("100 connections x 1,000 chunks", 100, 1_000 // scale),
        ]:
            await throughput(url, "raw", 1, 100, paced)  # warm both paths up
            await throughput(url, "ours", 1, 100, paced)
            raws, ourss = [], []
            for _ in range(ROUNDS):  # interleaved, so both see the same machine load
                raws.append(await throughput(url, "raw", connections, n, paced))
                ourss.append(await throughput(url, "ours", connections, n, paced))
            kind = "paced" if paced else "ready at once"
            rows.append((f"{label}, {kind}", statistics.median(raws), statistics.median(ourss)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a tenth of the chunks")
    args = parser.parse_args()
    env = {"DJANGO_SETTINGS_MODULE": "benchmarks.settings"}
    with daphne_server("benchmarks.asgi:application", env=env) as url:
        rows = asyncio.run(run(url.replace("http://", "ws://"), args.quick))
    print(f"chunks/s, median of {ROUNDS} interleaved rounds; one daphne process; same machine")
    print(f"| {'measure':<46} | {'raw consumer':>12} | {'StreamConsumer':>14} | ours/raw |")
    print(f"|{'-' * 48}|{'-' * 13}:|{'-' * 15}:|---------:|")
    for label, raw, ours in rows:
        print(f"| {label:<46} | {raw:>12,.0f} | {ours:>14,.0f} | {ours / raw:>8.2f} |")


if __name__ == "__main__":
    main()
