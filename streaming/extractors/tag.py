"""The tag step the XML extractors share: find ``<tag>``, stream its content, stop at
``</tag>``, holding back a safe margin so a split closing tag is never released.

Each push scans only the new text plus a tag-length overlap, and outside the tag only the
last ``len(open) - 1`` characters are kept (all a split open tag needs; the text before
the tag is never used), so the cost is linear and the memory bounded.
"""

from __future__ import annotations

from .base import SAFE_MARGIN


class TagScanner:
    """State of one tag search over a stream of text."""

    def __init__(self, tag: str) -> None:
        self.open = f"<{tag}>"
        self.close = f"</{tag}>"
        # Enough to hold a closing tag split anywhere (the reference's 10 leaks longer ones).
        self.margin = max(SAFE_MARGIN, len(self.close) - 1)
        self._open_tail = len(self.open) - 1
        self.reset()

    def reset(self) -> None:
        self.buffer = ""
        self.inside = False
        self.closed = False
        self._scan_from = 0

    def feed(self, chunk: str) -> str:
        """Append ``chunk`` and return the content that can be released now."""
        buffer = self.buffer + chunk
        if not self.inside:
            start = buffer.find(self.open, self._scan_from)
            if start < 0:
                self.buffer = buffer[-self._open_tail :] if self._open_tail else ""
                self._scan_from = 0
                return ""
            buffer = buffer[start + len(self.open) :]
            self.inside = True
            self._scan_from = 0
        end = buffer.find(self.close, self._scan_from)
        if end >= 0:
            self.buffer = buffer[end + len(self.close) :]
            self.inside = False
            self.closed = True
            self._scan_from = 0
            return buffer[:end]
        if len(buffer) > self.margin:
            self.buffer = buffer[-self.margin :]
            self._scan_from = 0
            return buffer[: -self.margin]
        self.buffer = buffer
        self._scan_from = max(0, len(buffer) - len(self.close) + 1)
        return ""

    def take_held_back(self) -> str:
        """The margin still held inside the tag (for ``flush()``)."""
        if not self.inside or not self.buffer:
            return ""
        held, self.buffer = self.buffer, ""
        self._scan_from = 0
        return held
