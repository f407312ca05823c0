"""Shared fixtures: one daphne server for the session, HTTP helpers."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from .servers import daphne_server


@pytest.fixture(scope="session")
def live_url() -> Iterator[str]:
    """Base URL of a real daphne serving the test project on 127.0.0.1."""
    with daphne_server() as url:
        yield url


@pytest.fixture
def http(live_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_url, timeout=10) as client:
        yield client


def probe(client: httpx.Client, key: str) -> list[str]:
    """What the server process recorded under ``key`` (see tests/routes.py)."""
    return list(client.get(f"/probe/{key}").json())
