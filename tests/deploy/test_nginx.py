"""The README's production set-up, for real: Debian's nginx with ``deploy/nginx.conf`` on TLS
in front of two daphne processes (``deploy/streaming@.service``) sharing a redis-server,
with ``deploy/settings_production.py`` (``DEBUG = False``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from streaming.conf import DEFAULTS
from streaming.sources.demo import DemoModel
from streaming.sse import ParsedEvent, SSEParser
from streaming.testing import parse_sse

from ..redis_server import require_redis
from ..servers import ROOT, free_port, require_installed, stop_process, wait_for_port
from ..sse_reading import events_until
from .nginx import NGINX, SHIPPED, nginx
from .stack import (
    SHIPPED_DAPHNE,
    Stack,
    nginx_config,
    production_env,
    production_stack,
    unit_command,
    unit_entries,
)

LIMIT = 20.0
#: The demo model as the production settings run it (the default DEMO_TOKEN_DELAY), for
#: the passthrough pipeline; ``DEMO.reply(prompt)`` is the whole text a reply must have.
DELAY = DEFAULTS["DEMO_TOKEN_DELAY"]
DEMO = DemoModel(token_delay=DELAY, xml=False)


@pytest.fixture(scope="module", autouse=True)
def servers_installed() -> None:
    """nginx and redis-server: a test here skips where one is missing, and fails in CI."""
    require_installed(NGINX is not None, "nginx is not installed (scripts/test installs it)")
    require_redis()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with production_stack(tmp_path_factory.mktemp("deploy")) as running:
        yield running


def client(stack: Stack, **options: Any) -> httpx.Client:
    return httpx.Client(base_url=stack.url, verify=stack.tls, timeout=LIMIT, **options)


def visit(browser: httpx.Client) -> httpx.Response:
    """Load the chat page: it sets the CSRF cookie (the session comes with the first chat
    or prompt)."""
    page = browser.get("/")
    assert page.status_code == 200, page.text[:500]
    return page


def text_of(events: list[ParsedEvent]) -> str:
    return "".join(json.loads(e.data).get("chunk", "") for e in events)


def prompt() -> str:
    return f"deploy test {uuid.uuid4().hex[:8]}"


# ------------------------------------------------------------------------- SSE
@pytest.mark.parametrize("http2", [False, True], ids=["HTTP/1.1", "HTTP/2"])
def test_sse_arrives_token_by_token_through_nginx(stack: Stack, http2: bool) -> None:
    """A POST from the page (CSRF over HTTPS behind the proxy) streams in many separate
    reads spread over the reply's time, not one blob buffered by nginx; over HTTP/1.1 and
    over HTTP/2 (what browsers use with this config, so many streams share a connection)."""
    words = prompt()
    with client(stack, http1=not http2, http2=http2) as browser:
        visit(browser)
        parser = SSEParser()
        arrivals: list[tuple[float, int]] = []  # (when, characters of text) per read
        events: list[ParsedEvent] = []
        with browser.stream(
            "POST",
            "/chat/stream",
            json={"prompt": words, "pipeline": "passthrough"},
            headers={"X-CSRFToken": browser.cookies["csrftoken"], "Origin": stack.url},
        ) as response:
            assert response.status_code == 200
            assert response.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
            assert response.headers["content-type"].startswith("text/event-stream")
            for raw in response.iter_raw():
                new = parser.feed(raw)
                events += new
                if text_of(new):
                    arrivals.append((time.monotonic(), len(text_of(new))))
    assert json.loads(events[-1].data) == {"done": True}
    expected = DEMO.reply(words)
    assert text_of(events) == expected
    tokens = len(DEMO.tokens(words))
    # Each token waits at least half of DELAY: a reply streamed as it is made takes at least
    # tokens * DELAY / 2 from its first text to its last, in many reads, none of them
    # holding much of the text. A buffering proxy delivers it in a burst at the end.
    assert len(arrivals) >= tokens // 4, (len(arrivals), tokens)
    assert arrivals[-1][0] - arrivals[0][0] >= tokens * DELAY / 2 * 0.5
    assert max(size for _, size in arrivals) <= len(expected) // 4


def test_a_dropped_reply_resumes_on_the_other_process(stack: Stack) -> None:
    """The reply runs on one daphne; the reconnect with Last-Event-ID is served by the other
    (round robin, checked), which follows it through Redis: every event exactly once."""
    words = prompt()
    with client(stack) as browser:
        visit(browser)
        with browser.stream(
            "GET", "/chat/stream", params={"prompt": words, "pipeline": "passthrough"}
        ) as response:
            first_upstream = response.headers["x-upstream"]
            before = events_until(response, 5)
        resumed = browser.get("/chat/stream", headers={"Last-Event-ID": before[-1].id or ""})
    assert resumed.status_code == 200, resumed.text
    assert {first_upstream, resumed.headers["x-upstream"]} == stack.upstreams
    after = parse_sse(resumed.content)
    assert text_of(before) + text_of(after) == DEMO.reply(words)
    assert json.loads(after[-1].data) == {"done": True}
    ids = [e.id for e in before + after]
    assert len(ids) == len(set(ids))


def test_plain_http_is_redirected_to_https(stack: Stack) -> None:
    with httpx.Client(timeout=LIMIT) as plain:
        redirect = plain.get(f"{stack.plain_url}/chat/stream?prompt=x")
    assert redirect.status_code == 301
    assert redirect.headers["location"].startswith("https://127.0.0.1")


def test_another_visitor_cannot_resume_a_reply_on_either_process(stack: Stack) -> None:
    """A reply belongs to its visitor's session, which both processes read from Redis."""
    with client(stack) as owner:
        visit(owner)
        with owner.stream("GET", "/chat/stream", params={"prompt": prompt()}) as response:
            event_id = events_until(response, 1)[0].id or ""
        with client(stack) as stranger:
            visit(stranger)
            answers = [
                stranger.get("/chat/stream", headers={"Last-Event-ID": event_id})
                for _ in stack.upstreams
            ]
        assert [a.status_code for a in answers] == [404, 404]
        assert {a.headers["x-upstream"] for a in answers} == stack.upstreams
        rest = owner.get("/chat/stream", headers={"Last-Event-ID": event_id})
        assert json.loads(parse_sse(rest.content)[-1].data) == {"done": True}


# ------------------------------------------------------------------- WebSocket
async def frames_until(socket: ClientConnection, stop: Any) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    while not frames or not stop(frames):
        frames.append(json.loads(await asyncio.wait_for(socket.recv(), LIMIT)))
    return frames


async def open_socket(stack: Stack, cookie: str) -> Any:
    return connect(
        stack.url.replace("https", "wss") + "/ws/chat/",
        origin=stack.url,  # type: ignore[arg-type]
        additional_headers={"Cookie": cookie},
        ssl=stack.tls,
        open_timeout=LIMIT,
    )


async def test_the_websocket_streams_and_resumes_through_nginx(stack: Stack) -> None:
    """Upgraded by nginx; a reply cut after three frames resumes on a new connection that
    nginx hands to the other process."""
    async with httpx.AsyncClient(base_url=stack.url, verify=stack.tls, timeout=LIMIT) as browser:
        assert (await browser.get("/")).status_code == 200
        # The page's first chat makes the visitor's session (the socket cannot set it).
        headers = {"X-CSRFToken": browser.cookies["csrftoken"], "Origin": stack.url}
        created = await browser.post("/chat/conversations", json={}, headers=headers)
        assert created.status_code == 201, created.text[:300]
        cookie = "; ".join(f"{name}={value}" for name, value in browser.cookies.items())
    words = prompt()
    async with await open_socket(stack, cookie) as socket:
        first_upstream = socket.response.headers["X-Upstream"]
        await socket.send(json.dumps({"prompt": words, "pipeline": "passthrough"}))
        before = await frames_until(socket, lambda frames: len(frames) >= 3)
    async with await open_socket(stack, cookie) as socket:
        second_upstream = socket.response.headers["X-Upstream"]
        last = before[-1]
        await socket.send(
            json.dumps({"type": "resume", "message_id": last["message_id"], "after": last["seq"]})
        )
        after = await frames_until(socket, lambda frames: frames[-1]["type"] != "chunk")
    assert {first_upstream, second_upstream} == stack.upstreams
    chunks = [f for f in before + after if f["type"] == "chunk"]
    assert "".join(f["content"] for f in chunks) == after[-1]["fullResponse"] == DEMO.reply(words)
    assert [f["seq"] for f in chunks] == sorted({f["seq"] for f in chunks})


# -------------------------------------------------------------- static files
#: The type nginx serves each kind of file the page names as.
KINDS = {".css": "text/css", ".js": "application/javascript", ".svg": "image/svg+xml"}


def test_the_chat_page_and_its_static_files_load_with_debug_off(stack: Stack) -> None:
    with client(stack) as browser:
        page = visit(browser)
        assets = sorted(set(re.findall(r"""["'](/static/[^"']+)["']""", page.text)))
        assert {"/static/streaming/chat.css", "/static/streaming/chat.js"} <= set(assets)
        for asset in assets:
            response = browser.get(asset)
            assert response.status_code == 200, asset
            assert "x-upstream" not in response.headers  # nginx itself, not daphne
            assert "max-age=3600" in response.headers["cache-control"]
            kind = KINDS[Path(asset).suffix]
            assert response.headers["content-type"].startswith(kind)
            collected = Path(stack.env["DJANGO_STATIC_ROOT"]) / asset.removeprefix("/static/")
            assert response.content == collected.read_bytes()
        # DEBUG is off: an unknown page is a plain 404, no debug page, no settings shown.
        missing = browser.get("/no-such-page")
        assert missing.status_code == 404
        assert "DJANGO_SECRET_KEY" not in missing.text and "Traceback" not in missing.text


# ------------------------------------------------------ stopping a process
def test_a_process_stopped_with_sigterm_exits_in_time_and_nginx_skips_it(
    stack: Stack, tmp_path: Path
) -> None:
    """A third daphne from the unit's ExecStart, behind its own nginx (the shipped config)
    with one of the stack's: SIGTERM while it streams a reply ends it well within the unit's
    TimeoutStopSec, cleanly, and nginx then sends every request to the process left."""
    (timeout,) = unit_entries("TimeoutStopSec")
    port, https_port, http_port = free_port(), free_port(), free_port()
    process = subprocess.Popen(
        unit_command(port),
        cwd=ROOT,
        env={**os.environ, **stack.env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process)
        config = nginx_config(
            (stack.ports[0], port), https_port, http_port, stack.directory, stack.env
        )
        with nginx(tmp_path / "nginx", config, https_port):
            base = f"https://127.0.0.1:{https_port}"
            with httpx.Client(base_url=base, verify=stack.tls, timeout=LIMIT) as browser:
                visit(browser)  # round robin: the stack's process, then the new one
                with browser.stream(
                    "GET", "/chat/stream", params={"prompt": prompt(), "pipeline": "passthrough"}
                ) as response:
                    assert response.headers["x-upstream"] == f"127.0.0.1:{port}"
                    events_until(response, 3)
                    stopping = time.monotonic()
                    process.send_signal(signal.SIGTERM)
                    process.wait(timeout=float(timeout))
                    stopped_after = time.monotonic() - stopping
                answers = [browser.get("/") for _ in range(4)]
    finally:
        stop_process(process)
    assert process.returncode == 0
    assert stopped_after < float(timeout)
    assert [a.status_code for a in answers] == [200] * 4
    assert {a.headers["x-upstream"].split(", ")[-1] for a in answers} == {
        f"127.0.0.1:{stack.ports[0]}"
    }


# ---------------------------------------------------------------- the config
def timeouts(directive: str) -> list[float]:
    return [float(v) for v in re.findall(rf"^\s*{directive}\s+(\d+)s;", SHIPPED.read_text(), re.M)]


def test_proxy_timeouts_outlast_the_keepalive_interval() -> None:
    """An open event stream is silent at most STREAMING["KEEPALIVE"] seconds (15 by
    default); every proxied location waits well longer before closing it."""
    reads, sends = timeouts("proxy_read_timeout"), timeouts("proxy_send_timeout")
    assert len(reads) == len(sends) == 2  # "/" and "/ws/"
    assert min(reads + sends) >= 4 * DEFAULTS["KEEPALIVE"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_the_systemd_unit_is_valid(tmp_path: Path) -> None:
    """``systemd-analyze verify`` finds nothing wrong (with this venv's daphne)."""
    unit = tmp_path / "streaming@8001.service"
    shipped = (ROOT / "deploy" / "streaming@.service").read_text()
    unit.write_text(shipped.replace(SHIPPED_DAPHNE, str(Path(sys.executable).parent / "daphne")))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_the_production_settings_pass_the_deployment_checks(tmp_path: Path) -> None:
    """``manage.py check --deploy`` (the README's step) warns only about the two HSTS
    choices that depend on the domain: its subdomains and the browsers' preload list."""
    env = production_env(tmp_path, "redis://127.0.0.1:1/0")
    env["DJANGO_ALLOWED_HOSTS"] = "chat.example.com"
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    issues = set(re.findall(r"\(([\w.]+\.[EW]\d+)\)", result.stderr + result.stdout))
    assert issues == {"security.W005", "security.W021"}, result.stderr


# --------------------------------------------------------- the client address
def from_address(stack: Stack, address: str) -> httpx.Client:
    """A browser whose connections to nginx come from ``address`` (any 127.x.y.z is this
    machine), while nginx itself reaches daphne from 127.0.0.1."""
    transport = httpx.HTTPTransport(local_address=address, verify=stack.tls)
    return httpx.Client(base_url=stack.url, transport=transport, timeout=LIMIT)


def socket_to(stack: Stack, address: str, cookie: str = "") -> Any:
    """A WebSocket to the chat from ``address`` (with ``cookie``), for ``async with``."""
    return connect(
        stack.url.replace("https", "wss") + "/ws/chat/",
        origin=stack.url,  # type: ignore[arg-type]
        additional_headers={"Cookie": cookie} if cookie else None,
        ssl=stack.tls,
        local_addr=(address, 0),
        open_timeout=LIMIT,
    )


async def first_ws_frame(stack: Stack, address: str, cookie: str) -> dict[str, Any]:
    """The first frame answering a prompt on a WebSocket from ``address``."""
    async with socket_to(stack, address, cookie) as socket:
        await socket.send(json.dumps({"prompt": "one more"}))
        return dict(json.loads(await asyncio.wait_for(socket.recv(), LIMIT)))


def test_the_per_address_limit_counts_the_address_nginx_forwards(stack: Stack) -> None:
    """MAX_ACTIVE_PER_ADDRESS replies from one client fill that client's places, not
    nginx's: its next reply is refused, also with a forged X-Forwarded-For and over a
    WebSocket, while another client behind the same nginx still starts one."""
    limit = DEFAULTS["MAX_ACTIVE_PER_ADDRESS"]
    long_prompt = "x" * 300  # the longest echo: a reply of about 10 s
    with ExitStack() as running:
        for _ in range(limit):  # one visitor each (MAX_ACTIVE_PER_OWNER is lower)
            browser = running.enter_context(from_address(stack, "127.0.0.2"))
            visit(browser)
            response = running.enter_context(
                browser.stream("GET", "/chat/stream", params={"prompt": long_prompt})
            )
            assert response.status_code == 200
        with from_address(stack, "127.0.0.2") as same:
            visit(same)
            refused = same.get("/chat/stream", params={"prompt": "one more"})
            forged = same.get(
                "/chat/stream",
                params={"prompt": "one more"},
                headers={"X-Forwarded-For": "198.51.100.7"},
            )
            cookie = "; ".join(f"{name}={value}" for name, value in same.cookies.items())
            frame = asyncio.run(first_ws_frame(stack, "127.0.0.2", cookie))
        with (
            from_address(stack, "127.0.0.3") as other,
            other.stream("GET", "/chat/stream", params={"prompt": "mine"}) as allowed,
        ):
            assert allowed.status_code == 200
    for answer in (refused, forged):
        assert answer.status_code == 429, answer.text
        assert answer.json()["code"] == "TOO_MANY_REPLIES"
    assert (frame["type"], frame["code"]) == ("error", "TOO_MANY_REPLIES")


#: nginx's limits per client address (deploy/nginx.conf).
OPEN_PER_ADDRESS = 100
BURST_PER_ADDRESS = 100
REQUESTS_PER_SECOND = 20
TOO_MANY = {
    "error": "Too many requests from this address; try again shortly",
    "code": "RATE_LIMITED",
}


async def answers_a_ping(stack: Stack, address: str) -> bool:
    """Whether a new socket from ``address`` is served: its ping gets a pong."""
    async with socket_to(stack, address) as socket:
        await socket.send(json.dumps({"type": "ping"}))
        return bool(json.loads(await asyncio.wait_for(socket.recv(), LIMIT))["type"] == "pong")


async def test_one_address_holds_at_most_100_open_sockets(stack: Stack) -> None:
    """A client opening sockets without end: its 101st is refused by nginx with the app's
    JSON 429 ``RATE_LIMITED`` and ``Retry-After``, while another address still connects;
    once one of its sockets closes, it may open one again."""
    async with contextlib.AsyncExitStack() as held:
        sockets = [
            await held.enter_async_context(socket_to(stack, "127.0.0.4"))
            for _ in range(OPEN_PER_ADDRESS)
        ]
        # The handshakes also spent the address's burst of requests: wait until the rate
        # has given it back, so that only the open sockets can refuse the next one.
        await asyncio.sleep(BURST_PER_ADDRESS / REQUESTS_PER_SECOND + 1)
        with pytest.raises(InvalidStatus) as refused:
            await answers_a_ping(stack, "127.0.0.4")
        assert await answers_a_ping(stack, "127.0.0.5")
        await sockets.pop().close()
        assert await answers_a_ping(stack, "127.0.0.4")
    assert refused.value.response.status_code == 429
    assert json.loads(refused.value.response.body) == TOO_MANY
    assert refused.value.response.headers["Retry-After"] == "1"


async def test_one_address_gets_429_past_its_burst_of_requests(stack: Stack) -> None:
    """Requests from one address far faster than 20 a second (400 at once, on 50
    connections): its burst of 100 and what the rate gives back meanwhile are served, the
    rest refused by nginx with the app's JSON 429 ``RATE_LIMITED``; another address is
    still served."""
    hurried = 4 * BURST_PER_ADDRESS
    transport = httpx.AsyncHTTPTransport(
        local_address="127.0.0.6",
        verify=stack.tls,
        limits=httpx.Limits(max_connections=OPEN_PER_ADDRESS // 2),
    )
    async with httpx.AsyncClient(base_url=stack.url, transport=transport, timeout=LIMIT) as hasty:
        answers = await asyncio.gather(*(hasty.get("/chat/conversations") for _ in range(hurried)))
    with from_address(stack, "127.0.0.7") as other:
        assert other.get("/chat/conversations").status_code == 200
    served = [answer for answer in answers if answer.status_code == 200]
    refused = [answer for answer in answers if answer.status_code != 200]
    assert BURST_PER_ADDRESS <= len(served) < hurried
    assert {answer.status_code for answer in refused} == {429}
    assert refused[0].json() == TOO_MANY
    assert refused[0].headers["Retry-After"] == "1"
