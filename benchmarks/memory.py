"""Memory of daphne under clients that never read: resident memory per non-reading client.

    .venv/bin/python -m benchmarks.memory [--flood-mb 60] [--without-cap]

Each row starts a fresh daphne process (the hostile test project, database sessions),
an OpenAI-compatible upstream that streams ``--flood-mb`` MB of text per reply as fast as
it is read, and N raw-socket clients with a tiny receive buffer that send their request
(half of them ``GET /h/openai`` as SSE, half a WebSocket prompt) and never read. The
peak RSS of daphne is sampled until every upstream request has ended. With
``--without-cap`` a last row runs the same with ``MAX_REPLY_CHARS`` off, the behaviour
before the cap (expect hundreds of MB; it takes a minute or two).
"""

from __future__ import annotations

import argparse
import json
import socket
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

from tests.hostile import (
    daphne_process,
    flood,
    migrate,
    rss,
    silent_sse,
    silent_ws,
    sqlite_database,
    upstream_in_thread,
)

MB = 1024 * 1024
#: Seconds a row may take at most.
LIMIT = 300.0


def measure(clients: int, flood_mb: int, streaming: dict[str, Any]) -> tuple[float, float]:
    """(RSS before in MB, peak RSS growth in MB) for ``clients`` non-reading clients."""
    with tempfile.TemporaryDirectory() as directory:
        env = migrate(sqlite_database(Path(directory) / "db.sqlite3"))
        env["STREAMING_TEST_SETTINGS"] = json.dumps(streaming)
        with (
            daphne_process(env=env) as (url, process),
            upstream_in_thread(flood(flood_mb * MB)) as upstream,
        ):
            port = int(url.rsplit(":", 1)[1])
            warm = httpx.get(
                f"{url}/h/openai", params={"base_url": upstream.url, "prompt": "Hi"}, timeout=LIMIT
            )
            assert warm.status_code == 200
            before = rss(process.pid)
            query = urlencode({"base_url": upstream.url, "prompt": "Hi"})
            sockets: list[socket.socket] = []
            for index in range(clients):
                if index % 2 == 0:
                    sockets.append(silent_sse(port, f"/h/openai?{query}"))
                else:
                    frame = {"prompt": "Hi", "base_url": upstream.url}
                    sockets.append(silent_ws(port, "/ws/h/openai/", frame))
            peak = before
            deadline = time.monotonic() + LIMIT
            while time.monotonic() < deadline and (
                len(upstream.requests) < clients + 1 or not upstream.all_gone()
            ):
                peak = max(peak, rss(process.pid))
                time.sleep(0.1)
            for _ in range(20):  # what is still queued for the sockets settles
                peak = max(peak, rss(process.pid))
                time.sleep(0.1)
            for sock in sockets:
                sock.close()
    return before / MB, (peak - before) / MB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--flood-mb", type=int, default=60, help="MB the upstream offers")
    parser.add_argument("--without-cap", action="store_true", help="add a row without the cap")
    args = parser.parse_args()
    rows: list[tuple[str, int, float, float]] = []
    for clients in (1, 3, 6):
        before, grown = measure(clients, args.flood_mb, {})
        rows.append(("MAX_REPLY_CHARS 1,000,000 (default)", clients, before, grown))
    if args.without_cap:
        before, grown = measure(6, args.flood_mb, {"MAX_REPLY_CHARS": None})
        rows.append(("no cap (before)", 6, before, grown))
    print(
        f"daphne, {args.flood_mb} MB offered per reply, clients that never read "
        "(half SSE, half WebSocket)"
    )
    print(f"| {'setting':<36} | clients | RSS before (MB) | growth (MB) | per client (MB) |")
    print(f"|{'-' * 38}|--------:|----------------:|------------:|----------------:|")
    for label, clients, before, grown in rows:
        print(
            f"| {label:<36} | {clients:>7} | {before:>15.0f} | {grown:>11.0f} | "
            f"{grown / clients:>15.1f} |"
        )


if __name__ == "__main__":
    main()
