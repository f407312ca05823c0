"""Save a screenshot of a finished exchange: ``python -m tests.browser.screenshot [PATH]``.

Starts the demo project with its own settings (``manage.py runserver``), asks the demo
model a question with the default ``response`` pipeline over a WebSocket, and saves the
page to ``docs/chat.png`` (or PATH). ``--dark`` takes it in the dark colour scheme.
"""

from __future__ import annotations

import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

from ..servers import ROOT, free_port
from .chatpage import choose, send, wait_for_state
from .conftest import CHROMIUM, CHROMIUM_ARGS, DemoServer


def main(argv: list[str]) -> None:
    dark = "--dark" in argv
    paths = [arg for arg in argv if not arg.startswith("--")]
    target = Path(paths[0]) if paths else ROOT / "docs" / "chat.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    server = DemoServer(free_port(), settings="project.settings")  # the demo's own pace
    server.start()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
            context = browser.new_context(
                viewport={"width": 960, "height": 900},
                device_scale_factor=1,
                color_scheme="dark" if dark else "light",
                reduced_motion="reduce",  # no caret blinking in the picture
            )
            page = context.new_page()
            page.goto(server.url + "/")
            page.wait_for_selector("#chat[data-ready='true']", state="attached")
            choose(page, "ws", "response")
            send(page, "What does this page show?")
            wait_for_state(page, "complete")
            box = page.get_by_role("textbox", name="Message")
            box.fill("Write a haiku about streaming tokens.")
            page.screenshot(path=str(target))
            browser.close()
    finally:
        server.close()
    print(target)


if __name__ == "__main__":
    main(sys.argv[1:])
