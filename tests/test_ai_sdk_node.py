"""The AI SDK's real client (npm ``ai`` under Node, tests/js) against a real daphne.

Starts daphne with the demo project on a free port and runs ``node --test tests/js/``
with ``STREAMING_URL`` pointing at it: ``useChat``'s ``DefaultChatTransport`` (send,
regenerate, drop and resume, stop with DELETE) and ``WebSocketChatTransport`` (send,
resume, abort, no-active, several chats on one socket), with ``ai`` 7.0.173; and the
HTTP transport again with ``ai`` 6 (``sse-ai6.test.mjs``). ``scripts/test`` installs
tests/js from its lockfile (``npm ci``).
"""

from __future__ import annotations

import os
import shutil
import subprocess

from .servers import ROOT, daphne_server, sqlite_database

JS = ROOT / "tests" / "js"
#: Seconds the whole Node run may take before it counts as hung.
NODE_TIMEOUT = 240


def test_ai_sdk_client() -> None:
    node = shutil.which("node")
    assert node is not None, "Node 20 is needed for tests/js"
    assert (JS / "node_modules" / "ai").is_dir(), "run scripts/test (npm ci in tests/js)"
    with (
        sqlite_database() as database,
        daphne_server(
            "project.asgi:application",
            env={**database, "DJANGO_SETTINGS_MODULE": "tests.settings_aisdk"},
        ) as url,
    ):
        files = sorted(path.name for path in JS.glob("*.test.mjs"))
        result = subprocess.run(
            [node, "--test", "--test-concurrency=3", "--test-reporter=tap", *files],
            cwd=JS,
            env={**os.environ, "STREAMING_URL": url, "NO_COLOR": "1"},
            capture_output=True,
            text=True,
            timeout=NODE_TIMEOUT,
        )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "# fail 0" in output, output
