"""SSE throughput and time to first byte: ``sse_response`` and an ``SSEView`` (a
generation through the in-memory event store, its limits checked) against a raw
``StreamingHttpResponse``, side by side on one daphne process; and the same ``SSEView``
exempt from the limits, so the last ratio is what checking them costs.

    .venv/bin/python -m benchmarks.sse_throughput [--quick]

The client is a minimal asyncio HTTP/1.1 reader (so it is not the bottleneck); it
counts the ``hello world`` pieces of text each response delivers (``SSEView`` merges
pieces that are ready at once into one ``{"chunk": ...}`` message).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from tests.servers import daphne_server

NEEDLE = b"hello world"
ROUNDS = 5


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def fetch(
    port: int,
    path: str,
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None,
) -> tuple[int, float, float]:
    """GET ``path``; return (events, seconds to first body byte, total seconds)."""
    start = time.perf_counter()
    reader, writer = connection or await connect(port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head[:60]
    first = await reader.read(65536)
    first_byte = time.perf_counter() - start
    body = [first]
    while chunk := await reader.read(1 << 20):
        body.append(chunk)
    total = time.perf_counter() - start
    writer.close()
    return dechunk(b"".join(body)).count(NEEDLE), first_byte, total


def dechunk(body: bytes) -> bytes:
    """The payload of a chunked HTTP body (Django cuts long messages into 64 KiB chunks,
    so a needle may straddle the framing)."""
    parts: list[bytes] = []
    position = 0
    while True:
        line_end = body.index(b"\r\n", position)
        size = int(body[position:line_end].split(b";")[0], 16)
        if size == 0:
            return b"".join(parts)
        parts.append(body[line_end + 2 : line_end + 2 + size])
        position = line_end + 2 + size + 2


async def throughput(port: int, route: str, connections: int, events: int) -> float:
    """Events per second for ``connections`` concurrent streams of ``events`` each.

    The connections are opened first (a burst of connects overflows the listen
    backlog and measures SYN retries, not streaming); the clock runs from the
    requests to the last event.
    """
    opened = [await connect(port) for _ in range(connections)]
    start = time.perf_counter()
    results = await asyncio.gather(
        *(fetch(port, f"/{route}?prompt=go&n={events}", connection) for connection in opened)
    )
    elapsed = time.perf_counter() - start
    assert all(count == events for count, _, _ in results), "events were lost"
    return connections * events / elapsed


async def first_byte_ms(port: int, route: str, samples: int) -> float:
    times = [(await fetch(port, f"/{route}?prompt=go&n=1"))[1] for _ in range(samples)]
    return statistics.median(times) * 1000


ROUTES = ("raw", "ours", "view", "unlimited")


async def run(port: int, quick: bool) -> list[tuple[str, list[float]]]:
    scale = 10 if quick else 1
    rows = []
    for label, connections, events in [
        ("1 connection x 100,000 events", 1, 100_000 // scale),
        ("100 connections x 1,000 events", 100, 1_000 // scale),
    ]:
        for route in ROUTES:  # warm every path up
            await throughput(port, route, 1, 100)
        samples: dict[str, list[float]] = {route: [] for route in ROUTES}
        for _ in range(ROUNDS):  # interleaved, so all see the same machine load
            for route in ROUTES:
                samples[route].append(await throughput(port, route, connections, events))
        rows.append(
            (f"{label} (events/s)", [statistics.median(samples[route]) for route in ROUTES])
        )
    ttfb = [await first_byte_ms(port, route, 30) for route in ROUTES]
    rows.append(("time to first byte (ms, median of 30)", ttfb))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a tenth of the events")
    args = parser.parse_args()
    with daphne_server(env={"DJANGO_SETTINGS_MODULE": "benchmarks.settings"}) as url:
        port = int(url.rsplit(":", 1)[1])
        rows = asyncio.run(run(port, args.quick))
    print(f"median of {ROUNDS} interleaved rounds; one daphne process; client on the same machine")
    print(
        f"| {'measure':<40} | {'raw':>11} | {'sse_response':>12} | {'SSEView':>11} "
        f"| {'no limits':>11} | ratios |"
    )
    print(f"|{'-' * 42}|{'-' * 12}:|{'-' * 13}:|{'-' * 12}:|{'-' * 12}:|-------:|")
    for label, (raw, ours, view, unlimited) in rows:
        ratios = f"{ours / raw:.2f} / {view / raw:.2f} / {view / unlimited:.2f}"
        print(
            f"| {label:<40} | {raw:>11,.1f} | {ours:>12,.1f} | {view:>11,.1f} "
            f"| {unlimited:>11,.1f} | {ratios} |"
        )


if __name__ == "__main__":
    main()
