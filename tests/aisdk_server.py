"""A daphne for the ``useChat`` tests: the test project on a migrated SQLite file
(``tests.settings_aisdk``), so the chat's conversations are stored as in production."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .servers import ROOT, daphne_server


@contextmanager
def chat_ui_server(application: str = "tests.asgi:application") -> Iterator[tuple[str, Path]]:
    """Yield the server's URL and its database file."""
    with tempfile.TemporaryDirectory(prefix="streaming-aisdk-") as directory:
        database = Path(directory) / "db.sqlite3"
        env = {"DJANGO_SETTINGS_MODULE": "tests.settings_aisdk", "STREAMING_TEST_DB": str(database)}
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"],
            cwd=ROOT,
            env={**os.environ, **env},
            check=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        with daphne_server(application, env=env) as url:
            yield url, database
