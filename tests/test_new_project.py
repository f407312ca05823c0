"""The README's "Install in your project", followed in a brand-new ``startproject``.

The project gets exactly the README's edits (its ``urls.py`` and ``asgi.py`` are the
README's code blocks, taken from the README itself), is migrated and served by
``manage.py runserver`` (daphne's, with ``DEBUG`` as startproject sets it). Then the chat
must work as a user finds it: the page with its CSRF cookie and its static files, a POST
stream, the WebSocket, and the conversations API. Nothing is copied from the demo project.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from streaming.testing import parse_sse

from .servers import ROOT, free_port, stop_process, wait_for_port

README = ROOT / "README.md"
NAME = "mysite"


def readme_blocks(heading: str = "## Install in your project") -> list[str]:
    """The Python code blocks of a README section (up to its next heading)."""
    text = README.read_text()
    section = text[text.index(f"{heading}\n") :]
    section = section[: section.index("\n#", len(heading))]
    return [
        textwrap.dedent(block)
        for block in re.findall(r"```python\n(.*?)^\s*```", section, re.S | re.M)
    ]


def run(*command: str, cwd: Path, env: dict[str, str]) -> None:
    subprocess.run(
        command, cwd=cwd, env=env, check=True, timeout=180, capture_output=True,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def project_env(directory: Path) -> dict[str, str]:
    """The environment the new project's commands run in: none of the suite's settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "OPENAI_"))}
    env["PYTHONPATH"] = str(directory)
    return env


@pytest.fixture(scope="module")
def project_directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``startproject`` with the README's edits, migrated; its directory."""
    directory = tmp_path_factory.mktemp("new-project")
    env = project_env(directory)
    run(
        sys.executable, "-m", "django", "startproject", NAME, str(directory), cwd=directory, env=env
    )
    package = directory / NAME
    settings_block, database_block, urls_block, asgi_block = readme_blocks()
    assert (
        '"daphne",' in settings_block
        and f'ASGI_APPLICATION = "{NAME}.asgi.application"' in settings_block
    )
    settings = (package / "settings.py").read_text()
    settings = settings.replace("INSTALLED_APPS = [\n", 'INSTALLED_APPS = [\n    "daphne",\n', 1)
    settings = re.sub(
        r"(INSTALLED_APPS = \[.*?)\n\]", r'\1\n    "streaming",\n]', settings, count=1, flags=re.S
    )
    settings += f'\nASGI_APPLICATION = "{NAME}.asgi.application"\n'
    # After startproject's DATABASES, as the README says: appended to the file.
    assert 'DATABASES["default"]["OPTIONS"] = {"transaction_mode": "IMMEDIATE"}' in database_block
    settings += database_block
    # Not a README edit: the demo model's pace, so a whole reply takes a moment, not seconds.
    settings += 'STREAMING = {"DEMO_TOKEN_DELAY": 0.001}\n'
    (package / "settings.py").write_text(settings)
    (package / "urls.py").write_text(urls_block)
    (package / "asgi.py").write_text(asgi_block)
    run(sys.executable, "manage.py", "migrate", "--noinput", cwd=directory, env=env)
    assets = ["streaming/chat.js", "streaming/streaming.js", "streaming/chat.css"]
    found = subprocess.run(
        [sys.executable, "manage.py", "findstatic", *assets],
        cwd=directory, env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert found.stdout.count("Found 'streaming/") == 3
    return directory


@pytest.fixture(scope="module")
def new_project(project_directory: Path) -> Iterator[str]:
    """The new project served by ``manage.py runserver``; its URL."""
    directory, env = project_directory, project_env(project_directory)
    port = free_port()
    log = (directory / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        cwd=directory, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(port, process, timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(process)
        log.close()


def test_the_page_sets_the_csrf_cookie_and_its_static_files_are_served(new_project: str) -> None:
    with httpx.Client(base_url=new_project, timeout=30) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert "csrftoken" in client.cookies
        assert "sessionid" not in client.cookies  # none stored until the visitor chats
        assets = re.findall(r'(?:href|src)="(/static/streaming/[^"]+)"', page.text)
        assert {"/static/streaming/chat.js", "/static/streaming/chat.css"} <= set(assets)
        for asset in assets:
            assert client.get(asset).status_code == 200, asset


def test_a_post_with_the_csrf_token_streams_a_reply_into_a_conversation(new_project: str) -> None:
    with httpx.Client(base_url=new_project, timeout=30) as client:
        client.get("/")
        refused = client.post("/chat/stream", json={"prompt": "Hi"})
        assert refused.status_code == 403  # Django's CSRF protection applies
        response = client.post(
            "/chat/stream",
            json={"prompt": "Hi"},
            headers={"X-CSRFToken": client.cookies["csrftoken"]},
        )
        assert response.status_code == 200
        events = parse_sse(response.content)
        assert json.loads(events[-1].data) == {"done": True}
        text = "".join(json.loads(e.data).get("chunk", "") for e in events if e.event == "message")
        assert text.startswith("Hello! I am the built-in demo model")
        conversation = response.headers["X-Conversation-Id"]
        listed = client.get("/chat/conversations").json()["conversations"]
        assert [c["id"] for c in listed] == [conversation]
        stored = client.get(f"/chat/conversations/{conversation}").json()
        assert [(m["role"], m["status"]) for m in stored["messages"]] == [
            ("user", "complete"),
            ("assistant", "complete"),
        ]
        assert stored["messages"][1]["content"] == text


async def socket_reply(
    server: str, path: str, cookies: httpx.Cookies, prompt: str
) -> list[dict[str, Any]]:
    """The frames of ``prompt`` sent over the chat socket at ``path`` of ``server``, with
    the page's cookies and origin as a browser sends them, up to the reply's end."""
    header = "; ".join(f"{k}={v}" for k, v in cookies.items())
    address = server.replace("http", "ws") + path
    async with connect(address, origin=server, additional_headers={"Cookie": header}) as socket:
        await socket.send(json.dumps({"type": "prompt", "prompt": prompt}))
        frames: list[dict[str, Any]] = []
        while not frames or frames[-1]["type"] not in {"complete", "error", "cancelled"}:
            frames.append(json.loads(await socket.recv()))
    return frames


async def test_the_websocket_streams_a_reply_with_an_origin_header(new_project: str) -> None:
    async with httpx.AsyncClient(base_url=new_project, timeout=30) as client:
        await client.get("/")
        # The page's first chat makes the visitor's session (the socket cannot set it).
        headers = {"X-CSRFToken": client.cookies["csrftoken"]}
        created = await client.post("/chat/conversations", json={}, headers=headers)
        assert created.status_code == 201, created.text[:300]
        frames = await socket_reply(new_project, "/ws/chat/", client.cookies, "Hello there")
        complete = frames[-1]
        assert complete["type"] == "complete", frames
        assert complete["fullResponse"].startswith("Hello! I am the built-in demo model")
        listed = (await client.get("/chat/conversations")).json()["conversations"]
        assert complete["conversation"] in [c["id"] for c in listed]


async def test_the_websocket_without_an_origin_is_refused(new_project: str) -> None:
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus) as refused:
        async with connect(new_project.replace("http", "ws") + "/ws/chat/"):
            pass
    assert refused.value.response.status_code == 403


def test_the_readme_testing_example_passes_in_the_new_project(project_directory: Path) -> None:
    """The README's "Testing your own views and consumers" example, with the ``pytest.ini``
    it describes, run by pytest in the new project."""
    (example,) = readme_blocks("## Testing your own views and consumers")
    (project_directory / "pytest.ini").write_text(
        f"[pytest]\nDJANGO_SETTINGS_MODULE = {NAME}.settings\nasyncio_mode = auto\n"
        "asyncio_default_fixture_loop_scope = function\n"
    )
    (project_directory / "test_readme_example.py").write_text(example)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    result = subprocess.run(
        [*command, "test_readme_example.py"],
        cwd=project_directory, env=project_env(project_directory), capture_output=True,
        text=True, timeout=180, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "1 passed" in result.stdout
