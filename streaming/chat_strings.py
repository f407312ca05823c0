"""The chat page's own sentences for its script (``chat.js``), translated on the server.

The page embeds them with ``json_script`` (no JavaScript catalog request); ``chat.js``
reads them with ``t(key, params)``, which fills ``%(name)s`` placeholders, as Django's
own translations write them.

Plurals: Django picks a plural form with the catalog's ``Plural-Forms`` expression, which
JavaScript could only run with ``eval``; the browser has the language's CLDR plural
categories instead (``Intl.PluralRules``). The bridge is a fixed list of sample counts,
``PLURAL_SAMPLES``, with every integer category of every language among them: each plural
sentence is sent as the distinct forms ``ngettext`` gives for those counts, and which one
each count got. The page finds a sample of the same category as its count and uses that
sample's form: the form the translator wrote for that category (gettext's and CLDR's
rules agree on whole numbers for the languages Django ships).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext, pgettext_lazy

#: Counts that cover every CLDR plural category of whole numbers (Arabic's zero to many,
#: Welsh's 6, Irish's 7, the Romance languages' million …).
PLURAL_SAMPLES = (*range(13), 19, 20, 21, 22, 100, 101, 102, 1_000_000)

#: The script's sentences by key; ``%(name)s`` is filled in by ``t()`` on the page.
STRINGS: dict[str, Promise] = {
    # The extractor pipelines' help under their menu.
    "pipeline.response": _(
        "Only the reply's <text>, and only when its action is REPLY; its <thought> is shown "
        "apart as reasoning."
    ),
    "pipeline.xml": _(
        "The content of the <text> element as it streams; everything around it is filtered out."
    ),
    "pipeline.action": _(
        "Decides by the reply's shape: XML streams its <text>, JSON nothing, plain text all."
    ),
    "pipeline.passthrough": _(
        "The model's reply exactly as it streams, unfiltered (the demo model then answers in "
        "plain text)."
    ),
    # The title of a reply's notice for each error code (the server's message stays English).
    "error.CONNECTION_LOST": _("Connection lost"),
    "error.ABORTED": _("The reply was stopped"),
    "error.NOT_RESUMABLE": _("Connection lost mid-reply"),
    "error.RESUME_FAILED": _("Connection lost mid-reply"),
    "error.HTTP_ERROR": _("The server refused the request"),
    "error.PROTOCOL_ERROR": _("Unexpected answer from the server"),
    "error.RATE_LIMITED": _("Too many messages"),
    "error.SERVER_BUSY": _("The server is busy"),
    "error.QUEUE_FULL": _("Too many messages"),
    "error.PROMPT_TOO_LARGE": _("The message is too long"),
    "error.UNKNOWN_PIPELINE": _("Unknown extractor pipeline"),
    "error.BAD_REQUEST": _("The server could not read the request"),
    "error.NOT_FOUND": _("This chat is gone"),
    "error.TIMEOUT": _("The model took too long"),
    "error.UPSTREAM_ERROR": _("The model failed"),
    "error.TOO_MANY_REPLIES": _("Too many replies at once"),
    "error.TOO_MANY_CONVERSATIONS": _("Too many new chats"),
    "error.CONVERSATION_BUSY": _("A reply is still running in this chat"),
    "error.REPLY_TOO_LARGE": _("The reply got too long"),
    "error.SHUTTING_DOWN": _("The server restarted"),
    "error.INTERRUPTED": _("The server stopped mid-reply"),
    "error.STORE_UNAVAILABLE": _("The server cannot keep replies right now"),
    "error.CSRF_FAILED": _("This page is out of date: reload it"),
    "error.FORBIDDEN": _("Not allowed"),
    "error.UNAUTHENTICATED": _("Your session has ended: log in again"),
    "error.INTERNAL_ERROR": _("The server failed"),
    "error.other": _("Something went wrong"),
    # The connection pill: its word on narrow screens, and its label.
    "pill.idle": pgettext_lazy("connection", "Ready"),
    "pill.connecting": pgettext_lazy("connection", "Connecting"),
    "pill.open": pgettext_lazy("connection", "Connected"),
    "pill.streaming": pgettext_lazy("connection", "Live"),
    "pill.reconnecting": pgettext_lazy("connection", "Reconnecting"),
    "pill.error": pgettext_lazy("connection", "Offline"),
    "connection.connecting": _("Connecting · %(transport)s"),
    "connection.waiting": _("Connected · waiting for the model"),
    "connection.open": _("Connected · %(transport)s"),
    "connection.streaming": _("Streaming · %(transport)s"),
    "connection.reconnecting": _("Connection lost · reconnecting (attempt %(attempt)s)"),
    "connection.reconnecting_in": _(
        "Connection lost · reconnecting in %(seconds)s s (attempt %(attempt)s)"
    ),
    "connection.ready": _("Ready · %(transport)s"),
    "connection.down": _("Disconnected · sending reconnects"),
    # Sentences for screen readers (the announcer).
    "announce.reconnected": _("Reconnected."),
    "announce.lost": _("Connection lost. Reconnecting…"),
    "announce.gave_up": _("Connection lost: could not reconnect."),
    "announce.copied": _("Copied."),
    "announce.stopped": _("Reply stopped."),
    "announce.empty": _("Reply finished: the reply is empty."),
    "announce.empty_while_lost": _(
        "Reply finished while the connection was lost: the reply is empty."
    ),
    "announce.deleted": _("Chat “%(title)s” deleted."),
    "announce.chat_start": _("The chat is shown from its start."),
    # A reply's notice, and the line under it.
    "notice.reconnecting": _("Reconnecting (attempt %(attempt)s)…"),
    "notice.reconnecting_in": _("Reconnecting in %(seconds)s s (attempt %(attempt)s)…"),
    "notice.chat_gone": _("This chat is gone"),
    "notice.chat_deleted": _("It was deleted, in another tab or window."),
    "notice.lookup_failed": _("Could not look the reply up"),
    "notice.offline": _("Still no connection"),
    "notice.try_later": _("%(message)s; try again in a moment."),
    "notice.failed": _("The reply failed"),
    # A prompt (or Regenerate) refused: this chat's reply, started in another tab, still runs.
    "notice.busy": _(
        "A reply is still running in this chat, started in another tab or window: it is "
        "shown here. Ask again once it ends."
    ),
    "notice.busy_prompt": _(
        "A reply is still running in this chat, started in another tab or window: it is "
        "shown here. Your message is back in the box: send it once that reply ends."
    ),
    # A prompt refused as busy is back in the box, and the reply it met has ended since.
    "notice.busy_ended": _(
        "Your message was not sent: a reply started in another tab or window was running in "
        "this chat. That reply has ended, and your message is back in the box."
    ),
    # A prompt refused after its chat was left, back in the box (the server's reason follows).
    "notice.prompt_refused": _("%(title)s: your message was not sent, and is back in the box."),
    "notice.failed_while_lost": _("It ended with an error while the connection was lost."),
    "notice.reply_gone": _("This reply is gone"),
    "notice.server_forgot": _("The server no longer has it."),
    "notice.model_failed": _("The model stopped with an error."),
    "meta.empty": _(
        "%(via)s · an empty reply (the pipeline filtered everything out) in %(seconds)s s"
    ),
    "meta.stopped_after": _("%(via)s · stopped after %(seconds)s s"),
    "meta.failed_after": _("%(via)s · failed after %(seconds)s s"),
    "meta.stopped": _("Stopped"),
    "meta.stopped_while_lost": _("Stopped while the connection was lost"),
    "meta.finished_while_lost": _("Finished while the connection was lost"),
    # Errors the page writes itself, above the message box.
    "api.unreachable": _("The server cannot be reached"),
    "api.status": _("The server answered %(status)s"),
    "load.new_chat": _("Could not start a new chat: %(message)s"),
    "load.older": _("Could not load older chats: %(message)s"),
    "load.earlier": _("Could not load earlier messages: %(message)s"),
    "load.rename": _("Could not rename the chat: %(message)s"),
    "load.delete": _("Could not delete the chat: %(message)s"),
    "load.missing": _("That chat does not exist any more."),
    "load.open": _("Could not open the chat: %(message)s"),
    # The chat list and a reply's code blocks.
    "chat.untitled": _("New chat"),
    "chat.rename": _("Rename “%(title)s”"),
    "chat.delete": _("Delete “%(title)s”"),
    "chat.new_name": _("New name of the chat"),
    "chat.confirm_label": _("Delete this chat?"),
    "chat.confirm": _("Delete “%(title)s”?"),
    "chat.delete_button": _("Delete"),
    "chat.cancel": _("Cancel"),
    "code.language": _("code"),
    "code.copy": _("Copy"),
    "code.copy_label": _("Copy %(language)s"),
    "copied": _("Copied"),
}

#: The script's sentences with a count (``%(count)s``): ``ngettext`` of that count.
PLURALS: dict[str, Callable[[int], str]] = {
    "announce.words": lambda n: ngettext(
        "Reply finished, %(count)s word.", "Reply finished, %(count)s words.", n
    ),
    "announce.words_while_lost": lambda n: ngettext(
        "Reply finished while the connection was lost, %(count)s word.",
        "Reply finished while the connection was lost, %(count)s words.",
        n,
    ),
    "announce.earlier": lambda n: ngettext(
        "%(count)s earlier message shown.", "%(count)s earlier messages shown.", n
    ),
    "meta.characters": lambda n: ngettext(
        "%(via)s · %(count)s character in %(seconds)s s",
        "%(via)s · %(count)s characters in %(seconds)s s",
        n,
    ),
    "load.too_long": lambda n: ngettext(
        "The message is too long: %(count)s character, the limit is %(limit)s.",
        "The message is too long: %(count)s characters, the limit is %(limit)s.",
        n,
    ),
}


def plural_entry(forms_of: Callable[[int], str]) -> dict[str, list[Any]]:
    """One plural sentence for the page: its distinct ``forms`` in the active language,
    and ``pick``, the index of the form of each count of ``PLURAL_SAMPLES``."""
    forms: list[str] = []
    pick: list[int] = []
    for count in PLURAL_SAMPLES:
        form = forms_of(count)
        if form not in forms:
            forms.append(form)
        pick.append(forms.index(form))
    return {"forms": forms, "pick": pick}


def page_strings() -> dict[str, Any]:
    """Every sentence of ``chat.js`` in the active language, for ``json_script``."""
    strings: dict[str, Any] = {key: str(text) for key, text in STRINGS.items()}
    strings.update({key: plural_entry(forms_of) for key, forms_of in PLURALS.items()})
    strings["plural_samples"] = list(PLURAL_SAMPLES)
    return strings
