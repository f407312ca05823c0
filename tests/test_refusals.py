"""Requests the transports refuse, over a real daphne: other sites starting replies,
failed CSRF checks, wrong methods, denied permissions. Every refusal is a JSON
``{"error", "code"}`` with its status, never Django's HTML page."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from streaming.testing import parse_sse

from .conftest import probe
from .servers import daphne_server, sqlite_database

LIMIT = 10.0
QUICK = {"size": "500", "pipeline": "passthrough"}


@pytest.fixture
def browser(live_url: str) -> Iterator[httpx.Client]:
    """A visitor with a session and a CSRF cookie, as the chat page leaves them."""
    with httpx.Client(base_url=live_url, timeout=LIMIT) as client:
        client.get("/")
        yield client


def refusal(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["code"] == code and isinstance(body["error"], str)
    return str(body["error"])


# ----------------------------------------------------------------------- cross-site
@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"},
        {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
        {"Origin": "https://evil.example"},
        {"Sec-Fetch-Site": "same-site", "Origin": "http://127.0.0.1:1"},
        {"Origin": "null"},
    ],
)
def test_another_site_cannot_start_a_reply_with_get(
    http: httpx.Client, headers: dict[str, str]
) -> None:
    """An ``<img src=/chat/stream?prompt=…>`` or an ``EventSource`` on another site."""
    key = uuid.uuid4().hex
    response = http.get("/sse/scripted", params={**QUICK, "key": key}, headers=headers)
    assert refusal(response, 403, "CROSS_SITE").startswith("Replies cannot be started from")
    assert probe(http, key) == []  # nothing started
    chat = http.get("/chat/stream", params={"prompt": "Hi"}, headers=headers)
    refusal(chat, 403, "CROSS_SITE")


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": "http://evil.example"},
        {"Sec-Fetch-Site": "cross-site", "Origin": "http://evil.example"},
    ],
)
@pytest.mark.parametrize("with_token", [True, False])
def test_another_site_cannot_start_a_reply_with_post(
    browser: httpx.Client, headers: dict[str, str], with_token: bool
) -> None:
    """``CROSS_SITE``, with or without the CSRF token (which another site cannot read): the
    origin is checked before the CSRF check, which a foreign ``Origin`` fails too."""
    if with_token:
        headers = {**headers, "X-CSRFToken": browser.cookies["csrftoken"]}
    response = browser.post("/sse/scripted", json={"prompt": "Hi"}, headers=headers)
    refusal(response, 403, "CROSS_SITE")


def test_a_post_without_the_csrf_token_from_this_site_is_a_csrf_failure(
    browser: httpx.Client,
) -> None:
    response = browser.post("/sse/scripted", json={"prompt": "Hi"})
    refusal(response, 403, "CSRF_FAILED")


@pytest.mark.parametrize(
    "headers",
    [
        {},  # curl, a server, an SDK
        {"Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},  # typed into the address bar
    ],
)
def test_own_pages_and_non_browser_clients_start_replies(
    live_url: str, http: httpx.Client, headers: dict[str, str]
) -> None:
    own = {**headers, "Origin": live_url} if headers else headers
    events = parse_sse(http.get("/sse/scripted", params=QUICK, headers=own).content)
    assert json.loads(events[-1].data) == {"done": True}


def test_resuming_from_another_site_starts_nothing_and_is_allowed(browser: httpx.Client) -> None:
    events = parse_sse(browser.get("/sse/keep", params=QUICK).content)
    resumed = browser.get(
        "/sse/keep",
        headers={"Last-Event-ID": events[0].id or "", "Sec-Fetch-Site": "cross-site"},
    )
    assert resumed.status_code == 200
    assert json.loads(parse_sse(resumed.content)[-1].data) == {"done": True}


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://127.0.0.1:1"},  # another port: AllowedHostsOriginValidator lets it in
        {"Origin": "https://evil.example"},
        {"Sec-Fetch-Site": "cross-site"},
    ],
)
async def test_another_site_cannot_open_the_websocket(
    live_url: str, headers: dict[str, str]
) -> None:
    url = live_url.replace("http://", "ws://") + "/ws/scripted/"
    origin = headers.pop("Origin", live_url)
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, origin=origin, additional_headers=headers):  # type: ignore[arg-type]
            pass
    assert refused.value.response.status_code == 403


async def test_the_own_origin_opens_the_websocket(live_url: str) -> None:
    url = live_url.replace("http://", "ws://") + "/ws/scripted/"
    async with connect(url, origin=live_url) as socket:  # type: ignore[arg-type]
        await socket.send(json.dumps({"type": "ping"}))
        assert json.loads(await socket.recv()) == {"type": "pong"}


# ------------------------------------------------------------ CSRF, methods, permissions
def test_a_post_without_the_csrf_token_is_a_json_403(browser: httpx.Client) -> None:
    response = browser.post("/sse/scripted", json={"prompt": "Hi"})
    message = refusal(response, 403, "CSRF_FAILED")
    assert "CSRF token" in message


def test_a_delete_without_the_csrf_token_is_a_json_403(browser: httpx.Client) -> None:
    refusal(browser.delete("/sse/keep?id=abc"), 403, "CSRF_FAILED")


@pytest.mark.parametrize("path", ["/sse/exempt/class", "/sse/exempt/dispatch", "/sse/exempt/url"])
def test_a_view_the_project_exempted_from_csrf_takes_posts_and_stops_without_the_token(
    browser: httpx.Client, path: str
) -> None:
    """``csrf_exempt = True``, ``method_decorator(csrf_exempt, name="dispatch")`` or
    ``csrf_exempt(View.as_view())``: a client that authenticates by a header posts
    prompts and stops replies without the token; another site is still refused."""
    response = browser.post(path, json={"prompt": "Hi", **QUICK})
    assert response.status_code == 200, response.text
    assert json.loads(parse_sse(response.content)[-1].data) == {"done": True}
    refusal(browser.delete(f"{path}?id={uuid.uuid4().hex}"), 404, "NOT_FOUND")
    refusal(
        browser.post(path, json={"prompt": "Hi"}, headers={"Origin": "http://evil.example"}),
        403,
        "CROSS_SITE",
    )


def test_another_decorator_around_the_view_keeps_the_csrf_check(browser: httpx.Client) -> None:
    """Decorators copy the view's own exempt mark (``functools.wraps``): only Django's
    ``csrf_exempt`` itself exempts it."""
    refusal(browser.post("/sse/exempt/not", json={"prompt": "Hi"}), 403, "CSRF_FAILED")
    refusal(browser.delete(f"/sse/exempt/not?id={uuid.uuid4().hex}"), 403, "CSRF_FAILED")


def test_the_csrf_token_still_lets_a_post_through(browser: httpx.Client) -> None:
    response = browser.post(
        "/chat/stream",
        json={"prompt": "Hi", "pipeline": "passthrough"},
        headers={"X-CSRFToken": browser.cookies["csrftoken"]},
    )
    assert json.loads(parse_sse(response.content)[-1].data) == {"done": True}


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_another_method_is_a_json_405_naming_the_allowed_ones(
    http: httpx.Client, method: str
) -> None:
    response = http.request(method, "/chat/stream")
    message = refusal(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers["Allow"] == "GET, POST, DELETE, OPTIONS"
    assert "GET, POST, DELETE, OPTIONS" in message and method in message


def test_denied_permissions_are_a_json_403(http: httpx.Client) -> None:
    key = uuid.uuid4().hex
    message = refusal(http.get("/sse/denied", params={"key": key}), 403, "FORBIDDEN")
    assert message == "No streams for you"
    assert probe(http, key) == []


async def test_a_websocket_path_no_route_serves_is_refused_without_a_traceback(
    tmp_path: Path,
) -> None:
    """``unknown_path`` last in the router: a 403 handshake, where Channels' "No route
    found" was a 500 and a traceback in the log for each one."""
    log = tmp_path / "daphne.log"
    with sqlite_database() as env, daphne_server("tests.asgi:application", env=env, log=log) as url:
        for path in ("/ws/chat", "/ws/nope/", "/chat/stream"):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(url.replace("http://", "ws://") + path, origin=url):  # type: ignore[arg-type]
                    pass
            assert refused.value.response.status_code == 403, path
        async with connect(url.replace("http://", "ws://") + "/ws/scripted/", origin=url) as socket:  # type: ignore[arg-type]
            await socket.send(json.dumps({"type": "ping"}))
            assert json.loads(await socket.recv()) == {"type": "pong"}
    assert "No route found" not in log.read_text()
    assert "Traceback" not in log.read_text()
