"""``scripts/demo [[ADDR:]PORT]`` as a new user runs it, with the tests' virtual environment."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from .servers import ROOT, free_port, wait_for_port

DEMO = ROOT / "scripts" / "demo"


def demo_env(tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "VENV": sys.prefix, "DJANGO_DB": str(tmp_path / "db.sqlite3")}
    env.pop("DJANGO_SETTINGS_MODULE", None)  # pytest-django's; the demo uses its own
    env.pop("OPENAI_API_KEY", None)
    return env


def test_the_demo_serves_the_chat_page_on_the_port_it_is_given(tmp_path: Path) -> None:
    port = free_port()
    stdout, stderr = tmp_path / "stdout", tmp_path / "stderr"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        # Its own session: runserver's autoreloader runs the server in a child process.
        process = subprocess.Popen(
            [str(DEMO), f"127.0.0.1:{port}"],
            cwd=tmp_path,  # the script finds the project from its own path
            env=demo_env(tmp_path),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    try:
        # The first run in a venv may pip install the project (quick when it is there).
        wait_for_port(port, process, timeout=180)
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
        assert page.status_code == 200
        assert "<title>Chat · streaming demo</title>" in page.text
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
    first_line = stdout.read_text().splitlines()[0]
    assert first_line == f"Chat page: http://127.0.0.1:{port}/", stderr.read_text()[-2000:]
    # Nothing is left listening (the reloader's child went with it).
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                break
        time.sleep(0.1)
    else:
        raise AssertionError(f"something still listens on port {port}")


def test_the_demo_refuses_what_is_not_a_port(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(DEMO), "127.0.0.1:http"],
        env=demo_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "usage: scripts/demo [[ADDR:]PORT]" in result.stderr
    assert result.stdout == ""
