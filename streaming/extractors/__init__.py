"""Streaming extractors: plain Python (no Django) filters that pull the streamable text
out of a model's reply while it arrives. ``push(chunk) -> str``, ``flush()``, ``done``,
``reset()``; see the README for each one's rules.
"""

from ..errors import StreamError, StreamErrorCode
from .action_filter import ActionStreamFilter, ContentType
from .base import (
    MAX_BUFFER,
    MAX_CHUNK_SIZE,
    SAFE_MARGIN,
    EmitsEvents,
    ExtractorEvent,
    StreamExtractor,
    check_chunk_size,
    trim_buffer,
)
from .context import StreamingContext, StreamingRetryState
from .passthrough import MarkableExtractor, PassthroughExtractor
from .pipeline import Pipeline
from .reasoning import ReasoningExtractor
from .response import ResponseStreamExtractor, Strategy
from .validation import ValidationStreamExtractor
from .xml_tag import XmlTagExtractor

__all__ = [
    "MAX_BUFFER",
    "MAX_CHUNK_SIZE",
    "SAFE_MARGIN",
    "ActionStreamFilter",
    "ContentType",
    "EmitsEvents",
    "ExtractorEvent",
    "MarkableExtractor",
    "PassthroughExtractor",
    "Pipeline",
    "ReasoningExtractor",
    "ResponseStreamExtractor",
    "Strategy",
    "StreamError",
    "StreamErrorCode",
    "StreamExtractor",
    "StreamingContext",
    "StreamingRetryState",
    "ValidationStreamExtractor",
    "XmlTagExtractor",
    "check_chunk_size",
    "trim_buffer",
]
