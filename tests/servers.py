"""Real servers for the tests: daphne (ASGI) and wsgiref (WSGI) in subprocesses on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"server did not listen on port {port} within {timeout} s")


def stop_process(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited after ``grace`` seconds; wait for it."""
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


@contextmanager
def run_server(
    command: Sequence[str],
    port: int,
    env: dict[str, str] | None = None,
    cwd: Path = ROOT,
    log: Path | None = None,
) -> Iterator[str]:
    """Start ``command`` (which must listen on ``port``), yield its URL, stop it for sure.
    Its stderr (the log) goes to the file ``log`` if given, else to a temporary file: a
    pipe nobody reads would fill up and stop a server that logs much in its next write."""
    full_env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", **(env or {})}
    with contextlib.ExitStack() as files:
        if log is not None:
            stderr = files.enter_context(log.open("wb"))
        else:
            stderr = files.enter_context(tempfile.TemporaryFile())
        process = subprocess.Popen(
            list(command), cwd=cwd, env=full_env, stdout=subprocess.DEVNULL, stderr=stderr
        )
        try:
            wait_for_port(port, process)
            yield f"http://127.0.0.1:{port}"
        finally:
            stop_process(process)


def migrate(env: dict[str, str] | None = None) -> None:
    """Apply every migration to the database the settings in ``env`` name (a subprocess,
    as a server process sees it; default ``tests.settings`` with ``$DJANGO_DB``)."""
    full_env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", **(env or {})}
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT, env=full_env, check=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip


@contextmanager
def sqlite_database() -> Iterator[dict[str, str]]:
    """A migrated SQLite file for server processes: yields the env that names it."""
    with tempfile.TemporaryDirectory(prefix="streaming-db-") as directory:
        env = {"DJANGO_DB": str(Path(directory) / "db.sqlite3")}
        migrate(env)
        yield env


@contextmanager
def daphne_server(
    application: str = "project.asgi:application",
    env: dict[str, str] | None = None,
    log: Path | None = None,
) -> Iterator[str]:
    port = free_port()
    command = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), application]
    with run_server(command, port, env, log=log) as url:
        yield url


@contextmanager
def project_server(settings: str) -> Iterator[str]:
    """The test project (``tests.asgi``) under daphne with settings module ``settings``,
    on a migrated SQLite file of its own (the chat's)."""
    env = {"DJANGO_SETTINGS_MODULE": settings}
    with (
        sqlite_database() as database,
        daphne_server("tests.asgi:application", env={**env, **database}) as url,
    ):
        yield url


@contextmanager
def wsgi_server(env: dict[str, str] | None = None, log: Path | None = None) -> Iterator[str]:
    port = free_port()
    command = [sys.executable, "-m", "tests.wsgi_serve", str(port)]
    with run_server(command, port, env, log=log) as url:
        yield url


def require_installed(installed: bool, message: str) -> None:
    """Skip a test whose server is not installed (a developer's machine without it,
    running pytest directly), but fail in CI (``.ci/run`` sets ``CI``), where
    ``scripts/test`` installs every one: a skipped test must not pass unseen."""
    import pytest  # here: the benchmarks use this module, and need no pytest

    if installed:
        return
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)
