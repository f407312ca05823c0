"""Driving the chat page as a user does: pick settings, type, press Enter, read the reply."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

TRANSPORTS = ["sse-post", "sse", "ws"]

#: Long enough for a whole reply of the demo model at the test settings' pace.
REPLY_TIMEOUT = 15_000


def choose(page: Any, transport: str, pipeline: str = "response") -> None:
    """Pick a transport and a pipeline in the settings popover, then close it."""
    settings = page.get_by_role("button", name="Settings")
    settings.click()
    expect(settings).to_have_attribute("aria-expanded", "true")
    page.locator(f"label[for='transport-{transport}']").click()
    expect(page.locator(f"#transport-{transport}")).to_be_checked()
    page.get_by_label("Extractor pipeline").select_option(pipeline)
    settings.click()
    expect(page.locator("#settings")).to_be_hidden()


def send(page: Any, prompt: str) -> None:
    """Type ``prompt`` and send it: with Enter, or with a tap on Send on a touch-first
    screen (a phone), where Enter starts a new line."""
    box = page.get_by_role("textbox", name="Message")
    box.fill(prompt)
    if page.evaluate("matchMedia('(pointer: coarse) and (hover: none)').matches"):
        page.get_by_role("button", name="Send").tap()
    else:
        box.press("Enter")


def last_reply(page: Any) -> Any:
    return page.locator(".message[data-role='assistant']").last


def reply_text(page: Any) -> str:
    """The last reply as the page shows it (its rendered Markdown's text)."""
    return str(last_reply(page).locator(".text").text_content())


def reply_source(page: Any) -> str:
    """The Markdown of the last reply received so far (what its Copy button copies)."""
    return str(last_reply(page).evaluate("item => item.view.shown"))


def trail(page: Any) -> list[dict[str, Any]]:
    """The states the last assistant message went through (see TRAIL_SCRIPT)."""
    entries = page.evaluate("window.__trail")
    count = page.locator(".message[data-role='assistant']").count()
    return [entry for entry in entries if entry["n"] == count]


def wait_for_reply(page: Any, condition: str, arg: Any, what: str, timeout: float) -> None:
    """Wait until the JS function ``condition(arg)`` holds (checked every frame); on a
    timeout, fail with what the last reply shows (its state and notice: a refusal's reason)."""
    try:
        page.wait_for_function(condition, arg=arg, polling="raf", timeout=timeout)
    except Exception as error:
        reply = last_reply(page)
        seen = reply.get_attribute("data-state", timeout=1_000)
        notice = " ".join(str(reply.locator(".notice").text_content(timeout=1_000)).split())
        raise AssertionError(f"{what}: the reply is {seen!r} ({notice!r})") from error


def wait_for_state(page: Any, state: str, timeout: float = REPLY_TIMEOUT) -> None:
    """Wait until the last assistant message is in ``state``."""
    wait_for_reply(
        page,
        """(state) => {
            const items = document.querySelectorAll('.message[data-role="assistant"]');
            return items.length > 0 && items[items.length - 1].dataset.state === state;
        }""",
        state,
        f"the reply did not get to {state!r}",
        timeout,
    )
