"""Lone surrogates become U+FFFD wherever text from a client or a model enters.

A Python ``str`` can hold a lone surrogate (U+D800 to U+DFFF): JSON's ``"\\ud800"`` escape
makes one, and so does a model server's broken output. UTF-8 cannot encode it, so the
first write of such text (the SSE body, a WebSocket text frame, the Redis store) would
fail and end the reply. Replacing it where the text enters (the prompt, each model
chunk, an error's message) keeps every later step simple; ASCII text, the common case,
is passed through after one C-level check.

A model server that cuts its text in UTF-16 units (a JavaScript one) can send the two
halves of a surrogate pair (an emoji) in two chunks, each a lone surrogate once its JSON
is read: ``SplitPairs`` joins them back into the one character they are.
"""

from __future__ import annotations

import re
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\ufffd"
_HIGH = ("\ud800", "\udbff")
_LOW = ("\udc00", "\udfff")


def replace_surrogates(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD (the same object if none)."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub(REPLACEMENT, text)
    return text


def replace_surrogates_in(value: Any) -> Any:
    """``replace_surrogates`` through a parsed JSON value (keys and strings)."""
    if isinstance(value, str):
        return replace_surrogates(value)
    if isinstance(value, dict):
        return {replace_surrogates_in(k): replace_surrogates_in(v) for k, v in value.items()}
    if isinstance(value, list):
        return [replace_surrogates_in(item) for item in value]
    return value


class SplitPairs:
    """Joins a surrogate pair split across two pieces of one stream of text: a piece that
    ends in a high surrogate keeps it back until the next piece, which it starts when that
    begins with the low half (as the character they make). What is kept back and never
    joined comes out of ``rest`` (a lone surrogate, replaced where the text enters)."""

    __slots__ = ("high",)

    def __init__(self) -> None:
        self.high = ""

    def join(self, text: str) -> str:
        """``text`` with the high surrogate kept from the last piece before it, and
        without its own last character when that is a high surrogate (kept back)."""
        if self.high:
            text, self.high = self.high + text, ""
            if len(text) > 1 and _LOW[0] <= text[1] <= _LOW[1]:
                text = text[:2].encode("utf-16", "surrogatepass").decode("utf-16") + text[2:]
        if text and _HIGH[0] <= text[-1] <= _HIGH[1]:
            text, self.high = text[:-1], text[-1]
        return text

    def rest(self) -> str:
        """The high surrogate kept back at the end of the stream (or "")."""
        high, self.high = self.high, ""
        return high
