"""Browser tests: the demo project under daphne, driven by Debian's Chromium via Playwright.

The server is the demo project's own ``manage.py runserver`` (daphne, static files served),
with ``tests.browser.settings``: a faster demo model, nothing else changed. It can be
stopped and started again on the same port, so the page's reconnection finds it.
Playwright's sync API is used from plain (sync) tests and fixtures; no browser is ever
downloaded: ``/usr/bin/chromium`` must exist, or these tests are skipped.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..servers import ROOT, free_port, migrate, require_installed, wait_for_port
from .model import Model

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]

#: Records every state the last assistant message goes through, as the DOM changes
#: (a MutationObserver sees each change, however short-lived): state, length of the
#: Markdown shown and whether the loading indicator is shown.
TRAIL_SCRIPT = """
window.__trail = [];
const snapshot = () => {
  const items = document.querySelectorAll('.message[data-role="assistant"]');
  const item = items[items.length - 1];
  if (!item) return;
  const loading = item.querySelector(".loading");
  const entry = {
    n: items.length,
    state: item.dataset.state,
    length: Number(item.querySelector(".text").dataset.length || 0),
    loading: Boolean(loading && loading.checkVisibility()),
  };
  const last = window.__trail[window.__trail.length - 1];
  if (!last || ["n", "state", "length", "loading"].some((k) => last[k] !== entry[k])) {
    window.__trail.push(entry);
  }
};
new MutationObserver(snapshot).observe(document, {
  subtree: true, childList: true, characterData: true,
  attributes: true, attributeFilter: ["data-state"],
});
"""


class DemoServer:
    """The demo project under ``manage.py runserver`` (daphne) on a fixed port."""

    def __init__(
        self, port: int, settings: str = "tests.browser.settings", env: dict[str, str] | None = None
    ) -> None:
        self.port = port
        self.settings = settings
        #: Environment of the server over ours (``OPENAI_BASE_URL`` …).
        self.env = env or {}
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = tempfile.NamedTemporaryFile(prefix="daphne-", suffix=".log", delete=False)  # noqa: SIM115
        #: Migrated before the first start; kept across restarts, as a real database is.
        self.database = Path(tempfile.mkdtemp(prefix="demo-db-")) / "db.sqlite3"

    def start(self) -> None:
        assert self.process is None, "already running"
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": self.settings,
            "DJANGO_DB": str(self.database),
        }
        if not self.database.exists():
            migrate({"DJANGO_SETTINGS_MODULE": self.settings, "DJANGO_DB": str(self.database)})
        env.pop("OPENAI_API_KEY", None)  # the built-in demo model, unless ``self.env`` says
        env.update(self.env)
        command = [
            sys.executable, "manage.py", "runserver", f"127.0.0.1:{self.port}",
            "--noreload", "--skip-checks",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )
        try:
            wait_for_port(self.port, self.process, timeout=20)
        except Exception:
            self.stop()
            raise RuntimeError(f"the demo server did not start:\n{self.output()}") from None

    def stop(self) -> None:
        """Kill the server at once, as a crash or a pulled cable would."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")[-4000:]

    def close(self) -> None:
        self.stop()
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)
        shutil.rmtree(self.database.parent, ignore_errors=True)


def demo_server(
    env: dict[str, str] | None = None, settings: str = "tests.browser.settings"
) -> Iterator[DemoServer]:
    server = DemoServer(free_port(), settings, env)
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="package")
def server() -> Iterator[DemoServer]:
    """One demo server for the tests that do not stop it."""
    yield from demo_server()


@pytest.fixture(scope="module")
def restartable_server() -> Iterator[DemoServer]:
    """A demo server of its own, for tests that stop and start it again."""
    yield from demo_server()


# Package scope: Playwright's sync API keeps an event loop running in this thread while it
# is open, which would stop the async tests of other packages from starting theirs.
@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    require_installed(CHROMIUM.exists(), f"{CHROMIUM} is not installed (scripts/test installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


def open_page(
    browser: Any, url: str, *, clock: bool = False, **context_options: Any
) -> Iterator[Any]:
    """A fresh browser context on the chat page; fails the test on any uncaught JS error.
    ``clock``: the page's timers run on Playwright's clock (``page.clock.fast_forward``)."""
    options = {"viewport": {"width": 1000, "height": 760}, **context_options}
    context = browser.new_context(**options)
    context.set_default_timeout(10_000)
    if clock:
        context.clock.install()
    context.add_init_script(TRAIL_SCRIPT)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(url + "/")
        page.wait_for_selector("#chat[data-ready='true']", state="attached", timeout=5_000)
        yield page
        assert errors == [], f"uncaught errors in the page: {errors}"
    finally:
        context.close()


@pytest.fixture
def page(browser: Any, server: DemoServer) -> Iterator[Any]:
    yield from open_page(browser, server.url)


def announcing_page(browser: Any, server: DemoServer, **options: Any) -> Iterator[Any]:
    """``open_page`` with every announcement to screen readers recorded (``announced``)."""
    for page in open_page(browser, server.url, **options):
        record_announcements(page)
        yield page


def record_announcements(page: Any) -> None:
    """Record every announcement of the page from now on (again after a reload)."""
    page.evaluate(
        """() => {
          window.__announced = [];
          const announcer = document.querySelector("#announcer");
          new MutationObserver(() => {
            if (announcer.textContent) window.__announced.push(announcer.textContent);
          }).observe(announcer, { subtree: true, childList: true, characterData: true });
        }"""
    )


def announced(page: Any) -> list[str]:
    """What the page announced since ``announcing_page`` opened it, in order."""
    return list(page.evaluate("window.__announced"))


@pytest.fixture(scope="module")
def model() -> Iterator[Model]:
    """A recording OpenAI-compatible model (``tests.browser.model``), one per module."""
    with Model() as model:
        yield model


@pytest.fixture(scope="module")
def model_server(model: Model) -> Iterator[DemoServer]:
    """The demo project, its chat talking to the recording model instead of the demo one."""
    yield from demo_server({"OPENAI_API_KEY": "test-key", "OPENAI_BASE_URL": model.url})


@pytest.fixture(scope="module")
def slow_start_server(model: Model) -> Iterator[DemoServer]:
    """``model_server`` with each reply's turn stored a second before it runs
    (``SlowCreateStore``): the reply is ``starting`` for that second."""
    env = {"OPENAI_API_KEY": "test-key", "OPENAI_BASE_URL": model.url}
    yield from demo_server(env, settings="tests.browser.settings_slow_create")
