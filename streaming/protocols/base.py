"""``WireProtocol``: typed generation events in, wire messages out."""

from __future__ import annotations

import abc
from collections.abc import Iterable
from typing import Generic, TypeVar

from ..errors import StreamError
from ..events import Cancelled, Chunk, Complete, Error, Event, GenerationEvent, merge_chunks

M = TypeVar("M")


class WireProtocol(abc.ABC, Generic[M]):
    """Maps the events of one generation to the messages ``M`` of a transport.

    ``messages`` merges each run of chunks first (the wire is about text: one message per
    run, numbered as its last chunk), then asks the method of each event's kind.
    """

    def messages(self, generation_id: str, events: Iterable[GenerationEvent]) -> list[M]:
        if type(events) is list and len(events) == 1 and type(events[0]) is Chunk:
            return list(self.chunk(generation_id, events[0]))  # a paced token: the usual batch
        return [
            message
            for event in merge_chunks(events)
            for message in self.messages_of(generation_id, event)
        ]

    def messages_of(self, generation_id: str, event: GenerationEvent) -> Iterable[M]:
        """The messages of one event: the method of its kind."""
        if isinstance(event, Chunk):
            return self.chunk(generation_id, event)
        if isinstance(event, Event):
            return self.event(generation_id, event)
        if isinstance(event, Complete):
            return self.complete(generation_id, event)
        if isinstance(event, Error):
            return self.error(generation_id, event)
        return self.cancelled(generation_id, event)

    @abc.abstractmethod
    def chunk(self, generation_id: str, event: Chunk) -> Iterable[M]:
        """A run of text."""

    def event(self, generation_id: str, event: Event) -> Iterable[M]:
        """A named extractor event: nothing, unless the protocol has a way to say it."""
        return ()

    @abc.abstractmethod
    def complete(self, generation_id: str, event: Complete) -> Iterable[M]:
        """The normal end."""

    @abc.abstractmethod
    def error(self, generation_id: str, event: Error) -> Iterable[M]:
        """The reply failed."""

    @abc.abstractmethod
    def cancelled(self, generation_id: str, event: Cancelled) -> Iterable[M]:
        """The reply was stopped."""

    @abc.abstractmethod
    def failure(
        self, error: StreamError, generation_id: str | None = None, seq: int | None = None
    ) -> M:
        """A failure outside the reply's events: a refused request, a lost store. ``seq``
        is the last event the client has of ``generation_id`` (to resume after)."""
