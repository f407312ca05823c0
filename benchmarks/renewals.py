"""What a process pays to keep its running replies alive in the store: the lease of each
reply and its places in the limits, renewed while it runs, idle or not.

    .venv/bin/python -m benchmarks.renewals [--replies 10000] [--rounds 5]

N running replies, each with a lease and two places (its owner's and its address's
quota), renewed as ``Generations`` renews them (``renewal_slices``): ``RENEW_SLICE``
replies per store call, the event loop let run in between, or one call for all with
process leases. Two layouts: every reply its own owner and address (visitors of a public
site), and the replies sharing one address and a few owners (one office behind a proxy).
Redis twice: with a lease per reply and place, and with one lease per process
(``process_leases``). Per renewal of all N: this process's CPU, and with Redis the script
time ``INFO commandstats`` counts in redis-server; then what that costs in % of a core at
the renewals' cadence (leases every third of ``LEASE_SECONDS``, places every
``limits.RENEW_EVERY``). Median of the rounds.

Then, with process leases, what a process that died holding N places costs the processes
that give them back: its lapse is set in the registry, and another store instance takes
places until they are all given back (about 1,000 holders' places per call), each call
holding redis-server for its script.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.asyncio import Redis

from benchmarks.idle_memory import command_stats
from streaming.conf import setting
from streaming.generations import renewal_slices
from streaming.limits import RENEW_EVERY, Limits, Reservation, reserve
from streaming.store.base import EventStore, Quota
from streaming.store.memory import MemoryStore
from streaming.store.redis import RedisStore
from tests.redis_server import redis_server

#: Owners the replies share in the shared layout.
SHARED_OWNERS = 50
LAYOUTS = {"own": "own owner and address", "shared": f"{SHARED_OWNERS} owners, 1 address"}


async def reserve_all(store: EventStore, replies: int, layout: str) -> list[Reservation]:
    """The places of ``replies`` replies, taken as a transport takes them (``reserve``):
    an owner's and an address's quota each."""
    limits = Limits(max_active_per_owner=replies, max_active_per_address=replies)
    reservations = []
    for n in range(replies):
        owner, address = (n, n) if layout == "own" else (n % SHARED_OWNERS, 0)
        where = f"10.0.{address // 256 % 256}.{address % 256}"
        reservations.append(await reserve(store, limits, owner=f"owner-{owner}", address=where))
    return reservations


async def timed(
    store: EventStore,
    renew: Callable[[Sequence[Any]], Awaitable[None]],
    items: list[Any],
    redis_usec: Callable[[], int],
) -> tuple[float, float]:
    """Milliseconds of this process's CPU and of redis-server's scripts for one renewal of
    ``items`` (a reply each), a slice per call."""
    cpu, server = time.process_time(), redis_usec()
    for chunk in renewal_slices(store, items):
        await renew(chunk)
        await asyncio.sleep(0)
    return (time.process_time() - cpu) * 1e3, (redis_usec() - server) / 1e3


async def measure(
    store: EventStore, replies: int, layout: str, rounds: int, redis_usec: Callable[[], int]
) -> dict[str, tuple[float, float]]:
    """Median (process ms, redis-server ms) per renewal of the leases and of the places."""
    lease = float(setting("LEASE_SECONDS"))
    ids = [uuid.uuid4().hex for _ in range(replies)]
    for stream_id in ids:
        await store.create(stream_id, owner="bench", lease=lease)
    reservations = await reserve_all(store, replies, layout)
    places = [(reservation.holder, reservation.active) for reservation in reservations]
    kinds: dict[str, tuple[Callable[[Sequence[Any]], Awaitable[None]], list[Any]]] = {
        "leases": (lambda chunk: store.renew_leases(chunk, lease), ids),
        "places": (store.renew_many_quotas, places),
    }
    medians = {}
    for kind, (renew, items) in kinds.items():
        runs = [await timed(store, renew, items, redis_usec) for _ in range(rounds)]
        medians[kind] = (
            statistics.median(run[0] for run in runs),
            statistics.median(run[1] for run in runs),
        )
    for reservation in reservations:
        await reservation.release()
    return medians


async def sweep(url: str, replies: int, layout: str) -> tuple[int, int, float, float, int]:
    """A process holding ``replies`` replies' places dies, and another one takes places
    until they are all given back: (places held, calls, longest and total ms of
    redis-server's script time in them, places left)."""
    dead, alive = RedisStore(url=url, process_leases=True), RedisStore(url=url, process_leases=True)
    raw = Redis.from_url(url)
    usec = script_usec(url)
    prefix = f"{dead.key_prefix}{{quotas}}:"
    try:
        await reserve_all(dead, replies, layout)
        quotas = [key async for key in raw.scan_iter(f"{prefix}active:*")]
        held = sum([await raw.zcard(key) for key in quotas])
        await raw.zadd(f"{prefix}processes", {dead.process: 0})  # its lease lapsed
        calls: list[float] = []
        while await raw.exists(f"{prefix}process:{dead.process}") and len(calls) < replies:
            before = usec()
            limits = Limits(max_active_per_owner=1)
            late = await reserve(alive, limits, owner=f"late-{len(calls)}", address="10.1.0.0")
            calls.append((usec() - before) / 1e3)
            await late.release()
        left = sum([await raw.zcard(key) for key in quotas])
        return held, len(calls), max(calls), sum(calls), left
    finally:
        await raw.flushdb()
        await raw.aclose()
        await dead.close()
        await alive.close()


async def full_quota(url: str, limit: int, dead: int, replies: int) -> tuple[float, bool]:
    """The most a full quota's look at lapsed processes costs: ``limit`` places of one
    address, all held by a live process, while ``dead`` processes of ``replies`` replies
    each lapsed (the sweep gives back only 1,000 holders first). (ms of redis-server's
    script time for an acquire there, whether it was refused.)"""
    alive, late = RedisStore(url=url, process_leases=True), RedisStore(url=url, process_leases=True)
    gone = [RedisStore(url=url, process_leases=True) for _ in range(dead)]
    raw = Redis.from_url(url)
    usec = script_usec(url)
    try:
        by_address, per_owner = Limits(max_active_per_address=limit), Limits(max_active_per_owner=1)
        for n in range(limit):
            await reserve(alive, by_address, owner=f"here-{n}", address="10.2.0.0")
        for number, store in enumerate(gone):
            for n in range(replies):
                await reserve(store, per_owner, owner=f"gone-{number}-{n}", address="10.3.0.0")
        for store in gone:  # all lapsed at once (earlier, each next one's acquires sweep it)
            await raw.zadd(f"{store.key_prefix}{{quotas}}:processes", {store.process: 0})
        before = usec()
        refused = await late.acquire_quotas("late", [Quota("active:address:10.2.0.0", limit, 30)])
        return (usec() - before) / 1e3, refused is not None
    finally:
        await raw.flushdb()
        await raw.aclose()
        for store in (alive, late, *gone):
            await store.close()


def script_usec(url: str) -> Callable[[], int]:
    """Microseconds redis-server spent in scripts so far (``INFO commandstats``)."""

    def usec() -> int:
        stats = command_stats(url)
        return sum(stats.get(name, (0, 0))[1] for name in ("evalsha", "eval"))

    return usec


async def run(args: argparse.Namespace) -> None:
    every = {"leases": float(setting("LEASE_SECONDS")) / 3, "places": RENEW_EVERY}
    cadence = f"leases every {every['leases']:.1f} s, places every {every['places']:.0f} s"
    print(f"\n{args.replies:,} running replies, median of {args.rounds} renewals; {cadence}")
    print("| store | each reply's quotas | renewal | process ms | redis-server ms | % of a core |")
    print("|---|---|---|---:|---:|---:|")
    with redis_server() as server:
        stores: list[tuple[str, Callable[[], EventStore], Callable[[], int]]] = [
            ("memory", MemoryStore, lambda: 0),
            ("Redis", lambda: RedisStore(url=server.url), script_usec(server.url)),
            (
                "Redis, process leases",
                lambda: RedisStore(url=server.url, process_leases=True),
                script_usec(server.url),
            ),
        ]
        for name, make, usec in stores:
            for layout, label in LAYOUTS.items():
                store = make()
                try:
                    medians = await measure(store, args.replies, layout, args.rounds, usec)
                finally:
                    await store.close()
                for kind, (process, redis_ms) in medians.items():
                    share = (process + redis_ms) / every[kind] / 10
                    server_ms = f"{redis_ms:.1f}" if name != "memory" else "-"
                    print(
                        f"| {name} | {label} | {kind} | {process:.1f} | {server_ms} | {share:.2f} |"
                    )
        print(f"\nA process dies holding the places of {args.replies:,} replies (process leases);")
        print("another takes places until they are given back (redis-server's script ms)")
        print("| each reply's quotas | places held | calls | longest call ms | total ms "
              "| places left |")  # fmt: skip
        print("|---|---:|---:|---:|---:|---:|")
        for layout, label in LAYOUTS.items():
            held, calls, longest, total, left = await sweep(server.url, args.replies, layout)
            print(f"| {label} | {held:,} | {calls} | {longest:.1f} | {total:.1f} | {left:,} |")
        print("\nAn acquire in a quota full of live places while 8 processes lapsed")
        print("| quota's limit | replies of each lapsed process | redis-server ms | refused |")
        print("|---:|---:|---:|---|")
        for limit, replies in ((1000, 1000), (5000, 3000)):
            took, refused = await full_quota(server.url, limit, 8, replies)
            print(f"| {limit:,} | {replies:,} | {took:.1f} | {refused} |")


def main() -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings_capacity")
    django.setup()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--replies", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
