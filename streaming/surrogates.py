"""Lone surrogates become U+FFFD wherever text from a client or a model enters.

A Python ``str`` can hold a lone surrogate (U+D800 to U+DFFF): JSON's ``"\\ud800"`` escape
makes one, and so does a model server's broken output. UTF-8 cannot encode it, so the
first write of such text (the SSE body, a WebSocket text frame, the Redis store) would
fail and end the reply. Replacing it where the text enters (the prompt, each model
chunk, an error's message) keeps every later step simple; ASCII text, the common case,
is passed through after one C-level check.
"""

from __future__ import annotations

import re
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\ufffd"


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
