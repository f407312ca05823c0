"""The chat page for keyboard and screen-reader users, in Chromium (WCAG 2.2 AA).

What a screen reader is told (short announcements, cleared; no chatty live regions), where
focus goes when the element holding it goes away, the drawer as a modal dialog, contrast
computed from the page's own styles, forced colours, touch screens and a 400% zoom.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from .chatpage import choose, last_reply, send, wait_for_state
from .conftest import DemoServer, announced, announcing_page, open_page


@pytest.fixture
def page(browser: Any, model_server: DemoServer) -> Iterator[Any]:
    yield from announcing_page(browser, model_server)


def focused(page: Any) -> str:
    """The focused element, as ``tag#id.class``."""
    return str(
        page.evaluate(
            """() => {
              const e = document.activeElement;
              const name = typeof e.className === 'string' ? e.className.split(' ')[0] : '';
              return e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + (name ? '.' + name : '');
            }"""
        )
    )


PHONE = {"viewport": {"width": 360, "height": 640}, "is_mobile": True, "has_touch": True}


# ------------------------------------------------------------- announcements


def test_a_finished_reply_is_announced_briefly_then_cleared(page: Any) -> None:
    choose(page, "sse-post", "passthrough")
    send(page, "Some markdown please")
    wait_for_state(page, "complete")
    announcer = page.locator("#announcer")
    expect(announcer).to_have_attribute("aria-live", "polite")
    expect(announcer).to_have_text(re.compile(r"^Reply finished, \d+ words\.$"))
    # Cleared once read: no hidden copy stays for the virtual cursor to find.
    expect(announcer).to_have_text("", timeout=8_000)
    assert all(len(text) < 80 for text in announced(page)), announced(page)
    # The reply itself is found by its heading, below the page's in the outline.
    heading = last_reply(page).get_by_role("heading", name="The model said:")
    expect(heading).to_have_count(1)
    last_reply(page).evaluate("item => item.view.setText('# Title\\n\\n## Part\\n\\nText')")
    levels = (
        last_reply(page)
        .locator(".text h1, .text h2")
        .evaluate_all("hs => hs.map(h => h.getAttribute('aria-level'))")
    )
    assert levels == ["3", "4"]


def test_copy_is_announced(browser: Any, model_server: DemoServer) -> None:
    for page in announcing_page(
        browser, model_server, permissions=["clipboard-read", "clipboard-write"]
    ):
        send(page, "Some markdown please")
        wait_for_state(page, "complete")
        last_reply(page).get_by_role("button", name="Copy python").click()
        expect(page.locator("#announcer")).to_have_text("Copied.")
        last_reply(page).get_by_role("button", name="Copy reply").click()
        # Counted by themselves: a click within 50 ms of the reply's end replaces its
        # announcement, which is then never made.
        page.wait_for_function("window.__announced.filter(t => t === 'Copied.').length >= 2")
        assert announced(page)[-1] == "Copied."


def test_connection_news_is_announced_once_and_the_pill_is_not_live(
    browser: Any, restartable_server: DemoServer
) -> None:
    for page in announcing_page(browser, restartable_server):
        connection = page.locator("#connection")
        choose(page, "ws", "passthrough")
        expect(connection).to_have_attribute("data-state", "open")
        assert connection.evaluate(
            "e => !e.closest('[aria-live], [role=status], [role=alert], [role=log]')"
        )
        assert announced(page) == []
        restartable_server.stop()
        try:
            # Several attempts, one announcement.
            page.wait_for_function(
                "document.querySelector('#connection').textContent.includes('attempt 2')",
                timeout=15_000,
            )
        finally:
            restartable_server.start()
        expect(connection).to_have_attribute("data-state", "open", timeout=20_000)
        page.wait_for_function("window.__announced.includes('Reconnected.')")
        assert announced(page) == ["Connection lost. Reconnecting…", "Reconnected."]


# --------------------------------------------------------------------- focus


def test_focus_stays_in_the_message_box_after_send_and_a_suggestion(page: Any) -> None:
    choose(page, "sse-post", "passthrough")
    page.get_by_role("button", name="What does this page show?").click()
    wait_for_state(page, "waiting", timeout=5_000)
    assert focused(page) == "textarea#prompt"
    wait_for_state(page, "complete")
    assert focused(page) == "textarea#prompt"

    box = page.get_by_role("textbox", name="Message")
    box.fill("Answer slowly please")
    page.get_by_role("button", name="Send").click()
    wait_for_state(page, "streaming", timeout=5_000)
    assert focused(page) == "textarea#prompt"
    page.keyboard.press("Escape")  # Esc stops from there
    wait_for_state(page, "cancelled", timeout=5_000)
    assert focused(page) == "textarea#prompt"

    # Stop, focused by keyboard, goes away when the reply ends: focus is not lost either.
    box.fill("Another one")
    box.press("Enter")
    page.locator("#stop").focus()
    wait_for_state(page, "complete")
    assert focused(page) == "textarea#prompt"


def test_deleting_the_open_chat_in_the_drawer_keeps_focus(
    browser: Any, model_server: DemoServer
) -> None:
    for page in announcing_page(browser, model_server, **PHONE):
        send(page, "A chat to delete")
        wait_for_state(page, "complete")
        page.get_by_role("button", name="Open the chat list").click()
        page.get_by_role("button", name="Delete “A chat to delete”").click()
        page.get_by_role("button", name="Delete", exact=True).click()
        expect(page.locator("#sidebar")).to_be_hidden()
        page.wait_for_timeout(400)  # the drawer's closing transition is over
        assert focused(page) == "textarea#prompt"
        page.wait_for_function("window.__announced.some(t => t.includes('deleted'))")
        assert "Chat “A chat to delete” deleted." in announced(page)


# -------------------------------------------------------------------- drawer


def test_the_drawer_is_a_modal_dialog_that_keeps_tab_inside(
    browser: Any, model_server: DemoServer
) -> None:
    for page in open_page(browser, model_server.url, **PHONE):
        sidebar = page.locator("#sidebar")
        page.get_by_role("button", name="Open the chat list").click()
        dialog = page.get_by_role("dialog", name="Chats")
        expect(dialog).to_be_visible()
        expect(dialog).to_have_attribute("aria-modal", "true")
        inside = "document.querySelector('#sidebar').contains(document.activeElement)"
        for key in ["Tab"] * 6 + ["Shift+Tab"] * 6:
            page.keyboard.press(key)
            assert page.evaluate(inside), (key, focused(page))
        page.keyboard.press("Escape")
        expect(sidebar).to_be_hidden()
        expect(page.locator("#sidebar[role]")).to_have_count(0)


# ------------------------------------------------------------------- colours


def contrast(page: Any, selector: str, pseudo: str | None = None) -> float:
    """The contrast ratio of ``selector``'s text on the first opaque background under it."""
    return float(
        page.evaluate(
            """([selector, pseudo]) => {
              const element = document.querySelector(selector);
              const rgb = (c) => c.match(/[\\d.]+/g).slice(0, 4).map(Number);
              const lum = ([r, g, b]) => {
                const f = (v) => (v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
                return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
              };
              let back = null;
              for (let n = element; n && !back; n = n.parentElement) {
                const c = rgb(getComputedStyle(n).backgroundColor);
                if (c.length < 4 || c[3] === 1) back = c;
              }
              const fore = lum(rgb(getComputedStyle(element, pseudo).color));
              const [a, b] = [fore, lum(back)].sort((x, y) => y - x);
              return (a + 0.05) / (b + 0.05);
            }""",
            [selector, pseudo],
        )
    )


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_small_text_has_enough_contrast(page: Any, scheme: str) -> None:
    page.emulate_media(color_scheme=scheme)
    send(page, "A reply with a meta line")
    wait_for_state(page, "complete")
    for selector in [".hint", "kbd", ".meta", ".conversations-empty", ".connection-label"]:
        if selector == ".conversations-empty":
            page.evaluate("document.querySelector('#conversations-empty').style.display = 'block'")
        ratio = contrast(page, selector)
        assert ratio >= 4.5, (scheme, selector, round(ratio, 2))
    ratio = contrast(page, "#prompt", "::placeholder")
    assert ratio >= 4.5, (scheme, "placeholder", round(ratio, 2))


def test_forced_colours_show_where_the_message_box_has_focus(page: Any) -> None:
    page.emulate_media(forced_colors="active")
    page.get_by_role("textbox", name="Message").focus()
    style = page.locator(".composer-box").evaluate(
        "e => { const s = getComputedStyle(e); return [s.outlineStyle, s.outlineWidth]; }"
    )
    assert style[0] != "none" and float(style[1].removesuffix("px")) >= 2, style


# ------------------------------------------------------- narrow, touch, zoom


def test_a_phone_shows_the_connection_in_words(browser: Any, model_server: DemoServer) -> None:
    for page in open_page(browser, model_server.url, **PHONE):
        short = page.locator("#connection .connection-short")
        expect(short).to_be_visible()
        expect(short).to_have_text("Ready")
        box = short.bounding_box()
        assert box and box["width"] > 10


def test_a_touch_screen_shows_copy_on_own_messages(browser: Any, model_server: DemoServer) -> None:
    for page in open_page(browser, model_server.url, **PHONE):
        send(page, "Mine to copy")
        wait_for_state(page, "complete")
        actions = page.locator(".message[data-role='user'] .actions")
        page.locator("#conversation").click(position={"x": 5, "y": 5})  # no focus inside
        assert actions.evaluate("e => getComputedStyle(e).opacity") == "1"


def test_the_settings_are_reachable_at_400_percent_zoom(
    browser: Any, model_server: DemoServer
) -> None:
    for page in open_page(browser, model_server.url, viewport={"width": 320, "height": 200}):
        page.get_by_role("button", name="Settings").click()
        settings = page.locator("#settings")
        expect(settings).to_be_visible()
        box = settings.bounding_box()
        assert box and box["y"] + box["height"] <= 200, box
        pipeline = page.get_by_label("Extractor pipeline")
        pipeline.scroll_into_view_if_needed()
        expect(pipeline).to_be_in_viewport()
