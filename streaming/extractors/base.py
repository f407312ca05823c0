"""What every extractor shares: the protocol (and its optional events), the limits, the
size check, trimming, the incremental tag finder and the callback runner.

Lengths count Python characters (code points), so a character is never split.
"""

from __future__ import annotations

import inspect
import re
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..conf import DEFAULTS, setting
from ..errors import StreamError, StreamErrorCode

# The defaults of the limits; extractors read the current ones with ``setting()``:
# ``settings.STREAMING`` under Django, these values in plain Python.
#: Characters held back while inside a tag, so a split closing tag is never released.
SAFE_MARGIN: int = DEFAULTS["SAFE_MARGIN"]
#: Buffer size (outside a tag) past which the buffer is trimmed to its last 1024 characters.
MAX_BUFFER: int = DEFAULTS["MAX_BUFFER"]
#: Largest chunk one ``push`` accepts.
MAX_CHUNK_SIZE: int = DEFAULTS["MAX_CHUNK_SIZE"]
#: What trimming keeps.
TRIM_KEEP = 1024

# JavaScript's trim() whitespace: what the reference strips around action names and before
# deciding a filter's content type (it differs from str.strip(): no U+0085, no U+001C-1F).
_JS_WHITESPACE = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)


@runtime_checkable
class StreamExtractor(Protocol):
    """Pulls the streamable text out of a model's raw chunks while they arrive."""

    @property
    def done(self) -> bool:
        """True once nothing more will be streamed (until ``reset()``)."""
        ...

    def push(self, chunk: str) -> str:
        """Take one raw chunk; return the text that may be shown now (often ``""``)."""
        ...

    def flush(self) -> str:
        """The end of the input: return anything still held back."""
        ...

    def reset(self) -> None:
        """Start over, as if new."""
        ...


@dataclass(frozen=True, slots=True)
class ExtractorEvent:
    """A named event an extractor emits beside its text (``field_validated`` …).

    ``piece``: the event is a piece of a text streamed under ``name`` (``ReasoningExtractor``'s
    ``reasoning``), its ``data`` ``{"text": piece}``. A generation merges such pieces as it
    merges the reply's text: those of one name that come together (with nothing else
    between them) become one event, whose text is theirs joined.
    """

    name: str
    data: Any
    piece: bool = field(default=False, compare=False)


@runtime_checkable
class EmitsEvents(Protocol):
    """The one optional addition to ``StreamExtractor``: named events beside the text.

    An extractor that has ``drain_events()`` collects its events while it is pushed or
    flushed; ``Pipeline`` takes them after each ``push``/``flush`` and a generation sends
    them on (``SSEView.send_extractor_events``).
    """

    def drain_events(self) -> list[ExtractorEvent]:
        """The events emitted since the last call, oldest first; forgets them."""
        ...


def js_trim(text: str) -> str:
    """``str.strip`` with JavaScript's whitespace set, as the reference trims."""
    return text.strip(_JS_WHITESPACE)


def js_trim_start(text: str) -> str:
    """``str.lstrip`` with JavaScript's whitespace set (``trimStart``)."""
    return text.lstrip(_JS_WHITESPACE)


def max_chunk_size() -> int:
    """The ``MAX_CHUNK_SIZE`` setting. An extractor reads it once, when it is made, and
    compares each chunk's length with it in its ``push``: no call per token."""
    return int(setting("MAX_CHUNK_SIZE"))


def chunk_too_large(size: int, max_size: int) -> StreamError:
    """The error for a chunk of ``size`` characters over ``max_size``."""
    return StreamError(
        StreamErrorCode.CHUNK_TOO_LARGE,
        f"Chunk size {size} exceeds maximum allowed {max_size}",
        {"chunk_size": size, "max_allowed": max_size},
    )


def check_chunk_size(chunk: str, max_size: int | None = None) -> None:
    """Refuse a chunk over ``max_size`` characters (default: the ``MAX_CHUNK_SIZE``
    setting) before anything is appended."""
    if max_size is None:
        max_size = max_chunk_size()
    if len(chunk) > max_size:
        raise chunk_too_large(len(chunk), max_size)


def trim_buffer(buffer: str, max_size: int | None = None, keep_size: int = TRIM_KEEP) -> str:
    """Keep only the last ``keep_size`` characters (at most ``max_size``) once ``buffer``
    exceeds ``max_size`` (default: the ``MAX_BUFFER`` setting)."""
    if max_size is None:
        max_size = int(setting("MAX_BUFFER"))
    if len(buffer) > max_size:
        return buffer[len(buffer) - min(keep_size, max_size) :]
    return buffer


def check_tag_name(name: str) -> str:
    """Refuse names with ``<`` or ``>``: tags of such names could overlap in the text."""
    if "<" in name or ">" in name:
        raise ValueError(f"a tag name may not contain '<' or '>': {name!r}")
    return name


class TagFinder:
    """Reports every occurrence of a set of tags in a stream of text, once and in order.

    Each ``feed`` scans only the new chunk plus the few characters a split tag needs, so
    the cost is linear. Tags are ``<...>`` strings whose names hold no ``<`` or ``>``, so
    two occurrences never overlap and one regular-expression pass finds them all.
    """

    __slots__ = ("_overlap", "_pattern", "_tail", "position", "tags")

    def __init__(self, tags: Iterable[str]) -> None:
        self.tags = sorted(set(tags), key=len, reverse=True)
        # No tags: a pattern that never matches (an empty one would match everywhere).
        self._pattern = re.compile("|".join(re.escape(tag) for tag in self.tags) or "(?!)")
        self._overlap = max((len(tag) for tag in self.tags), default=1) - 1
        #: How many characters have been fed: the absolute position of the next one.
        self.position = 0
        self._tail = ""

    def feed(self, chunk: str) -> list[tuple[int, str]]:
        """``(absolute start, tag)`` of each occurrence that ends inside ``chunk``."""
        tail = self._tail
        window = tail + chunk
        offset = self.position - len(tail)
        found = [
            (offset + match.start(), match.group())
            for match in self._pattern.finditer(window)
            if match.end() > len(tail)
        ]
        self.position += len(chunk)
        self._tail = window[max(0, len(window) - self._overlap) :]
        return found


class Callbacks:
    """Calls user callbacks that may be sync or async; async results wait in ``pending``.

    Extractors are synchronous; an async callback's coroutine is kept until the caller
    (the streaming context, or ``await extractor.drain()``) awaits it, in order.
    """

    def __init__(self) -> None:
        self.pending: deque[Awaitable[Any]] = deque()

    def call(self, callback: Callable[..., Any] | None, *args: Any) -> None:
        """Call ``callback(*args)``; keep its awaitable result, if any, for ``drain``."""
        if callback is None:
            return
        result = callback(*args)
        if result is not None and inspect.isawaitable(result):
            self.pending.append(result)

    async def drain(self) -> None:
        """Await the kept results in the order the callbacks were called."""
        while self.pending:
            await self.pending.popleft()
