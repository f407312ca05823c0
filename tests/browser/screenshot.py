"""Save screenshots of the chat page: ``python -m tests.browser.screenshot [DIRECTORY]``.

Starts the demo project with its own settings and the built-in demo model at its own pace
(``manage.py runserver``), has a two-turn conversation over a WebSocket with the
``response`` pipeline (reasoning apart, Markdown answers), and saves ``chat.png`` (a
desktop window, light, the last reply's reasoning opened) and ``chat-phone.png`` (a
390 px wide phone, dark) to ``docs/`` (or DIRECTORY).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from playwright.sync_api import sync_playwright

from ..servers import ROOT, free_port
from .chatpage import choose, send, wait_for_state
from .conftest import CHROMIUM, CHROMIUM_ARGS, DemoServer

#: Other chats in the list, so it looks as it does after a few days of use.
EARLIER_CHATS = ["Haiku about streaming tokens", "Server-Sent Events in two sentences"]


def converse(page: Any, url: str) -> None:
    """Open the page, add the earlier chats, and have a two-turn conversation."""
    page.goto(url + "/")
    page.wait_for_selector("#chat[data-ready='true']", state="attached")
    for title in EARLIER_CHATS:
        page.evaluate(
            """async ([url, title]) => {
                const token = document.cookie.match(/csrftoken=([^;]+)/)[1];
                await fetch(url, {method: "POST", body: JSON.stringify({title}),
                    headers: {"Content-Type": "application/json", "X-CSRFToken": token}});
            }""",
            [page.locator("#chat").get_attribute("data-conversations-url"), title],
        )
    page.reload()
    page.wait_for_selector("#chat[data-ready='true']", state="attached")
    choose(page, "ws", "response")
    send(page, "What does this page show?")
    wait_for_state(page, "complete", timeout=60_000)
    send(page, "And what happens when I reload the page?")
    wait_for_state(page, "complete", timeout=60_000)


def show_last_turn(page: Any) -> None:
    """Scroll so the last question, its reasoning and the start of its answer show."""
    page.locator(".message[data-role='user']").last.evaluate(
        """item => {
            const box = document.querySelector('#conversation');
            const offset = item.getBoundingClientRect().top - box.getBoundingClientRect().top;
            box.scrollTop += offset - 16;
        }"""
    )


def main(argv: list[str]) -> None:
    target = Path(argv[0]) if argv else ROOT / "docs"
    target.mkdir(parents=True, exist_ok=True)
    server = DemoServer(free_port(), settings="project.settings")  # the demo's own pace
    server.start()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
            shots = [
                ("chat.png", {"width": 1280, "height": 860}, "light", 1, False),
                ("chat-phone.png", {"width": 390, "height": 844}, "dark", 2, True),
            ]
            for name, viewport, scheme, scale, phone in shots:
                context = browser.new_context(
                    viewport=viewport,
                    device_scale_factor=scale,
                    color_scheme=scheme,
                    is_mobile=phone,
                    has_touch=phone,
                    reduced_motion="reduce",  # no caret blinking in the picture
                )
                page = context.new_page()
                converse(page, server.url)
                if not phone:  # the desktop shot shows the reasoning opened
                    page.locator(".message[data-role='assistant']").last.locator(
                        ".reasoning summary"
                    ).click()
                show_last_turn(page)
                box = page.get_by_role("textbox", name="Message")
                box.fill("Write a haiku about it")
                box.hover()  # no hover effect left on the settings button
                page.screenshot(path=str(target / name))
                context.close()
                print(target / name)
            browser.close()
    finally:
        server.close()


if __name__ == "__main__":
    main(sys.argv[1:])
