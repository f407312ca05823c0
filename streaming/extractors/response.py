"""``ResponseStreamExtractor``: stream ``<text>`` only when the reply's only action is REPLY."""

from __future__ import annotations

from bisect import bisect_left
from enum import Enum

from ..conf import setting
from .base import TRIM_KEEP, TagFinder, chunk_too_large, js_trim, max_chunk_size
from .tag import TagScanner

ACTIONS_OPEN, ACTIONS_CLOSE = "<actions>", "</actions>"
TEXT_OPEN, TEXT_CLOSE = "<text>", "</text>"


class Strategy(Enum):
    """How the reply is streamed; decided once, at the first complete ``<actions>``."""

    PENDING = "pending"  # <actions> not seen whole yet
    DIRECT = "direct"  # the only action is REPLY: stream <text>
    DELEGATED = "delegated"  # other actions speak for the agent: stream nothing


def is_direct_reply(actions: str) -> bool:
    """True iff the comma-separated action list is exactly ``REPLY`` (any case, spaces)."""
    items = [js_trim(item).upper() for item in actions.split(",")]
    return [item for item in items if item] == ["REPLY"]


class ResponseStreamExtractor:
    """The ElizaOS agent reply filter: ``<response><thought/><actions/><text/></response>``.

    The strategy is decided once, when the first ``<actions>…</actions>`` is complete.
    Directly replying, it streams the first ``<text>`` content with the safe margin;
    otherwise it streams nothing (the actions answer instead) and is never done.

    Until the strategy is known, the reply is held (trimmed to its last 1024 characters
    whenever it exceeds ``MAX_BUFFER``), a ``<text>`` that closes first included: it is
    streamed, whole, once the actions turn out to be REPLY (the reference drops it when
    the reply arrives in pieces). Tags are handled in the order they complete, so the
    result never depends on how the reply is split into chunks.
    """

    def __init__(self) -> None:
        self._max_chunk_size = max_chunk_size()
        self.reset()

    def reset(self) -> None:
        """Start over: strategy pending, nothing held."""
        self.strategy = Strategy.PENDING
        self._max_buffer = int(setting("MAX_BUFFER"))
        # What a trim keeps: never more than the limit itself (a smaller limit than
        # TRIM_KEEP would keep the held reply over it, and trim again at the same place).
        self._keep = min(TRIM_KEEP, self._max_buffer)
        self._scanner = TagScanner("text")
        self._finished = False
        self._finder = TagFinder((ACTIONS_OPEN, ACTIONS_CLOSE, TEXT_OPEN, TEXT_CLOSE))
        # The held reply (outside the text): parts from absolute position ``_base`` on.
        # Lists, not deques: a deque takes a block of 64 slots at once, and a reply holds
        # these while it is open (mostly empty, once the text streams).
        self._held: list[str] = []
        self._base = 0
        self._end = 0
        # Absolute start of each complete tag still in the held reply, per tag (ascending).
        self._tags: dict[str, list[int]] = {
            tag: [] for tag in (ACTIONS_OPEN, ACTIONS_CLOSE, TEXT_OPEN, TEXT_CLOSE)
        }

    @property
    def done(self) -> bool:
        return self._finished

    def push(self, chunk: str) -> str:
        if self._finished:
            return ""
        if len(chunk) > self._max_chunk_size:
            raise chunk_too_large(len(chunk), self._max_chunk_size)
        if self._scanner.inside:
            return self._release(self._scanner.feed(chunk))
        if self._delegated():
            return ""  # nothing is ever streamed again (until reset)
        start = self._finder.position
        for position, tag in self._finder.feed(chunk):
            end = position + len(tag)
            self._hold(chunk, start, end, trim_at_end=False)
            self._tags[tag].append(position)
            entered = self._settle()
            if self._delegated():
                return ""
            if entered is not None:
                if not self._scanner.closed:  # else the text was whole in the held reply
                    entered += self._scanner.feed(chunk[end - start :])
                return self._release(entered)
            self._trim()
        self._hold(chunk, start, start + len(chunk), trim_at_end=True)
        return ""

    def flush(self) -> str:
        return self._scanner.take_held_back()

    def _delegated(self) -> bool:
        return self.strategy is Strategy.DELEGATED

    def _release(self, text: str) -> str:
        if self._scanner.closed:
            self._finished = True
        return text

    # ------------------------------------------------------------- the held reply
    def _hold(self, chunk: str, start: int, stop: int, *, trim_at_end: bool) -> None:
        """Hold ``chunk`` up to absolute ``stop``, trimming wherever the held reply first
        exceeds the ``MAX_BUFFER`` limit (at ``stop`` itself only if ``trim_at_end``)."""
        while True:
            limit = self._base + self._max_buffer + 1  # where the held reply would exceed the limit
            if limit > stop or (limit == stop and not trim_at_end):
                break
            self._append(chunk[self._end - start : limit - start])
            self._trim()
        self._append(chunk[self._end - start : stop - start])

    def _append(self, text: str) -> None:
        if text:
            self._held.append(text)
            self._end += len(text)

    def _trim(self) -> None:
        if self._end - self._base > self._max_buffer:
            self._discard_before(self._end - self._keep)

    def _discard_before(self, position: int) -> None:
        """Drop the held reply before absolute ``position``, and the tags that start there."""
        held = self._held
        dropped = 0
        while dropped < len(held) and self._base + len(held[dropped]) <= position:
            self._base += len(held[dropped])
            dropped += 1
        del held[:dropped]
        if held and self._base < position:
            held[0] = held[0][position - self._base :]
        self._base = position
        for starts in self._tags.values():
            del starts[: bisect_left(starts, position)]

    def _held_text(self, start: int) -> str:
        """The held reply from absolute ``start`` to its end (joined once per decision)."""
        return "".join(self._held)[start - self._base :]

    # ----------------------------------------------------------------- decisions
    def _settle(self) -> str | None:
        """Apply what the tags held so far decide; the text to stream if ``<text>`` opens.

        A ``<text>`` that comes (even whole) before the actions are known stays held
        until they are: streamed if they are REPLY, dropped otherwise.
        """
        tags = self._tags
        if self.strategy is Strategy.PENDING and tags[ACTIONS_OPEN]:
            opened = tags[ACTIONS_OPEN][0]
            closes = tags[ACTIONS_CLOSE]
            del closes[: bisect_left(closes, opened)]
            if closes:
                content = self._held_text(opened + len(ACTIONS_OPEN))
                content = content[: closes[0] - opened - len(ACTIONS_OPEN)]
                direct = is_direct_reply(content)
                self.strategy = Strategy.DIRECT if direct else Strategy.DELEGATED
        if self.strategy is Strategy.DELEGATED:
            self._discard_before(self._end)
            return None
        if self.strategy is Strategy.PENDING or not tags[TEXT_OPEN]:
            return None
        content = self._held_text(tags[TEXT_OPEN][0] + len(TEXT_OPEN))
        self._discard_before(self._end)
        return self._scanner.enter(content)
