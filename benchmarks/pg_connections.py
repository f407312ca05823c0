"""PostgreSQL connections one daphne process holds while the chat serves many visitors.

    .venv/bin/python -m benchmarks.pg_connections [--chats 50,200] [--sockets 200]
                                                  [--slow 100] [--conn-max-age 0,60]
                                                  [--pool 0,20] [--pool-timeout 30]
                                                  [--idle 10] [--token-delay 0.01]

A PostgreSQL cluster (``tests.postgres_server``) and, for each ``CONN_MAX_AGE`` and each
``--pool`` size, a fresh database and a daphne serving the test project on it with
database sessions (``benchmarks.settings_pg_connections``). A pool size of 0 is no pool;
N is Django's native pool (psycopg_pool) of ``max_size`` N, ``min_size`` min(4, N) and
``timeout`` ``--pool-timeout`` seconds (Django refuses a pool with ``CONN_MAX_AGE`` above
0: those pairs are skipped). Every visitor has its own session (a
``GET /visitor`` first). A thread counts the database's rows in ``pg_stat_activity``
every 20 ms (its own connection is to another database). Scenarios, one after another:

- ``sse N``: N visitors each ``POST chat/stream`` at once, every demo reply streaming for
  a few seconds (``--token-delay`` between its ~350 tokens) and read to its end;
- ``ws N``: N visitors each open ``/ws/chat/`` and send a prompt at once; read to the
  reply's last frame (the sockets stay open for the "after" counts, then close);
- ``idle ws``: ``--sockets`` chat sockets opened, no prompt;
- ``slow sse``: ``--slow`` replies to a slow prompt (``slow:``, 20 s) open at once, each
  read to its first event.

Printed per scenario, as a Markdown table: the peak count while it ran, the count right
after its replies ended (or while its sockets or streams stay open), after ``--idle``
seconds more, the seconds until every reply ended (the idle sockets: until all opened;
the slow replies: until all started), and the replies that failed by error code
(``STORE_UNAVAILABLE``: the database refused a connection, "too many clients", or the
pool had none free for its whole ``timeout``). The counts are the database's every
connection: with ``CONN_MAX_AGE`` above 0 they include those of the visitors' earlier
requests, which wait for the garbage collector; with a pool, its idle ones. Daphne's log
goes to the temporary directory (its path on stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import threading
import time
from collections import Counter as Counter_
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
from websockets.asyncio.client import ClientConnection, connect

from tests.postgres_server import PostgresServer, postgres_server
from tests.servers import daphne_server, migrate

SETTINGS = "benchmarks.settings_pg_connections"
#: Seconds between two counts.
SAMPLE_EVERY = 0.02
LIMIT = 120.0


class Counter:
    """Counts the database's connections in a thread; ``peak()`` since the last ``reset()``."""

    def __init__(self, server: PostgresServer, database: str) -> None:
        self.connection = psycopg.connect(
            host=server.host, port=server.port, user=server.user, dbname="postgres",
            autocommit=True,
        )  # fmt: skip
        self.database = database
        self.highest = 0
        self.lock = threading.Lock()
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def now(self) -> int:
        with self.lock:
            row = self.connection.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (self.database,)
            ).fetchone()
        assert row is not None
        return int(row[0])

    def _run(self) -> None:
        while self.running:
            count = self.now()
            self.highest = max(self.highest, count)
            time.sleep(SAMPLE_EVERY)

    def reset(self) -> None:
        self.highest = self.now()

    def peak(self) -> int:
        return max(self.highest, self.now())

    def close(self) -> None:
        self.running = False
        self.thread.join()
        self.connection.close()


class Visitor:
    """One browser: its cookies (a session in the database), SSE and WebSocket chats."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = httpx.AsyncClient(base_url=url, timeout=LIMIT)

    async def arrive(self) -> None:
        arrived = await self.client.get("/visitor")
        if arrived.status_code != 204:
            raise RuntimeError(f"GET /visitor: {arrived.status_code}")

    @property
    def headers(self) -> dict[str, str]:
        return {"X-CSRFToken": self.client.cookies["csrftoken"]}

    async def sse_chat(self, prompt: str, started: asyncio.Event | None = None) -> str:
        """A reply over SSE, read to its end (with ``started``: to its first event, then
        held open until the task is cancelled); its error code, or "" for none."""
        async with self.client.stream(
            "POST", "/chat/stream", json={"prompt": prompt}, headers=self.headers
        ) as response:
            if response.status_code != 200:
                await response.aread()
                if started is not None:
                    started.set()
                return str(response.json().get("code", response.status_code))
            async for line in response.aiter_lines():
                if started is not None and line.startswith("data: "):
                    started.set()
                    await asyncio.Event().wait()
                if '"code":' in line:
                    return str(json.loads(line[len("data: ") :])["code"])
        return ""

    def websocket(self) -> Any:
        cookies = "; ".join(f"{k}={v}" for k, v in self.client.cookies.items())
        return connect(
            self.url.replace("http", "ws") + "/ws/chat/",
            origin=self.url,
            additional_headers={"Cookie": cookies},
            open_timeout=LIMIT,
        )


async def ws_chat(socket: ClientConnection, prompt: str) -> str:
    """A reply over the socket, read to its last frame; its error code, or "" for none."""
    await socket.send(json.dumps({"type": "prompt", "prompt": prompt}))
    while True:
        frame = json.loads(await socket.recv())
        if frame["type"] in {"complete", "error", "cancelled"}:
            return str(frame.get("code", ""))


async def visitors(url: str, count: int) -> list[Visitor]:
    made = [Visitor(url) for _ in range(count)]
    for start in range(0, count, 20):
        await asyncio.gather(*(v.arrive() for v in made[start : start + 20]))
    return made


async def close_all(made: list[Visitor]) -> None:
    await asyncio.gather(*(v.client.aclose() for v in made))


async def settled(counter: Counter, seconds: float) -> int:
    await asyncio.sleep(seconds)
    return counter.now()


def refusals(codes: list[str]) -> str:
    """The replies that failed, by error code ("-" for none)."""
    failed = Counter_(code for code in codes if code)
    return ", ".join(f"{n} {code}" for code, n in failed.most_common()) or "-"


#: Peak, after, after idling, the seconds until every reply ended (or started), failures.
Row = tuple[int, int, int, float, str]


async def sse_burst(url: str, counter: Counter, chats: int, idle: float) -> Row:
    made = await visitors(url, chats)
    counter.reset()
    began = time.monotonic()
    codes = await asyncio.gather(*(v.sse_chat(f"Hello {n}") for n, v in enumerate(made)))
    peak, after = counter.peak(), counter.now()
    took = time.monotonic() - began
    await close_all(made)
    return peak, after, await settled(counter, idle), took, refusals(codes)


async def ws_burst(url: str, counter: Counter, chats: int, idle: float) -> Row:
    made = await visitors(url, chats)
    sockets = [await v.websocket() for v in made]
    counter.reset()
    began = time.monotonic()
    codes = await asyncio.gather(*(ws_chat(s, f"Hello {n}") for n, s in enumerate(sockets)))
    peak, after = counter.peak(), counter.now()
    took = time.monotonic() - began
    open_after_idle = await settled(counter, idle)
    await asyncio.gather(*(s.close() for s in sockets))
    await close_all(made)
    return peak, after, open_after_idle, took, refusals(codes)


async def idle_sockets(url: str, counter: Counter, count: int, idle: float) -> Row:
    made = await visitors(url, count)
    counter.reset()
    began = time.monotonic()
    sockets = [await v.websocket() for v in made]
    peak, after = counter.peak(), counter.now()
    took = time.monotonic() - began
    open_after_idle = await settled(counter, idle)
    await asyncio.gather(*(s.close() for s in sockets))
    await close_all(made)
    return peak, after, open_after_idle, took, "-"


async def slow_streams(url: str, counter: Counter, count: int, idle: float) -> Row:
    made = await visitors(url, count)
    counter.reset()
    began = time.monotonic()
    started = [asyncio.Event() for _ in made]
    tasks = [
        asyncio.create_task(v.sse_chat(f"slow: {n}", event))
        for n, (v, event) in enumerate(zip(made, started, strict=True))
    ]
    await asyncio.gather(*(event.wait() for event in started))
    peak, after = counter.peak(), counter.now()
    took = time.monotonic() - began
    open_after_idle = await settled(counter, idle)
    codes = [task.result() for task in tasks if task.done()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await close_all(made)
    return peak, after, open_after_idle, took, refusals(codes)


@contextmanager
def served(
    server: PostgresServer, conn_max_age: int, pool: int, pool_timeout: float, token_delay: float
) -> Iterator[tuple[str, str]]:
    name = f"conns_{conn_max_age}_{pool}_{int(time.time())}"
    server.create_database(name)
    env = {
        "DJANGO_SETTINGS_MODULE": SETTINGS,
        "STREAMING_TEST_POSTGRES": f"{server.host}:{server.port}",
        "DJANGO_DB": name,
        "BENCH_CONN_MAX_AGE": str(conn_max_age),
        "BENCH_POOL": str(pool),
        "BENCH_POOL_TIMEOUT": str(pool_timeout),
        "BENCH_TOKEN_DELAY": str(token_delay),
    }
    migrate(env)
    log = Path(tempfile.gettempdir()) / f"{name}.log"
    print(f"daphne's log: {log}", file=sys.stderr)
    with daphne_server("tests.asgi:application", env=env, log=log) as url:
        yield url, name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", default="50,200")
    parser.add_argument("--sockets", type=int, default=200)
    parser.add_argument("--slow", type=int, default=100)
    parser.add_argument("--conn-max-age", default="0,60")
    parser.add_argument("--pool", default="0", help="pool sizes (max_size), 0 for none")
    parser.add_argument("--pool-timeout", type=float, default=30.0)
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument("--token-delay", type=float, default=0.01)
    args = parser.parse_args()
    chats = [int(n) for n in args.chats.split(",")]
    ages = [int(a) for a in args.conn_max_age.split(",")]
    pools = [int(p) for p in args.pool.split(",")]
    print(f"| CONN_MAX_AGE | pool | scenario | peak | after | after {args.idle:g} s | s | failed |")
    print("|---|---:|---|---:|---:|---:|---:|---|", flush=True)
    with postgres_server() as server:
        for age, pool in ((a, p) for a in ages for p in pools if not (a and p)):
            with served(server, age, pool, args.pool_timeout, args.token_delay) as (url, name):
                counter = Counter(server, name)
                scenarios: list[tuple[str, Coroutine[Any, Any, Row]]] = []
                for n in chats:
                    scenarios.append((f"sse {n}", sse_burst(url, counter, n, args.idle)))
                    scenarios.append((f"ws {n}", ws_burst(url, counter, n, args.idle)))
                scenarios.append(
                    (f"idle ws {args.sockets}", idle_sockets(url, counter, args.sockets, args.idle))
                )
                scenarios.append(
                    (f"slow sse {args.slow}", slow_streams(url, counter, args.slow, args.idle))
                )
                try:
                    for scenario, run in scenarios:
                        try:
                            peak, after, idle, took, failed = asyncio.run(run)
                        except Exception as exc:  # the row says what stopped the scenario
                            peak, after, idle, took = counter.peak(), counter.now(), -1, -1.0
                            failed = f"stopped: {exc!r}"[:120]
                        print(f"| {age} | {pool} | {scenario} | {peak} | {after} | {idle} "
                              f"| {took:.1f} | {failed} |", flush=True)  # fmt: skip
                finally:
                    counter.close()


if __name__ == "__main__":
    main()
