"""``Stream`` across threads: ``send()`` from another thread and a sync generator read in a
worker thread hand every message over, in order, to the ASGI body and to the WSGI body.

The interpreter switches threads every microsecond here, so a hand-over that is not
atomic loses messages (it did: hundreds of 200,000).
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable, Iterator

import pytest
from django.test import override_settings

from streaming import Stream

MESSAGES = 200_000
RUNS = 3


@pytest.fixture(autouse=True)
def fast_thread_switches() -> Iterator[None]:
    interval = sys.getswitchinterval()
    # Room for every message: the sender never waits for the reader here.
    with override_settings(STREAMING={"MAX_QUEUE": MESSAGES + 1}):
        sys.setswitchinterval(1e-6)
        try:
            yield
        finally:
            sys.setswitchinterval(interval)


def numbers(body: bytes) -> list[int]:
    """The data of every message of a body, as numbers."""
    return [int(line[6:]) for line in body.split(b"\n") if line.startswith(b"data: ")]


def sent_from_a_thread() -> Stream:
    stream = Stream()

    def send_all() -> None:
        for n in range(MESSAGES):
            stream.send(str(n))
        stream.close()

    threading.Thread(target=send_all, daemon=True).start()
    return stream


def from_a_sync_generator() -> Stream:
    return Stream(str(n) for n in range(MESSAGES))


def asgi_body(stream: Stream) -> bytes:
    async def read() -> bytes:
        return b"".join([chunk async for chunk in stream])

    return asyncio.run(read())


def wsgi_body(stream: Stream) -> bytes:
    return b"".join(iter(stream))


@pytest.mark.parametrize("run", range(RUNS))
@pytest.mark.parametrize("make", [sent_from_a_thread, from_a_sync_generator])
@pytest.mark.parametrize("read", [asgi_body, wsgi_body])
def test_every_message_arrives_in_order(
    make: Callable[[], Stream], read: Callable[[Stream], bytes], run: int
) -> None:
    received = numbers(read(make()))
    assert len(received) == MESSAGES, f"{MESSAGES - len(received)} messages lost"
    assert received == list(range(MESSAGES))
