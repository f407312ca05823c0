"""The chat page in the browser's language: French (shipped), Arabic (right to left, its
sentences untranslated), and English by default.

The demo project picks the language with ``LocaleMiddleware`` from ``Accept-Language``,
which Playwright sends from the context's ``locale``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from .chatpage import last_reply, wait_for_state
from .conftest import DemoServer, announcing_page


def page_in(browser: Any, server: DemoServer, locale: str, **options: Any) -> Iterator[Any]:
    """The chat page of a browser set to ``locale``, its announcements recorded."""
    yield from announcing_page(browser, server, locale=locale, **options)


def box(locator: Any) -> dict[str, float]:
    """Where an element is on the page (hidden or not)."""
    return dict(locator.evaluate("e => e.getBoundingClientRect().toJSON()"))


def use_passthrough(page: Any) -> None:
    """The passthrough pipeline (found by id: its labels are in the page's language)."""
    page.locator("#settings-button").click()
    page.locator("#pipeline").select_option("passthrough")
    page.locator("#settings-button").click()
    expect(page.locator("#settings")).to_be_hidden()


def send(page: Any, prompt: str) -> None:
    page.locator("#prompt").fill(prompt)
    page.locator("#prompt").press("Enter")


def test_a_french_browser_gets_the_page_in_french(browser: Any, model_server: DemoServer) -> None:
    for page in page_in(browser, model_server, "fr-FR"):
        html = page.locator("html")
        expect(html).to_have_attribute("lang", "fr")
        expect(html).to_have_attribute("dir", "ltr")
        # The template's texts: labels, a placeholder, a hint, a heading.
        expect(page.get_by_role("button", name="Envoyer")).to_be_attached()
        prompt = page.get_by_role("textbox", name="Message")
        expect(prompt).to_have_attribute("placeholder", "Écrire au modèle…")
        expect(page.locator("#composer-hint")).to_contain_text("Entrée")
        expect(page.locator("#empty-title")).to_have_text("Que puis-je faire pour vous\u00a0?")
        expect(page.get_by_role("button", name="Nouvelle discussion")).to_be_visible()
        # The script's: the connection pill, and the pipeline's help.
        expect(page.locator(".connection-label")).to_have_text("Prêt · SSE POST (fetch)")
        expect(page.locator("#pipeline-help")).to_contain_text("Seulement le <text>")

        # A reply: its announcement counts words in French (a plural), its line says how
        # long it took with a decimal comma, and a code block's Copy names its language.
        use_passthrough(page)
        send(page, "Some markdown please")
        wait_for_state(page, "complete")
        reply = last_reply(page)
        page.wait_for_function("window.__announced.length >= 1")
        assert re.fullmatch(r"Réponse terminée, \d+ mots\.", page.evaluate("window.__announced[0]"))
        expect(reply.locator(".meta")).to_have_text(
            re.compile(r"^SSE POST \(fetch\) · passthrough · \d+ caractères en \d+,\d\u00a0s$")
        )
        expect(reply.get_by_role("button", name="Copier le python")).to_have_text("Copier")
        expect(reply.get_by_role("heading", name="Le modèle a dit\u00a0:")).to_have_count(1)

        # Stopped: the announcer and the reply's line.
        send(page, "Answer slowly")
        wait_for_state(page, "streaming")
        page.get_by_role("button", name="Arrêter").click()
        wait_for_state(page, "cancelled")
        expect(last_reply(page).locator(".meta")).to_contain_text("arrêtée après")
        page.wait_for_function("window.__announced.includes('Réponse arrêtée.')")

        # A plural with numbers formatted as French writes them (a narrow no-break space).
        send(page, "x" * 32_001)
        expect(page.locator("#load-error")).to_have_text(
            "Le message est trop long\u00a0: 32\u202f001 caractères, la limite est de 32\u202f000."
        )


def test_english_stays_the_default(browser: Any, model_server: DemoServer) -> None:
    for page in page_in(browser, model_server, "de-DE"):  # a language the page does not have
        expect(page.locator("html")).to_have_attribute("lang", re.compile(r"^en"))
        expect(page.locator("html")).to_have_attribute("dir", "ltr")
        expect(page.get_by_role("button", name="Send")).to_be_attached()
        expect(page.locator(".connection-label")).to_have_text("Ready · SSE POST (fetch)")
        send(page, "Some markdown please")
        wait_for_state(page, "complete")
        page.wait_for_function("window.__announced.length >= 1")
        assert re.fullmatch(r"Reply finished, \d+ words\.", page.evaluate("window.__announced[0]"))


def test_a_right_to_left_page_is_mirrored_and_code_stays_left_to_right(
    browser: Any, model_server: DemoServer
) -> None:
    for page in page_in(browser, model_server, "ar"):
        html = page.locator("html")
        expect(html).to_have_attribute("lang", "ar")
        expect(html).to_have_attribute("dir", "rtl")
        width = page.viewport_size["width"]
        # The chat list on the right, the conversation to its left.
        sidebar, main = box(page.locator("#sidebar")), box(page.locator(".main"))
        assert sidebar["x"] + sidebar["width"] == pytest.approx(width, abs=1)
        assert main["x"] + main["width"] <= sidebar["x"] + 1
        # In the message box: the text starts on the right, Send is at its left end.
        composer, send_button = box(page.locator(".composer-box")), box(page.locator("#send"))
        prompt = box(page.locator("#prompt"))
        assert send_button["x"] < prompt["x"]
        assert send_button["x"] - composer["x"] < 20
        # The settings open under their button, towards the inside of the page.
        settings_button = page.locator("#settings-button")
        settings_button.click()
        settings, button = box(page.locator("#settings")), box(settings_button)
        assert settings["x"] == pytest.approx(button["x"], abs=2)
        settings_button.click()

        send(page, "Some markdown please")
        wait_for_state(page, "complete")
        # The user's bubble on the left (the start side is the right).
        bubble = box(page.locator(".message[data-role='user'] .bubble").last)
        column = box(page.locator("#messages"))
        assert bubble["x"] == pytest.approx(column["x"], abs=2)
        reply = last_reply(page)
        code = reply.locator("pre")
        assert code.evaluate("e => getComputedStyle(e).direction") == "ltr"
        assert code.evaluate("e => getComputedStyle(e).textAlign") == "left"
        # An English paragraph in an Arabic page reads left to right, from the left.
        paragraph = reply.locator(".text p").first
        indent = paragraph.evaluate(
            """p => {
              const range = document.createRange();
              range.selectNodeContents(p);
              return range.getClientRects()[0].left - p.getBoundingClientRect().left;
            }"""
        )
        assert indent < 2


def test_the_drawer_slides_in_from_the_right_on_a_phone(
    browser: Any, model_server: DemoServer
) -> None:
    phone = {"viewport": {"width": 360, "height": 640}, "is_mobile": True, "has_touch": True}
    for page in page_in(browser, model_server, "ar", **phone):
        sidebar = page.locator("#sidebar")
        assert box(sidebar)["x"] >= 360  # off the page, past its right edge
        page.locator("#open-drawer").click()
        expect(page.locator("#chat")).to_have_attribute("data-drawer", "open")
        page.wait_for_function("() => !document.querySelector('#sidebar').getAnimations().length")
        shown = box(sidebar)
        assert shown["x"] + shown["width"] == pytest.approx(360, abs=1)
