"""The servers the README names besides daphne: uvicorn, hypercorn, and WSGI ones.

With the ``lifespan`` application routed (``streaming.shutdown.lifespan``), SIGTERM with
replies open ends them as under daphne (``tests/test_runtime_shutdown.py``): every SSE
client gets its reply's end or ``SHUTTING_DOWN`` with a ``retry:`` hint, every WebSocket
its end or ``SHUTTING_DOWN`` and close code 4012, and the server exits within seconds,
with no traceback in its log. Without it, uvicorn waits for every open stream to end and
hypercorn cuts them. Under a WSGI server every reply is refused; the log says why, once."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from .hostile import migrate, server_process, sqlite_database
from .servers import free_port, wsgi_server
from .test_runtime_shutdown import Replies, check_told, wait_exit

APP = "tests.hostile_asgi:application"
REPLIES = 10


def uvicorn(port: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port), APP]


def hypercorn(port: int) -> list[str]:
    # --workers 0: the server in this process, which takes the signal (with workers, a
    # parent process takes it and tells them through an event they poll)
    return [sys.executable, "-m", "hypercorn", "--workers", "0", "-b", f"127.0.0.1:{port}", APP]


def uvicorn_uvloop(port: int) -> list[str]:
    """uvicorn on uvloop (its default loop when uvloop is installed, as `uvicorn[standard]`
    installs it)."""
    return [*uvicorn(port), "--loop", "uvloop"]


def hypercorn_uvloop(port: int) -> list[str]:
    """hypercorn on uvloop, whose loop keeps its signal handlers out of Python's reach."""
    return [*hypercorn(port), "--worker-class", "uvloop"]


@pytest.mark.parametrize(
    ("server", "status"),
    [
        # uvicorn raises the signal again once it has stopped, so that its parent sees it
        pytest.param(uvicorn, -signal.SIGTERM, id="uvicorn"),
        pytest.param(hypercorn, 0, id="hypercorn"),
        pytest.param(uvicorn_uvloop, -signal.SIGTERM, id="uvicorn-uvloop"),
        pytest.param(hypercorn_uvloop, 0, id="hypercorn-uvloop"),
    ],
)
async def test_sigterm_with_replies_open_tells_every_client_and_exits(
    tmp_path: Path, server: Callable[[int], list[str]], status: int
) -> None:
    pytest.importorskip(server.__name__.split("_")[0])
    database = migrate(sqlite_database(tmp_path / "db.sqlite3"))
    port = free_port()
    log = tmp_path / "server.log"
    env = {"DJANGO_SETTINGS_MODULE": "tests.settings_hostile", **database}
    with log.open("wb") as output, server_process(server(port), port, env, output) as up:
        url, process = up
        replies = Replies(url, REPLIES, REPLIES)
        await replies.open()
        process.send_signal(signal.SIGTERM)
        exit_status = await asyncio.to_thread(wait_exit, process)
        await replies.finish()
    check_told(replies)
    assert exit_status == status
    text = log.read_text(errors="replace")
    assert "Traceback" not in text, text


def test_under_wsgi_the_log_says_once_why_replies_are_refused(tmp_path: Path) -> None:
    """Django logs each refusal as "Internal Server Error: /chat/stream"; the first one
    of the process also says what the server lacks and what to serve instead."""
    log = tmp_path / "server.log"
    with wsgi_server(log=log) as url, httpx.Client(base_url=url, timeout=30) as client:
        client.get("/")
        headers = {"X-CSRFToken": client.cookies["csrftoken"], "Origin": url}
        for _ in range(2):
            refused = client.post("/chat/stream", json={"prompt": "Hi"}, headers=headers)
            assert refused.status_code == 500
    text = log.read_text(errors="replace")
    assert text.count("A reply was asked for at /chat/stream under WSGI") == 1, text
    assert "Serve the ASGI application (daphne, uvicorn, hypercorn" in text
