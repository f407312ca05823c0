"""The chat page on phones: an iPhone-sized screen, a small Android one and a phone held
sideways, emulated by Chromium (a mobile viewport, touch, a device pixel ratio of 3).

A whole chat is driven by taps, and a finger swiping up stops the view from following
the reply.
"""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from .chatpage import choose, last_reply, wait_for_state
from .conftest import DemoServer, open_page
from .test_conversations import wait_for_length

PHONES = {
    "iphone": {"viewport": {"width": 390, "height": 844}},
    "android": {"viewport": {"width": 360, "height": 740}},
    "sideways": {"viewport": {"width": 844, "height": 390}},
}
TOUCH = {"device_scale_factor": 3, "is_mobile": True, "has_touch": True}


def phone_page(browser: Any, server: DemoServer, phone: str) -> Any:
    return open_page(browser, server.url, **PHONES[phone], **TOUCH)


def drawer_button(page: Any) -> Any:
    return page.get_by_role("button", name="Open the chat list")


def at_bottom(page: Any) -> bool:
    return bool(
        page.locator("#conversation").evaluate(
            "c => c.scrollHeight - c.scrollTop - c.clientHeight < 80"
        )
    )


#: Resolves once the conversation's scroll position held still for ten frames (a swipe's
#: momentum is spent).
SCROLL_SETTLED = """() => new Promise((resolve) => {
  const box = document.querySelector('#conversation');
  let last = box.scrollTop, still = 0;
  const frame = () => {
    still = box.scrollTop === last ? still + 1 : 0;
    last = box.scrollTop;
    if (still >= 10) resolve(last); else requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
})"""

#: Resolves at the next frame.
NEXT_FRAME = "() => new Promise((resolve) => requestAnimationFrame(resolve))"


def swipe_down(page: Any) -> None:
    """A finger dragged 200 px down the conversation, 10 px a frame, as one scrolls back up
    to read: slower than a flick, so each frame's scroll is short."""
    box = page.locator("#conversation").bounding_box()
    x = box["x"] + box["width"] / 2
    cdp = page.context.new_cdp_session(page)

    def touch(kind: str, y: float) -> None:
        points = [] if kind == "touchEnd" else [{"x": x, "y": y}]
        cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})
        page.evaluate(NEXT_FRAME)

    touch("touchStart", 200)
    for y in range(210, 410, 10):
        touch("touchMove", y)
    touch("touchEnd", 400)
    cdp.detach()
    page.evaluate(SCROLL_SETTLED)


def test_a_chat_driven_by_taps(browser: Any, model_server: DemoServer) -> None:
    for page in phone_page(browser, model_server, "iphone"):
        choose(page, "sse-post", "passthrough")
        box = page.get_by_role("textbox", name="Message")
        composer = page.locator("#composer")
        box.tap()
        box.fill("A first chat")
        page.get_by_role("button", name="Send").tap()
        wait_for_state(page, "complete")

        # A long reply: the box and Stop stay on screen, and the view follows the reply.
        box.fill("Answer slowly, on a phone, to this long question:" + "\nand one more line" * 20)
        page.get_by_role("button", name="Send").tap()
        stop = page.get_by_role("button", name="Stop")
        expect(stop).to_be_in_viewport()
        wait_for_reply_overflowing(page)
        expect(composer).to_be_in_viewport(ratio=1)
        assert at_bottom(page)
        # A finger scrolls back up: the view stays there until "Jump to latest".
        swipe_down(page)
        jump = page.get_by_role("button", name="Jump to latest")
        expect(jump).to_be_visible()
        top = page.locator("#conversation").evaluate("c => c.scrollTop")
        shown = int(last_reply(page).locator(".text").get_attribute("data-length") or 0)
        wait_for_length(page, shown + 40)  # the reply grew meanwhile
        assert page.locator("#conversation").evaluate("c => c.scrollTop") == top
        jump.tap()
        assert at_bottom(page)
        stop.tap()
        wait_for_state(page, "cancelled")
        expect(composer).to_be_in_viewport(ratio=1)
        expect(page.get_by_role("button", name="Send")).to_be_in_viewport()

        # The chat list opens and closes, and leaves the message box usable.
        sidebar = page.locator("#sidebar")
        drawer_button(page).tap()
        expect(sidebar).to_be_visible()
        page.get_by_role("button", name="Close the chat list").tap()
        expect(sidebar).to_be_hidden()
        drawer_button(page).tap()
        page.locator("#backdrop").tap(position={"x": 370, "y": 400})  # beside the list
        expect(sidebar).to_be_hidden()
        box.tap()
        expect(box).to_be_focused()

        # New chat, then the first chat opened again from the list, then deleted.
        drawer_button(page).tap()
        page.get_by_role("button", name="New chat").tap()
        expect(sidebar).to_be_hidden()
        expect(page.locator("#messages .message")).to_have_count(0)
        drawer_button(page).tap()
        page.locator("#conversations .conversation-link", has_text="A first chat").tap()
        expect(sidebar).to_be_hidden()
        expect(page.locator(".message[data-role='user'] .text").first).to_have_text("A first chat")
        drawer_button(page).tap()
        page.get_by_role("button", name="Delete “A first chat”").tap()
        page.get_by_role("button", name="Delete", exact=True).tap()
        expect(
            page.locator("#conversations .conversation-link", has_text="A first chat")
        ).to_have_count(0)
        expect(composer).to_be_in_viewport(ratio=1)


def wait_for_reply_overflowing(page: Any) -> None:
    """Wait until the streaming reply is taller than the conversation's box."""
    page.wait_for_function(
        "() => { const c = document.querySelector('#conversation');"
        " return c.scrollHeight > c.clientHeight + 200; }",
        polling="raf",
    )
