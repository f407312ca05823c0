"""Small whole-buffer models of the extractors, written straight from the ElizaOS
reference's described behaviour plus the fixes this package makes (see the README).

They re-scan the whole buffer on every push (quadratic, fine for tests) and serve as the
oracle the real, incremental extractors are compared with.
"""

from __future__ import annotations

from streaming.extractors.base import MAX_BUFFER, SAFE_MARGIN, js_trim_start, trim_buffer
from streaming.extractors.response import is_direct_reply


class TagStepModel:
    """The reference tag step, with the margin widened for long closing tags (fix 4)."""

    def __init__(self, tag: str) -> None:
        self.open, self.close = f"<{tag}>", f"</{tag}>"
        self.margin = max(SAFE_MARGIN, len(self.close) - 1)
        self.buffer = ""
        self.inside = False
        self.closed = False

    def step(self) -> str:
        if not self.inside:
            start = self.buffer.find(self.open)
            if start < 0:
                return ""
            self.buffer = self.buffer[start + len(self.open) :]
            self.inside = True
        end = self.buffer.find(self.close)
        if end >= 0:
            out, self.buffer = self.buffer[:end], self.buffer[end + len(self.close) :]
            self.inside, self.closed = False, True
            return out
        if len(self.buffer) > self.margin:
            out, self.buffer = self.buffer[: -self.margin], self.buffer[-self.margin :]
            return out
        return ""

    def flush(self) -> str:
        if not self.inside:
            return ""
        out, self.buffer = self.buffer, ""
        return out


class XmlTagModel:
    """XmlTagExtractor: done-guard, trim before the search (harmless under MAX_BUFFER)."""

    def __init__(self, tag: str) -> None:
        self.scan = TagStepModel(tag)

    @property
    def done(self) -> bool:
        return self.scan.closed

    def push(self, chunk: str) -> str:
        if self.scan.closed:
            return ""
        self.scan.buffer += chunk
        if not self.scan.inside:
            self.scan.buffer = trim_buffer(self.scan.buffer)
        return self.scan.step()

    def flush(self) -> str:
        return self.scan.flush()


class ActionFilterModel:
    """ActionStreamFilter, with the done-guard."""

    def __init__(self) -> None:
        self.buffer = ""
        self.kind: str | None = None
        self.scan = TagStepModel("text")

    @property
    def done(self) -> bool:
        return self.scan.closed

    def push(self, chunk: str) -> str:
        if self.scan.closed:
            return ""
        self.buffer += chunk
        if self.kind is None:
            rest = js_trim_start(self.buffer)
            if not rest:
                return ""
            self.kind = "json" if rest[0] in "{[" else "xml" if rest[0] == "<" else "text"
        if self.kind == "json":
            return ""
        if self.kind == "text":
            out, self.buffer = self.buffer, ""
            return out
        self.scan.buffer += self.buffer
        self.buffer = ""
        return self.scan.step()

    def flush(self) -> str:
        return self.scan.flush() if self.kind == "xml" else ""


class ResponseModel:
    """ResponseStreamExtractor with the done-guard; a ``<text>`` held before the actions
    are known is streamed once they are REPLY. Pushed one character at a time it is what
    the real one does."""

    def __init__(self) -> None:
        self.buffer = ""
        self.strategy = "pending"
        self.scan = TagStepModel("text")

    @property
    def done(self) -> bool:
        return self.scan.closed

    def push(self, chunk: str) -> str:
        if self.scan.closed:
            return ""
        if self.scan.inside:
            self.scan.buffer += chunk
            return self.scan.step()
        self.buffer += chunk
        if self.strategy == "pending":
            start = self.buffer.find("<actions>")
            end = self.buffer.find("</actions>", start + 9) if start >= 0 else -1
            if end >= 0:
                direct = is_direct_reply(self.buffer[start + 9 : end])
                self.strategy = "direct" if direct else "delegated"
        if self.strategy == "direct" and "<text>" in self.buffer:
            start = self.buffer.find("<text>")
            self.scan.buffer, self.buffer = self.buffer[start + 6 :], ""
            self.scan.inside = True
            return self.scan.step()
        if len(self.buffer) > MAX_BUFFER:
            self.buffer = self.buffer[-1024:]
        return ""

    def flush(self) -> str:
        return self.scan.flush()
