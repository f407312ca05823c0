"""The AI SDK's real client (npm ``ai`` under Node, tests/js) against a real daphne.

Starts daphne with the demo project on a free port and runs ``node --test tests/js/``
with ``STREAMING_URL`` pointing at it: ``useChat``'s ``DefaultChatTransport`` (send,
regenerate, drop and resume, stop with DELETE) and ``WebSocketChatTransport`` (send,
resume, abort, no-active, several chats on one socket). ``scripts/test`` installs
tests/js from its lockfile (``npm ci``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .servers import ROOT, daphne_server

JS = ROOT / "tests" / "js"
#: Seconds the whole Node run may take before it counts as hung.
NODE_TIMEOUT = 240


@pytest.fixture
def database(tmp_path: Path) -> dict[str, str]:
    """A migrated SQLite file for the server (its threads share it, unlike ``:memory:``)."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings_aisdk",
        "STREAMING_TEST_DB": str(tmp_path / "db.sqlite3"),
    }
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=120,
    )
    return {key: env[key] for key in ("DJANGO_SETTINGS_MODULE", "STREAMING_TEST_DB")}


def test_ai_sdk_client(database: dict[str, str]) -> None:
    node = shutil.which("node")
    assert node is not None, "Node 20 is needed for tests/js"
    assert (JS / "node_modules" / "ai").is_dir(), "run scripts/test (npm ci in tests/js)"
    with daphne_server("project.asgi:application", env=database) as url:
        files = sorted(path.name for path in JS.glob("*.test.mjs"))
        result = subprocess.run(
            [node, "--test", "--test-concurrency=2", "--test-reporter=tap", *files],
            cwd=JS,
            env={**os.environ, "STREAMING_URL": url, "NO_COLOR": "1"},
            capture_output=True,
            text=True,
            timeout=NODE_TIMEOUT,
        )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "# fail 0" in output, output
