"""``StreamError``: the one exception the streaming stack raises on purpose.

Extractors, streams, sources and transports all report failures with it, so a
transport can turn any of them into a clean error message for the client.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class StreamErrorCode(StrEnum):
    """Why a stream failed; the value is what clients see as ``code``."""

    CHUNK_TOO_LARGE = "CHUNK_TOO_LARGE"
    PARSE_ERROR = "PARSE_ERROR"
    TIMEOUT = "TIMEOUT"
    ABORTED = "ABORTED"
    # Beyond the extractor reference: failures of the stream and its sources.
    STREAM_CLOSED = "STREAM_CLOSED"
    QUEUE_FULL = "QUEUE_FULL"
    INVALID_FIELD = "INVALID_FIELD"
    UPSTREAM_ERROR = "UPSTREAM_ERROR"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    # Requests a transport refuses.
    BAD_REQUEST = "BAD_REQUEST"
    UNKNOWN_PIPELINE = "UNKNOWN_PIPELINE"
    PROMPT_TOO_LARGE = "PROMPT_TOO_LARGE"
    RATE_LIMITED = "RATE_LIMITED"
    # An owner who keeps MAX_CONVERSATIONS_PER_OWNER conversations asks for another (409).
    TOO_MANY_CONVERSATIONS = "TOO_MANY_CONVERSATIONS"
    # A prompt to a conversation whose reply still runs (sent from another tab, say) (409):
    # one reply at a time; wait for it to end, or stop it, and send again.
    CONVERSATION_BUSY = "CONVERSATION_BUSY"
    # Refusals of a request that would start a reply: another site asked (403), the
    # client runs too many at once (429), no valid CSRF token (403), a method the view
    # does not answer (405), ``check_permissions`` said no (403).
    CROSS_SITE = "CROSS_SITE"
    TOO_MANY_REPLIES = "TOO_MANY_REPLIES"
    CSRF_FAILED = "CSRF_FAILED"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    FORBIDDEN = "FORBIDDEN"
    # An anonymous user where the project requires a login (``LoginRequiredMiddleware``;
    # 401 over HTTP, an error frame on a socket): log in and send again.
    UNAUTHENTICATED = "UNAUTHENTICATED"
    # Resumable streams: an unknown (or another user's) generation, events no longer
    # stored, and an event store that cannot be reached.
    NOT_FOUND = "NOT_FOUND"
    EVENTS_EXPIRED = "EVENTS_EXPIRED"
    STORE_UNAVAILABLE = "STORE_UNAVAILABLE"
    # The process is past what it can serve now (every connection to the event store has
    # been busy for the pool's whole wait): not a failure of the store; try again shortly.
    SERVER_BUSY = "SERVER_BUSY"
    # Hostile or unlucky runs: a reply past MAX_REPLY_CHARS, a server that stops (SIGTERM),
    # a reply whose process died (its lease lapsed).
    REPLY_TOO_LARGE = "REPLY_TOO_LARGE"
    SHUTTING_DOWN = "SHUTTING_DOWN"
    INTERRUPTED = "INTERRUPTED"

    def __str__(self) -> str:
        return self.value


#: What a client is told when the database fails (the cause goes to the log).
DATABASE_UNAVAILABLE = "The database is unavailable"


class StreamError(Exception):
    """A streaming failure with a machine-readable ``code`` and optional ``details``."""

    def __init__(
        self,
        code: StreamErrorCode | str,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = StreamErrorCode(code) if code in StreamErrorCode._value2member_map_ else code
        self.message = message
        self.details = details

    def as_dict(self) -> dict[str, Any]:
        """The client-safe form: message and code, never a traceback."""
        return {"message": self.message, "code": str(self.code)}

    def __repr__(self) -> str:
        return f"StreamError(code={str(self.code)!r}, message={self.message!r})"
