"""Small flat JSON objects written without the JSON encoder's set-up.

A reply writes one object per token (an SSE message's ``{"chunk": text}``, a WebSocket
``chunk`` frame), and ``json.JSONEncoder.encode`` builds a new C encoder on every call,
which costs more than the writing. An object of a few ``str`` keys with ``str`` or ``int``
values is written here, exactly as the encoder would; anything else is left to it.
``compact_json`` (SSE data, the Redis store's records) and ``plain_json`` (WebSocket
frames, as Channels' ``json.dumps``) are the two encodings the library writes.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring, encode_basestring_ascii
from typing import Any

#: Objects with more keys than this go to the encoder.
MAX_KEYS = 6

#: Compact JSON with non-ASCII characters kept (one encoder, not one per call).
_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def compact_json(data: Any) -> str:
    """``data`` as compact JSON, non-ASCII kept."""
    if type(data) is dict:
        written = flat_json(data, compact=True)
        if written is not None:
            return written
    return _compact(data)


def plain_json(data: Any) -> str:
    """``data`` as ``json.dumps(data)`` writes it."""
    if type(data) is dict:
        written = flat_json(data, compact=False)
        if written is not None:
            return written
    return json.dumps(data)


def flat_json(data: dict[Any, Any], *, compact: bool) -> str | None:
    """``data`` as JSON, or ``None`` when it is not a small flat object. ``compact``:
    as ``separators=(",", ":"), ensure_ascii=False`` writes it; else as ``json.dumps``
    does by default (``", "``, ``": "``, non-ASCII escaped)."""
    if len(data) > MAX_KEYS:
        return None
    string = encode_basestring if compact else encode_basestring_ascii
    parts = []
    for key, value in data.items():
        if type(key) is not str:
            return None
        kind = type(value)
        if kind is str:
            written = string(value)
        elif kind is int:
            written = int.__repr__(value)
        else:
            return None
        parts.append(f"{string(key)}:{written}" if compact else f"{string(key)}: {written}")
    return "{" + ("," if compact else ", ").join(parts) + "}"
