"""The chat page's translations: the French catalog is complete, its ``.mo`` is compiled from
its ``.po``, it holds every text the page marks, and the page's language and direction."""

from __future__ import annotations

import ast
import gettext
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.utils import translation

import streaming
from streaming.chat_strings import PLURAL_SAMPLES, STRINGS, page_strings

from .servers import ROOT, require_installed

APP = Path(streaming.__file__).parent
MESSAGES = APP / "locale" / "fr" / "LC_MESSAGES"

#: A catalog's entries: msgid (``context\x04msgid`` with a context, ``(msgid, n)`` for a
#: plural's forms) to msgstr, as ``gettext.GNUTranslations`` reads them from a ``.mo``.
Catalog = dict[str | tuple[str, int], str]


def read_po(path: Path) -> tuple[Catalog, list[str]]:
    """The entries of a ``.po`` file, and the msgids of those marked fuzzy."""
    catalog: Catalog = {}
    fuzzy: list[str] = []
    for block in path.read_text(encoding="utf-8").split("\n\n"):
        fields: dict[str, str] = {}
        key = ""
        for line in block.splitlines():
            if line.startswith("#"):
                continue
            if not line.startswith('"'):
                key, _, line = line.partition(" ")
                fields[key] = ""
            fields[key] += ast.literal_eval(line)
        if "msgid" not in fields:
            continue
        msgid = fields["msgid"]
        if "msgctxt" in fields:
            msgid = f"{fields['msgctxt']}\x04{msgid}"
        if "#, fuzzy" in block:
            fuzzy.append(msgid)
        if "msgid_plural" in fields:
            for name, text in fields.items():
                if name.startswith("msgstr["):
                    catalog[(msgid, int(name[7:-1]))] = text
        else:
            catalog[msgid] = fields["msgstr"]
    return catalog, fuzzy


def test_the_french_catalog_is_complete() -> None:
    catalog, fuzzy = read_po(MESSAGES / "django.po")
    assert fuzzy == []
    untranslated = [key for key, text in catalog.items() if key != "" and not text]
    assert untranslated == []
    assert len(catalog) > 100


def test_the_mo_is_compiled_from_the_po() -> None:
    catalog, _ = read_po(MESSAGES / "django.po")
    with (MESSAGES / "django.mo").open("rb") as compiled:
        mo = gettext.GNUTranslations(compiled)
    header = catalog.pop("")
    assert f"Plural-Forms: {mo.info()['plural-forms']}\n" in header
    assert {k: v for k, v in mo._catalog.items() if k != ""} == catalog  # type: ignore[attr-defined]


def test_the_catalog_has_every_text_the_page_marks(tmp_path: Path) -> None:
    """``makemessages`` of the page's files (its template and ``chat_strings``) finds no
    text that the French catalog lacks."""
    gettext_installed = shutil.which("xgettext") is not None
    require_installed(gettext_installed, "GNU gettext is not installed (scripts/test installs it)")
    app = tmp_path / "streaming"
    shutil.copytree(APP / "templates", app / "templates")
    shutil.copy(APP / "chat_strings.py", app)
    (app / "locale").mkdir()
    subprocess.run(
        [sys.executable, "-m", "django", "makemessages", "-l", "fr", "-d", "django"],
        cwd=app,
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(ROOT),
            "DJANGO_SETTINGS_MODULE": "tests.settings",
        },
        check=True,
        capture_output=True,
        timeout=120,
    )
    marked, _ = read_po(app / "locale" / "fr" / "LC_MESSAGES" / "django.po")
    shipped, _ = read_po(MESSAGES / "django.po")
    assert sorted(map(str, set(marked) - set(shipped))) == []
    assert sorted(map(str, set(shipped) - set(marked))) == []


def test_the_scripts_sentences_in_french_with_their_plural_forms() -> None:
    with translation.override("fr"):
        strings = page_strings()
    assert strings["announce.copied"] == "Copié."
    assert strings["pill.idle"] == "Prêt"
    assert strings["plural_samples"] == list(PLURAL_SAMPLES)
    words = strings["announce.words"]
    assert words["forms"] == [
        "Réponse terminée, %(count)s mot.",
        "Réponse terminée, %(count)s mots.",
    ]
    pick = dict(zip(PLURAL_SAMPLES, words["pick"], strict=True))
    assert (pick[0], pick[1], pick[2], pick[1_000_000]) == (0, 0, 1, 1)  # French: n > 1
    with translation.override("en"):
        english = page_strings()
    assert english["announce.copied"] == "Copied."
    pick = dict(zip(PLURAL_SAMPLES, english["announce.words"]["pick"], strict=True))
    assert pick[0] == pick[2] != pick[1]  # English: 0 words, 1 word
    assert set(english) == set(strings) >= set(STRINGS)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("language", "lang", "direction", "text"),
    [("fr", "fr", "ltr", "Envoyer"), ("en", "en", "ltr", "Send"), ("he", "he", "rtl", None)],
)
def test_the_page_has_the_active_languages_lang_and_direction(
    client: Client,
    settings: Any,
    language: str,
    lang: str,
    direction: str,
    text: str | None,
) -> None:
    settings.LANGUAGE_CODE = language  # no LocaleMiddleware in the tests' settings
    page = client.get("/").content.decode()
    assert f'<html lang="{lang}" dir="{direction}">' in page
    if text:
        assert f'class="send" id="send" aria-label="{text}"' in page
    assert '<script id="chat-strings" type="application/json">' in page
