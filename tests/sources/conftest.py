"""Fixtures for the source tests: scripted upstream servers on 127.0.0.1."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from .upstream import Script, Upstream

Serve = Callable[[Script], Awaitable[Upstream]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start an upstream running a script; every one started is stopped after the test."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(script: Script) -> Upstream:
            return await stack.enter_async_context(Upstream(script))

        yield start
