"""Two deployments on one real redis-server (staging and production, two apps), each two
daphne processes with settings of their own (``tests.settings_deployment``) and an SQLite
file of their own, told apart either by ``key_prefix`` (one database number) or by the database
number of the URL (one prefix). Neither sees the other: its limits' counts, its replies
(resumed or cancelled on the other: ``NOT_FOUND``), its cancel requests and wake-ups.
Both forms of leases (``process_leases``) are used, one per deployment.

The same owner's signed session cookie is valid on both (one ``SECRET_KEY``), so a
refusal on the other deployment comes from the store, not from the owner."""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from redis import Redis

from streaming.sse import ParsedEvent, SSEParser
from streaming.testing import parse_sse

from .redis_server import needs_redis, redis_server
from .servers import daphne_server, sqlite_database
from .sse_reading import events_until

pytestmark = [
    needs_redis,
    # Four daphne processes in all: slow to start on a loaded machine.
    pytest.mark.timeout(300),
]

LIMIT = 20.0
#: A reply that runs for about 7 s unless it is cancelled.
SLOW = {"delay": "0.05", "size": "1", "pipeline": "passthrough"}
#: A reply that ends at once.
QUICK = {"size": "500", "pipeline": "passthrough"}
_addresses = itertools.count(1)


def new_address() -> str:
    """A client address of its own for one test (forwarded by the trusted 127.0.0.1)."""
    n = next(_addresses)
    return f"203.0.113.{n}"


@dataclass(frozen=True)
class Deployment:
    """One deployment: its two server processes' URLs and where its store keeps its keys."""

    url: str
    peer: str
    redis_url: str
    key_prefix: str


@contextlib.contextmanager
def deployment(redis_url: str, key_prefix: str, process_leases: bool) -> Iterator[Deployment]:
    """Two daphne processes of ``tests.settings_deployment`` on an SQLite file of their
    own, as behind one load balancer."""
    options = {"url": redis_url, "key_prefix": key_prefix, "process_leases": process_leases}
    env = {
        "DJANGO_SETTINGS_MODULE": "tests.settings_deployment",
        "STREAMING_TEST_STORE": json.dumps(options),
    }
    with (
        sqlite_database() as database,
        daphne_server("tests.asgi:application", env={**env, **database}) as url,
        daphne_server("tests.asgi:application", env={**env, **database}) as peer,
    ):
        yield Deployment(url, peer, redis_url, key_prefix)


@pytest.fixture(scope="module", params=["key_prefix", "database_number"])
def deployments(request: pytest.FixtureRequest) -> Iterator[tuple[Deployment, Deployment]]:
    """Deployments A and B on a redis-server of their own: prefixes "a:" and "b:" on
    database 0, or the default prefix on databases 0 and 1."""
    with contextlib.ExitStack() as stack:
        base = stack.enter_context(redis_server()).url.rsplit("/", 1)[0]
        if request.param == "key_prefix":
            where = [(f"{base}/0", "a:"), (f"{base}/0", "b:")]
        else:
            where = [(f"{base}/0", "streaming:"), (f"{base}/1", "streaming:")]
        first = stack.enter_context(deployment(*where[0], process_leases=False))
        second = stack.enter_context(deployment(*where[1], process_leases=True))
        yield first, second


@contextlib.contextmanager
def visitor(url: str, address: str, cookies: httpx.Cookies | None = None) -> Iterator[httpx.Client]:
    """A browser-like client with its own address: the session's owner (``cookies``, or
    a new one)."""
    headers = {"X-Forwarded-For": address}
    with httpx.Client(base_url=url, timeout=LIMIT, headers=headers, cookies=cookies) as client:
        if cookies is None:
            client.get("/visitor")
        yield client


def events_of(response: httpx.Response) -> Iterator[ParsedEvent]:
    """The events of a streaming response as they come, to its end."""
    parser = SSEParser()
    for chunk in response.iter_raw():
        yield from parser.feed(chunk)


def last_data(response: httpx.Response) -> dict[str, object]:
    """The data of a finished SSE response's last event."""
    data: dict[str, object] = json.loads(parse_sse(response.content)[-1].data)
    return data


def csrf(client: httpx.Client) -> dict[str, str]:
    return {"X-CSRFToken": client.cookies["csrftoken"]}


def kept_reply(client: httpx.Client) -> str:
    """Start a slow reply that runs on without its client; the id of its second event."""
    with client.stream("GET", "/sse/keep", params=SLOW) as response:
        assert response.status_code == 200
        return events_until(response, 2)[-1].id or ""


def test_an_address_that_used_up_its_starts_on_one_deployment_starts_on_the_other(
    deployments: tuple[Deployment, Deployment],
) -> None:
    first, second = deployments
    address = new_address()
    with visitor(first.url, address) as client:
        for _ in range(4):
            assert client.get("/sse/scripted", params=QUICK).status_code == 200
        refused = client.get("/sse/scripted", params=QUICK)
        assert refused.status_code == 429 and refused.json()["code"] == "RATE_LIMITED"
        cookies = client.cookies
    with visitor(second.url, address, cookies) as client:
        response = client.get("/sse/scripted", params=QUICK)
        assert response.status_code == 200
        assert last_data(response) == {"done": True}


def test_an_address_that_used_up_its_new_conversations_on_one_creates_one_on_the_other(
    deployments: tuple[Deployment, Deployment],
) -> None:
    first, second = deployments
    address = new_address()
    with visitor(first.url, address) as client:
        for _ in range(2):
            response = client.post("/chat/conversations", json={}, headers=csrf(client))
            assert response.status_code == 201, response.text
        refused = client.post("/chat/conversations", json={}, headers=csrf(client))
        assert refused.status_code == 429 and refused.json()["code"] == "RATE_LIMITED"
        cookies = client.cookies
    with visitor(second.url, address, cookies) as client:
        response = client.post("/chat/conversations", json={}, headers=csrf(client))
        assert response.status_code == 201, response.text


def test_an_owner_running_its_most_replies_on_one_deployment_starts_one_on_the_other(
    deployments: tuple[Deployment, Deployment],
) -> None:
    """MAX_ACTIVE_PER_OWNER (3) and, with one address, MAX_ACTIVE_PER_ADDRESS."""
    first, second = deployments
    address = new_address()
    with visitor(first.url, address) as client, contextlib.ExitStack() as running:
        streams = [
            running.enter_context(client.stream("GET", "/sse/scripted", params=SLOW))
            for _ in range(3)
        ]
        assert [stream.status_code for stream in streams] == [200, 200, 200]
        refused = client.get("/sse/scripted", params=QUICK)
        assert refused.status_code == 429 and refused.json()["code"] == "TOO_MANY_REPLIES"
        with visitor(second.url, address, client.cookies) as other:
            response = other.get("/sse/scripted", params=QUICK)
            assert response.status_code == 200
            assert last_data(response) == {"done": True}


def test_a_reply_of_one_deployment_is_not_found_on_the_other_and_runs_on(
    deployments: tuple[Deployment, Deployment],
) -> None:
    """Resumed or cancelled on B with the owner's own cookie, A's reply is ``NOT_FOUND``;
    A still serves all of it, uncancelled. And the other way round."""
    for home, away in (deployments, deployments[::-1]):
        with visitor(home.url, new_address()) as owner:
            event_id = kept_reply(owner)
            with visitor(away.url, new_address(), owner.cookies) as client:
                resumed = client.get("/sse/keep", headers={"Last-Event-ID": event_id})
                assert resumed.status_code == 404 and resumed.json()["code"] == "NOT_FOUND"
                generation = event_id.split(":")[0]
                cancelled = client.delete(f"/sse/keep?id={generation}", headers=csrf(client))
                assert cancelled.status_code == 404
            rest = owner.get("/sse/keep", headers={"Last-Event-ID": event_id})
            assert last_data(rest) == {"done": True}


def test_cancel_requests_and_followers_of_one_deployment_touch_none_of_the_others(
    deployments: tuple[Deployment, Deployment],
) -> None:
    """Each deployment's reply followed on its other process (its shared reader, woken
    through its wake-up stream); one of them cancelled from its other process (through
    its cancel feed): that reply ends ``ABORTED``, the other deployment's gets to its end."""
    for home, away in (deployments, deployments[::-1]):
        with (
            visitor(home.url, new_address()) as home_owner,
            visitor(away.url, new_address()) as away_owner,
        ):
            home_event = kept_reply(home_owner)
            away_event = kept_reply(away_owner)
            with (
                visitor(away.peer, new_address(), away_owner.cookies) as client,
                client.stream(
                    "GET", "/sse/keep", headers={"Last-Event-ID": away_event}
                ) as away_follower,
                visitor(home.peer, new_address(), home_owner.cookies) as home_client,
                home_client.stream(
                    "GET", "/sse/keep", headers={"Last-Event-ID": home_event}
                ) as home_follower,
            ):
                away_events = events_of(away_follower)
                home_events = events_of(home_follower)
                next(away_events)
                next(home_events)
                generation = home_event.split(":")[0]
                cancelled = home_client.delete(
                    f"/sse/keep?id={generation}", headers=csrf(home_client)
                )
                assert cancelled.status_code == 204
                assert json.loads([*home_events][-1].data)["code"] == "ABORTED"
                assert json.loads([*away_events][-1].data) == {"done": True}


def test_every_key_carries_its_deployments_prefix_and_nothing_is_published(
    deployments: tuple[Deployment, Deployment],
) -> None:
    """After a reply on each (and what the tests before left), each database
    holds only keys of its deployments' prefixes; no command used pub/sub, which database
    numbers do not scope."""
    for one in deployments:
        with visitor(one.url, new_address()) as client:
            assert client.get("/sse/scripted", params=QUICK).status_code == 200
    for one in deployments:
        listed = Redis.from_url(one.redis_url, decode_responses=True).keys("*")
        keys = [str(key) for key in listed]
        prefixes = tuple(d.key_prefix for d in deployments if d.redis_url == one.redis_url)
        assert any(key.startswith(one.key_prefix) for key in keys)
        assert [key for key in keys if not key.startswith(prefixes)] == []
    server = Redis.from_url(deployments[0].redis_url, decode_responses=True)
    commands = server.info("commandstats")
    assert [name for name in commands if "publish" in name or "subscribe" in name] == []
    assert server.pubsub_channels() == []
