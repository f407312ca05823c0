"""Refuse requests from other sites that would start a paid reply.

A ``GET`` starts a reply too (``EventSource`` can only GET), and a page of any site can
make the browser send one (an ``<img>``, an ``EventSource``, a WebSocket): CSRF tokens
protect only unsafe methods, and a WebSocket handshake carries none. Browsers say where
a request comes from, in headers a page cannot forge:

* ``Sec-Fetch-Site``: ``cross-site`` is refused; ``same-site`` (a sibling subdomain, the
  same host on another scheme) is refused unless its ``Origin`` is in Django's
  ``CSRF_TRUSTED_ORIGINS``; ``same-origin`` and ``none`` (typed by the user) pass;
* ``Origin``: it must be the server's own (scheme, as ``request.is_secure()`` sees it
  behind ``SECURE_PROXY_SSL_HEADER``, and host, as ``request.get_host()``) or a trusted
  one (``CSRF_TRUSTED_ORIGINS``, ``https://*.example.com`` included); ``null`` is refused.

A request with neither header is not a browser's cross-site request (curl, a server, an
SDK) and passes: limits, not this check, bound what those cost. Resuming a reply (a
``Last-Event-ID``) starts nothing and is not checked. A WebSocket scope without a ``Host``
header (which every browser sends; Channels' test communicator does not) is judged by
``Sec-Fetch-Site`` alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.utils.http import is_same_domain

from .errors import StreamError, StreamErrorCode

_DEFAULT_PORTS = {"http": "80", "https": "443"}


def check_request_origin(request: Any) -> None:
    """Raise ``StreamError`` ``CROSS_SITE`` when another site sent ``request``."""
    own = f"{request.scheme}://{request.get_host()}"
    # ``META``, as Django's CSRF check reads them: ``request.headers`` would build (and
    # keep, for the life of a streamed reply) a dict of every header.
    meta = request.META
    _check(meta.get("HTTP_SEC_FETCH_SITE"), meta.get("HTTP_ORIGIN"), own)


def check_scope_origin(scope: Mapping[str, Any]) -> None:
    """The same rule for an ASGI scope (a WebSocket handshake)."""
    headers: dict[str, str] = {}
    for name, value in scope.get("headers", ()):
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]},{text}" if key in headers else text
    _check(headers.get("sec-fetch-site"), headers.get("origin"), _scope_origin(scope, headers))


def _check(fetch_site: str | None, origin: str | None, own: str | None) -> None:
    site = (fetch_site or "").strip().lower()
    if site == "cross-site":
        raise _refused("another site")
    if site == "same-site" and not (origin and _trusted(origin)):
        raise _refused("another origin of this site that is not in CSRF_TRUSTED_ORIGINS")
    if origin is None or own is None:
        return
    if _normal(origin) != _normal(own) and not _trusted(origin):
        raise _refused(f"the origin {origin[:100]!r}")


def _refused(who: str) -> StreamError:
    return StreamError(
        StreamErrorCode.CROSS_SITE,
        f"Replies cannot be started from {who}",
    )


def _scope_origin(scope: Mapping[str, Any], headers: Mapping[str, str]) -> str | None:
    """``scheme://host`` of the server as the client addressed it (``ws`` as ``http``);
    ``None`` without a ``Host`` header, which every browser sends (a test communicator)."""
    secure = scope.get("scheme") in ("wss", "https")
    proxy_header = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy_header:
        name, expected = proxy_header
        value = headers.get(name.removeprefix("HTTP_").replace("_", "-").lower())
        if value is not None:
            secure = value.split(",", 1)[0].strip() == expected
    host = headers.get("host", "")
    if getattr(settings, "USE_X_FORWARDED_HOST", False) and "x-forwarded-host" in headers:
        host = headers["x-forwarded-host"].split(",", 1)[0].strip()
    if not host:
        return None
    return f"{'https' if secure else 'http'}://{host}"


def _normal(origin: str) -> tuple[str, str, str] | None:
    """``(scheme, host, port)`` with the default port filled in; None if not a URL."""
    try:
        parts = urlsplit(origin.strip().lower())
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname:
        return None
    return parts.scheme, parts.hostname, str(port) if port else _DEFAULT_PORTS.get(parts.scheme, "")


def _trusted(origin: str) -> bool:
    """Whether ``origin`` is listed in ``CSRF_TRUSTED_ORIGINS`` (wildcards as Django)."""
    trusted = list(getattr(settings, "CSRF_TRUSTED_ORIGINS", ()))
    normal = _normal(origin)
    if normal is None:
        return False
    if any("*" not in entry and _normal(entry) == normal for entry in trusted):
        return True
    scheme, netloc = normal[0], urlsplit(origin.strip().lower()).netloc
    return any(
        urlsplit(entry).scheme == scheme
        and is_same_domain(netloc, urlsplit(entry).netloc.lstrip("*"))
        for entry in trusted
        if "*" in entry
    )
