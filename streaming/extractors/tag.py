"""The tag step the XML extractors share: find ``<tag>``, stream its content, stop at
``</tag>``, holding back a safe margin so a split closing tag is never released.

Each push scans only the new text plus a tag-length overlap, and outside the tag only the
last ``len(open) - 1`` characters are kept (all a split open tag needs; the text before
the tag is never used), so the cost is linear and the memory bounded. The reference keeps
more (up to ``MAX_BUFFER``) but what it returns is the same.
"""

from __future__ import annotations

from ..conf import setting


class TagScanner:
    """State of one tag search over a stream of text: ``<tag>`` once, then ``</tag>``."""

    __slots__ = (
        "_close_tail",
        "_open_tail",
        "buffer",
        "close",
        "closed",
        "inside",
        "margin",
        "open",
    )

    def __init__(self, tag: str) -> None:
        self.open = f"<{tag}>"
        self.close = f"</{tag}>"
        # The SAFE_MARGIN setting, but enough to hold a closing tag split anywhere (the
        # reference's 10 leaks longer ones).
        self.margin = max(int(setting("SAFE_MARGIN")), len(self.close) - 1)
        self._open_tail = len(self.open) - 1
        self._close_tail = len(self.close) - 1
        self.reset()

    def reset(self) -> None:
        """Forget everything: outside the tag, nothing held."""
        self.buffer = ""
        self.inside = False
        self.closed = False

    def enter(self, content: str) -> str:
        """Start inside the tag (its open tag was found elsewhere) with ``content``."""
        self.buffer = ""
        self.inside = True
        return self.feed(content)

    def feed(self, chunk: str) -> str:
        """Append ``chunk`` and return the content that can be released now."""
        if not self.inside:
            buffer = self.buffer + chunk
            start = buffer.find(self.open)
            if start < 0:
                self.buffer = buffer[max(0, len(buffer) - self._open_tail) :]
                return ""
            self.inside = True
            buffer = buffer[start + len(self.open) :]
            end = buffer.find(self.close)
        else:
            held = self.buffer
            buffer = held + chunk
            # The held part was searched already: only a close tag ending in ``chunk`` is new.
            end = buffer.find(self.close, max(0, len(held) - self._close_tail))
        if end >= 0:
            self.buffer = buffer[end + len(self.close) :]
            self.inside = False
            self.closed = True
            return buffer[:end]
        if len(buffer) > self.margin:
            self.buffer = buffer[-self.margin :]
            return buffer[: -self.margin]
        self.buffer = buffer
        return ""

    def take_held_back(self) -> str:
        """The margin still held inside the tag (for ``flush()``)."""
        if not self.inside or not self.buffer:
            return ""
        held, self.buffer = self.buffer, ""
        return held
