"""The chat page on phones: an iPhone-sized screen, a small Android one and a phone held
sideways, emulated by Chromium (a mobile viewport, touch, a device pixel ratio of 3).

Wide content never makes the page scroll sideways (a mobile browser would zoom out to
show it), the main buttons are big enough for a finger, text is readable and the inputs
are large enough that iOS Safari does not zoom in on focus; a whole chat is driven by
taps, and a finger swiping up stops the view from following the reply.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from .chatpage import choose, last_reply, send, wait_for_state
from .conftest import DemoServer, open_page
from .test_conversations import wait_for_length

PHONES = {
    "iphone": {"viewport": {"width": 390, "height": 844}},
    "android": {"viewport": {"width": 360, "height": 740}},
    "sideways": {"viewport": {"width": 844, "height": 390}},
}
TOUCH = {"device_scale_factor": 3, "is_mobile": True, "has_touch": True}

#: A word and a link longer than any screen, a code line, a table cell and inline code too.
WIDE_REPLY = (
    "A link: https://example.com/" + "path" * 80 + "\n\n"
    + "Unbreakable" * 30 + "\n\n"
    + "```python\nresult = " + " + ".join(["value"] * 80) + "\n```\n\n"
    + "| Name | Value |\n|---|---|\n| " + "cell" * 60 + " | 1 |\n\n"
    + "`" + "inline" * 30 + "`\n\nThe end."
)  # fmt: skip

#: Sideways scrolling anywhere: the page (or a mobile browser zoomed out to fit it, which
#: widens ``innerWidth``) or the conversation.
SIDEWAYS = """(width) => {
  const page = document.scrollingElement;
  const box = document.querySelector('#conversation');
  return {
    page: page.scrollWidth, inner: innerWidth, width,
    conversation: box.scrollWidth, conversationBox: box.clientWidth,
  };
}"""

#: Visible text of the app's own parts smaller than 12 px, as "selector size text".
SMALL_TEXT = """() => [...document.querySelectorAll(
    '.sidebar *, .conversation *, .composer *, .settings *, .topbar .connection *'
  )].filter((e) => [...e.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())
    && e.checkVisibility({ visibilityProperty: true }) && !e.closest('.visually-hidden')
    && parseFloat(getComputedStyle(e).fontSize) < 12)
  .map((e) => `${e.tagName}.${e.className} ${getComputedStyle(e).fontSize}`
    + ` ${e.textContent.trim().slice(0, 20)}`)"""


def phone_page(browser: Any, server: DemoServer, phone: str) -> Any:
    return open_page(browser, server.url, **PHONES[phone], **TOUCH)


def assert_no_sideways_scrolling(page: Any, what: str) -> None:
    width = page.viewport_size["width"]
    sizes = page.evaluate(SIDEWAYS, width)
    assert sizes["inner"] == width, (what, sizes)
    assert sizes["page"] <= sizes["inner"], (what, sizes)
    assert sizes["conversation"] <= sizes["conversationBox"], (what, sizes)


def font_size(page: Any, selector: str) -> float:
    return float(page.locator(selector).evaluate("e => parseFloat(getComputedStyle(e).fontSize)"))


def assert_big_enough(page: Any, *names: str) -> None:
    """The buttons named are at least 40 px high and wide: a fingertip's size."""
    for name in names:
        size = page.get_by_role("button", name=name, exact=True).bounding_box()
        assert size and size["height"] >= 40 and size["width"] >= 40, (name, size)


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


@pytest.mark.parametrize("phone", PHONES)
def test_wide_content_does_not_scroll_the_page_sideways(
    browser: Any, model_server: DemoServer, phone: str
) -> None:
    for page in phone_page(browser, model_server, phone):
        assert_no_sideways_scrolling(page, "empty")
        choose(page, "sse-post", "passthrough")
        send(page, "A title without any space " + "x" * 200 + " https://example.com/" + "p" * 200)
        wait_for_state(page, "complete")
        last_reply(page).evaluate("(item, text) => item.view.setText(text)", WIDE_REPLY)
        assert_no_sideways_scrolling(page, "a wide reply")
        # The code line scrolls in its own block, which fits the screen.
        code = last_reply(page).locator("pre")
        assert code.evaluate("e => e.scrollWidth > e.clientWidth")
        block = code.bounding_box()
        assert (
            block
            and block["x"] >= 0
            and block["x"] + block["width"] <= PHONES[phone]["viewport"]["width"]
        )
        if drawer_button(page).is_visible():
            drawer_button(page).tap()
            expect(page.locator("#sidebar")).to_be_visible()
        assert_no_sideways_scrolling(page, "the chat list")
        title = page.locator("#conversations .conversation-link").first
        assert title.evaluate("e => e.scrollWidth > e.clientWidth")  # cut with an ellipsis
        sidebar = page.locator("#sidebar").bounding_box()
        assert sidebar and sidebar["x"] + sidebar["width"] <= PHONES[phone]["viewport"]["width"]


@pytest.mark.parametrize("phone", PHONES)
def test_fingers_fit_the_buttons_and_text_is_readable(
    browser: Any, model_server: DemoServer, phone: str
) -> None:
    for page in phone_page(browser, model_server, phone):
        viewport = page.locator("meta[name='viewport']").get_attribute("content")
        parts = {part.split("=")[0].strip(): part.partition("=")[2] for part in viewport.split(",")}
        assert parts["width"] == "device-width" and parts["initial-scale"] == "1", viewport
        assert parts.get("user-scalable", "yes") not in ("no", "0"), viewport  # zoom is allowed
        assert "maximum-scale" not in parts, viewport

        assert font_size(page, "#prompt") >= 16  # iOS Safari zooms in on a smaller input
        page.get_by_role("textbox", name="Message").fill("A chat to rename")
        assert_big_enough(page, "Send", "Settings")
        page.get_by_role("button", name="Send").tap()
        wait_for_state(page, "complete")
        assert page.evaluate(SMALL_TEXT) == []
        if drawer_button(page).is_visible():
            assert_big_enough(page, "Open the chat list")
            drawer_button(page).tap()
            assert_big_enough(page, "Close the chat list")
        assert_big_enough(
            page, "New chat", "Rename “A chat to rename”", "Delete “A chat to rename”"
        )
        assert page.evaluate(SMALL_TEXT) == []
        page.get_by_role("button", name="Rename “A chat to rename”").tap()
        assert font_size(page, ".rename-input") >= 16
        page.keyboard.press("Escape")
        page.get_by_role("button", name="Delete “A chat to rename”").tap()
        assert_big_enough(page, "Delete", "Cancel")
        page.get_by_role("button", name="Cancel", exact=True).tap()
        if drawer_button(page).is_visible():
            page.get_by_role("button", name="Close the chat list").tap()
        page.get_by_role("button", name="Settings").tap()
        expect(page.locator("#settings")).to_be_visible()
        assert font_size(page, "#pipeline") >= 16
        assert page.evaluate(SMALL_TEXT) == []


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


def test_enter_adds_a_line_on_a_phone_and_send_sends(
    browser: Any, model_server: DemoServer
) -> None:
    """A phone's keyboard has Enter where a desktop's has Shift+Enter: it starts a new line,
    as in the major chat apps, and only Send sends; nothing tells of keys it lacks."""
    for page in phone_page(browser, model_server, "iphone"):
        choose(page, "sse-post", "passthrough")
        box = page.get_by_role("textbox", name="Message")
        expect(box).to_have_accessible_description("")
        box.tap()
        box.fill("first line")
        box.press("Enter")
        box.press_sequentially("second line")
        expect(box).to_have_value("first line\nsecond line")
        expect(page.locator(".message")).to_have_count(0)
        page.get_by_role("button", name="Send").tap()
        expect(page.locator(".message[data-role='user'] .text")).to_have_text(
            "first line\nsecond line"
        )
        wait_for_state(page, "complete")


#: The points of the 44 px square centred on a button that a tap there would not reach.
MISSED_POINTS = """(button) => {
  const box = button.getBoundingClientRect();
  const [x, y] = [box.left + box.width / 2, box.top + box.height / 2];
  return [[-21, -21], [21, -21], [-21, 21], [21, 21], [0, -21], [0, 21], [-21, 0], [21, 0]]
    .filter(([dx, dy]) => document.elementFromPoint(x + dx, y + dy)?.closest('.action')
      !== button);
}"""


def test_message_actions_fit_a_finger(browser: Any, model_server: DemoServer) -> None:
    """Copy and Regenerate take a tap anywhere in 44 px around them, as drawn at a
    mouse's size: the messages do not move apart for them. A code block's Copy is 44 px
    itself (its head clips anything around it)."""
    for page in phone_page(browser, model_server, "android"):
        send(page, "Some markdown please")
        wait_for_state(page, "complete")
        for name in ["Copy message", "Copy reply", "Regenerate reply"]:
            button = page.get_by_role("button", name=name, exact=True)
            assert button.evaluate(MISSED_POINTS) == [], name
            assert (button.bounding_box() or {}).get("height", 0) < 32, name  # drawn small
        copy = page.get_by_role("button", name="Copy reply", exact=True)
        box = copy.bounding_box()
        assert box
        page.touchscreen.tap(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2 + 20)
        expect(copy).to_have_text("Copied")
        code_copy = page.locator(".copy-code").first
        code_box = code_copy.bounding_box()
        assert code_box and code_box["width"] >= 44 and code_box["height"] >= 44, code_box
        code_copy.tap()
        expect(code_copy).to_have_text("Copied")


def test_a_tapped_button_does_not_stay_highlighted(browser: Any, model_server: DemoServer) -> None:
    """A tap leaves the pointer "over" what it tapped: a hover style would stay on Settings
    once its popover is closed again, as if it were still open."""
    for page in phone_page(browser, model_server, "iphone"):
        settings = page.get_by_role("button", name="Settings")
        untouched = settings.evaluate("e => getComputedStyle(e).backgroundColor")
        settings.tap()
        expect(page.locator("#settings")).to_be_visible()
        settings.tap()
        expect(page.locator("#settings")).to_be_hidden()
        assert settings.evaluate("e => getComputedStyle(e).backgroundColor") == untouched


#: The header's parts (the page's or a project's own) that stick out of the screen or are
#: cut short (an ellipsis or hidden overflow), as "tag.class left right scrollWidth width".
HEADER_CUT = """() => [...document.querySelectorAll('.topbar, .topbar *:not(.connection-label)')]
  .filter((e) => e.checkVisibility() && !(e instanceof SVGElement))
  .filter((e) => {
    const box = e.getBoundingClientRect();
    return box.left < 0 || box.right > innerWidth || e.scrollWidth > e.clientWidth;
  })
  .map((e) => { const box = e.getBoundingClientRect();
    return `${e.tagName}.${e.className} ${box.left} ${box.right} ${e.scrollWidth}`
      + ` ${e.clientWidth}`; })"""


@pytest.mark.parametrize("phone", PHONES)
def test_the_header_fits_a_phone(browser: Any, model_server: DemoServer, phone: str) -> None:
    """The demo's name, its badge and its link back to the site are whole on a phone."""
    for page in phone_page(browser, model_server, phone):
        expect(page.locator(".demo-badge")).to_be_visible()
        expect(page.get_by_role("link", name="Site admin")).to_be_visible()
        assert page.evaluate(HEADER_CUT) == []


#: Phones upright, from the smallest still sold (320 px) to a large one, and a small one
#: sideways: where the chat list is a drawer and the bar has the least room.
SIZES = {
    "320x568": {"width": 320, "height": 568},
    "360x640": {"width": 360, "height": 640},
    "375x667": {"width": 375, "height": 667},
    "390x844": {"width": 390, "height": 844},
    "414x896": {"width": 414, "height": 896},
    "640x360": {"width": 640, "height": 360},
}

#: The text shown in part (clipped, or ending in an ellipsis) or off the screen, among the
#: elements matched, as "tag.class scrollWidth clientWidth text". Not a label hidden for
#: screen readers (1 px wide), nor a cut text whose title attribute holds it whole.
CUT_TEXT = """(selector) => [...document.querySelectorAll(selector)]
  .filter((e) => e.checkVisibility({ visibilityProperty: true }) && !(e instanceof SVGElement)
    && e.clientWidth > 1 && !e.closest('.visually-hidden') && !e.title)
  .filter((e) => {
    const box = e.getBoundingClientRect();
    return box.left < 0 || box.right > innerWidth || e.scrollWidth > e.clientWidth;
  })
  .map((e) => `${e.tagName}.${e.className} ${e.scrollWidth} ${e.clientWidth}`
    + ` ${e.textContent.trim().slice(0, 40)}`)"""

#: The bar, the replies' meta lines and notices, and the chat list.
READ_TEXT = (
    ".topbar, .topbar *, .message .actions *, .notice, .notice *, .sidebar-head *,"
    " .conversation-link, .confirm-delete *"
)

#: A title longer than the drawer (the chat list cuts it, with the whole in a tooltip).
LONG_TITLE = "A chat title longer than the chat list of a phone is wide"


def refuse(route: Any) -> None:
    """Answer a prompt with a refusal worth trying again (a notice with "Try again")."""
    busy = {"error": "Too many replies at once: at most 2", "code": "TOO_MANY_REPLIES"}
    route.fulfill(status=429, json=busy)


def size_page(browser: Any, server: DemoServer, size: str) -> Any:
    """The page at ``size``, its drawer sliding in at once (no motion) to be measured."""
    return open_page(browser, server.url, viewport=SIZES[size], reduced_motion="reduce", **TOUCH)


def assert_on_screen(page: Any, target: Any, what: str) -> None:
    """``target`` scrolled into view lies wholly inside the screen's width and height."""
    target.scroll_into_view_if_needed()
    box = target.bounding_box()
    size = page.viewport_size
    assert box, what
    assert box["x"] >= 0 and box["x"] + box["width"] <= size["width"], (what, box)
    assert box["y"] >= 0 and box["y"] + box["height"] <= size["height"], (what, box)


@pytest.mark.parametrize("size", SIZES)
def test_nothing_is_cut_on_a_phone(browser: Any, model_server: DemoServer, size: str) -> None:
    """A chat with a long title and a long word, a finished, a stopped and a failed reply:
    the page does not scroll sideways, each control is on the screen, and the name in the
    bar, the meta lines, the notice and the question before a delete are whole (wrapped)."""
    for page in size_page(browser, model_server, size):
        choose(page, "sse-post", "passthrough")
        send(page, f"{LONG_TITLE} https://example.com/{'segment' * 40}")
        wait_for_state(page, "complete")
        send(page, "Answer slowly")
        wait_for_state(page, "streaming")
        wait_for_length(page, 100)
        stop = page.get_by_role("button", name="Stop")
        expect(stop).to_be_in_viewport()
        stop.tap()
        wait_for_state(page, "cancelled")
        page.route("**/chat/stream*", refuse)
        send(page, "This one is refused")
        wait_for_state(page, "error")
        page.unroute("**/chat/stream*", refuse)

        assert_no_sideways_scrolling(page, "the chat")
        assert page.evaluate(CUT_TEXT, READ_TEXT) == []
        expect(page.locator(".message .meta")).to_have_count(3)
        for name in ["Try again", "Regenerate reply", "Send", "Settings"]:
            assert_on_screen(page, page.get_by_role("button", name=name, exact=True), name)

        drawer_button(page).tap()
        expect(page.locator("#sidebar")).to_be_visible()
        assert_no_sideways_scrolling(page, "the chat list")
        assert page.evaluate(CUT_TEXT, READ_TEXT) == []
        page.locator(".conversation-item .delete").first.tap()
        question = page.locator(".confirm-delete span")
        expect(question).to_contain_text(LONG_TITLE)
        assert page.evaluate(CUT_TEXT, READ_TEXT) == []
        for name in ["Delete", "Cancel"]:
            assert_on_screen(page, page.get_by_role("button", name=name, exact=True), name)
        page.get_by_role("button", name="Cancel", exact=True).tap()
        page.get_by_role("button", name="Close the chat list").tap()

        page.get_by_role("button", name="Settings").tap()
        assert_on_screen(page, page.locator("#settings"), "the settings")
        assert_no_sideways_scrolling(page, "the settings")


@pytest.mark.parametrize("size", SIZES)
def test_the_bar_is_whole_while_reconnecting(
    browser: Any, model_server: DemoServer, size: str
) -> None:
    """The connection's longest states ("Reconnecting", and where the bar has room its
    whole sentence with the countdown) leave the name and the state whole."""
    for page in size_page(browser, model_server, size):
        assert page.evaluate(CUT_TEXT, ".topbar, .topbar *") == []
        choose(page, "sse-post", "passthrough")
        send(page, "Sent online")
        wait_for_state(page, "complete")
        page.context.set_offline(True)
        try:
            send(page, "Sent offline")
            wait_for_state(page, "reconnecting")
            expect(page.locator("#connection")).to_have_attribute("data-state", "reconnecting")
            assert page.evaluate(CUT_TEXT, ".topbar, .topbar *") == []
        finally:
            page.context.set_offline(False)
        wait_for_state(page, "complete")
