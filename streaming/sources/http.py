"""What the two network sources share: timeouts from settings, one TLS context, and
transport failures turned into ``StreamError``.

Every HTTP client a source creates reuses one TLS context: building a context loads the
CA bundle (tens of milliseconds, blocking the event loop), so it is done once per process.
"""

from __future__ import annotations

import functools
import ssl

import httpx

from ..conf import setting
from ..errors import StreamError, StreamErrorCode


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The process-wide TLS context for upstream clients (honours ``SSL_CERT_FILE``)."""
    return httpx.create_ssl_context()


def timeouts(connect: float | None = None, read: float | None = None) -> tuple[float, float]:
    """``(connect, read)`` seconds: the arguments, else the ``UPSTREAM_*_TIMEOUT`` settings."""
    return (
        float(setting("UPSTREAM_CONNECT_TIMEOUT") if connect is None else connect),
        float(setting("UPSTREAM_READ_TIMEOUT") if read is None else read),
    )


def transport_error(exc: httpx.HTTPError, connect: float, read: float) -> StreamError:
    """A ``StreamError`` for an ``httpx`` failure: TIMEOUT or UPSTREAM_ERROR, with a reason."""
    if isinstance(exc, httpx.ConnectTimeout):
        return StreamError(
            StreamErrorCode.TIMEOUT,
            f"The upstream server did not accept the connection within {connect:g} s",
            {"timeout": connect},
        )
    if isinstance(exc, httpx.TimeoutException):
        return StreamError(
            StreamErrorCode.TIMEOUT,
            f"The upstream server sent nothing for {read:g} s",
            {"timeout": read},
        )
    return StreamError(
        StreamErrorCode.UPSTREAM_ERROR,
        f"The connection to the upstream server failed: {type(exc).__name__}",
        {"reason": str(exc)},
    )
