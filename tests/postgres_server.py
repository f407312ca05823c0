"""A real PostgreSQL cluster for tests and benchmarks, on 127.0.0.1 and a free port.

``initdb`` into a temporary directory (trust authentication, superuser ``postgres``),
``pg_ctl start`` listening on 127.0.0.1 only, its Unix socket in that directory too, no
fsync. PostgreSQL refuses to run as root, so as root the cluster runs as the system user
``postgres`` (Debian's package creates it; it is created when missing). It is always
stopped at the end (context manager, and ``atexit`` as a backstop), bounded in time::

    from tests.postgres_server import postgres_server
    with postgres_server() as server:
        server.create_database("app")
        DATABASES = {"default": server.settings("app")}
        server.connections("app")   # how many client connections it has right now
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .servers import free_port, require_installed

#: Where Debian installs the server binaries (``initdb`` and ``pg_ctl`` are not on PATH),
#: one directory per major version.
DEBIAN_LIB = Path("/usr/lib/postgresql")
#: The operating-system user the cluster runs as when the tests run as root.
SYSTEM_USER = "postgres"
#: Seconds ``pg_ctl`` may take to start or stop the server.
TIMEOUT = 30


def _version(binary: Path) -> int:
    major = binary.parts[-3]
    return int(major) if major.isdigit() else 0


def _binary(name: str) -> str | None:
    on_path = shutil.which(name)
    if on_path is not None:
        return on_path
    versions = sorted(DEBIAN_LIB.glob(f"*/bin/{name}"), key=_version)
    return str(versions[-1]) if versions else None


INITDB = _binary("initdb")
PG_CTL = _binary("pg_ctl")
PSQL = _binary("psql")
#: Whether the tests can start a cluster here (``scripts/test`` installs ``postgresql``).
AVAILABLE = INITDB is not None and PG_CTL is not None and PSQL is not None
_running: set[PostgresServer] = set()


class PostgresServer:
    """One PostgreSQL cluster: ``start()``, ``stop()``, ``settings(name)``, ``connections()``."""

    def __init__(self) -> None:
        if not AVAILABLE:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="postgres-test-"))
        self.data = self.directory / "data"
        self.log = self.directory / "postgres.log"
        self.user = "postgres"  # the database superuser
        self.host = "127.0.0.1"
        self._run_as: list[str] = []
        if os.geteuid() == 0:
            _ensure_system_user()
            shutil.chown(self.directory, SYSTEM_USER)
            self._run_as = ["runuser", "-u", SYSTEM_USER, "--"]
        self.started = False

    def _run(self, *command: str, timeout: float = TIMEOUT) -> str:
        result = subprocess.run(
            [*self._run_as, *command],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            cwd=self.directory,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{command[0]} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
            )
        return result.stdout

    def start(self) -> None:
        """``initdb`` (once) and start the server; wait until it accepts connections."""
        assert not self.started, "already running"
        assert INITDB is not None and PG_CTL is not None
        if not self.data.exists():
            self._run(
                INITDB, "-D", str(self.data), "-U", self.user, "--auth=trust",
                "--encoding=UTF8", "--locale=C", "--no-sync",
            )  # fmt: skip
        options = (
            f"-h {self.host} -p {self.port} -k {self.directory} -F "
            "-c max_connections=100 -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off"
        )
        _running.add(self)
        self.started = True
        try:
            self._run(
                PG_CTL, "start", "-D", str(self.data), "-l", str(self.log), "-o", options,
                "-w", "-t", str(TIMEOUT),
            )  # fmt: skip
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            self.stop()
            raise RuntimeError(f"PostgreSQL on port {self.port} did not start:\n{log}") from exc

    def stop(self) -> None:
        """Stop the server (fast shutdown, then immediate), within about ``TIMEOUT`` s."""
        if not self.started:
            return
        self.started = False
        _running.discard(self)
        assert PG_CTL is not None
        for mode in ("fast", "immediate"):
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self._run(PG_CTL, "stop", "-D", str(self.data), "-m", mode, "-w", "-t", "10")
                return
        self._kill()

    def restart(self) -> None:
        """``pg_ctl restart -m fast``, as a failover or an upgrade does: every client
        connection is ended, and the server accepts connections again on the same port."""
        assert self.started, "not running"
        assert PG_CTL is not None
        self._run(
            PG_CTL, "restart", "-D", str(self.data), "-l", str(self.log), "-m", "fast",
            "-w", "-t", str(TIMEOUT),
        )  # fmt: skip

    def _kill(self) -> None:
        """The last resort: SIGKILL the postmaster named in its pid file."""
        pid_file = self.data / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pid_file.read_text().split()[0]), 9)

    def close(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    # ----------------------------------------------------------------- use
    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` with ``psql`` and return its unaligned, tuples-only output."""
        assert PSQL is not None
        result = subprocess.run(
            [PSQL, "-h", self.host, "-p", str(self.port), "-U", self.user, "-d", database,
             "-v", "ON_ERROR_STOP=1", "-A", "-t", "-c", sql],
            capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"psql failed: {result.stderr}")
        return result.stdout.strip()

    def create_database(self, name: str) -> None:
        """Create an empty database ``name`` (a plain identifier)."""
        assert name.isidentifier(), name
        self.psql(f'CREATE DATABASE "{name}"')

    def connections(self, database: str) -> int:
        """How many client connections ``database`` has now (this query's own excluded)."""
        return int(
            self.psql(
                "SELECT count(*) FROM pg_stat_activity "
                f"WHERE datname = '{database}' AND pid <> pg_backend_pid()"
            )
        )

    def settings(self, name: str = "postgres") -> dict[str, Any]:
        """A ``DATABASES`` entry for database ``name`` of this cluster."""
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": self.user,
            "PASSWORD": "",
            "HOST": self.host,
            "PORT": str(self.port),
        }

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/postgres"


def _ensure_system_user() -> None:
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
             SYSTEM_USER],
            check=True, timeout=TIMEOUT,
        )  # fmt: skip


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """A started ``PostgresServer``, stopped and removed at the end whatever happens."""
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.close()


def wait_for_connections(
    server: PostgresServer, database: str, expected: int, timeout: float = 10.0
) -> int:
    """Poll until ``database`` has ``expected`` connections (bounded); the last count."""
    deadline = time.monotonic() + timeout
    count = server.connections(database)
    while count != expected and time.monotonic() < deadline:
        time.sleep(0.05)
        count = server.connections(database)
    return count


@atexit.register
def _stop_leftovers() -> None:
    for server in list(_running):
        server.close()


def require_postgres() -> None:
    """Skip a PostgreSQL test where the server is missing, but fail in CI."""
    require_installed(AVAILABLE, "PostgreSQL is not installed (scripts/test installs it)")
