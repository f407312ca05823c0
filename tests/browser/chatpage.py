"""Driving the chat page as a user does: pick settings, type, press Enter, read the reply."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

TRANSPORTS = ["sse-post", "sse", "ws"]

#: Long enough for a whole reply of the demo model at the test settings' pace.
REPLY_TIMEOUT = 15_000


def choose(page: Any, transport: str, pipeline: str = "response") -> None:
    page.locator(f"label[for='transport-{transport}']").click()
    expect(page.locator(f"#transport-{transport}")).to_be_checked()
    page.get_by_label("Extractor pipeline").select_option(pipeline)


def send(page: Any, prompt: str) -> None:
    box = page.get_by_role("textbox", name="Message")
    box.fill(prompt)
    box.press("Enter")


def last_reply(page: Any) -> Any:
    return page.locator(".message[data-role='assistant']").last


def reply_text(page: Any) -> str:
    return str(last_reply(page).locator(".text").text_content())


def trail(page: Any) -> list[dict[str, Any]]:
    """The states the last assistant message went through (see TRAIL_SCRIPT)."""
    entries = page.evaluate("window.__trail")
    count = page.locator(".message[data-role='assistant']").count()
    return [entry for entry in entries if entry["n"] == count]


def wait_for_state(page: Any, state: str, timeout: float = REPLY_TIMEOUT) -> None:
    """Wait until the last assistant message is in ``state`` (checked every frame)."""
    try:
        page.wait_for_function(
            """(state) => {
                const items = document.querySelectorAll('.message[data-role="assistant"]');
                return items.length > 0 && items[items.length - 1].dataset.state === state;
            }""",
            arg=state,
            polling="raf",
            timeout=timeout,
        )
    except Exception as error:
        seen = last_reply(page).get_attribute("data-state", timeout=1_000)
        raise AssertionError(f"the reply did not get to {state!r}: it is {seen!r}") from error
