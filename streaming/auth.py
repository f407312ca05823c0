"""Channels' ``AuthMiddlewareStack`` for the chat's sockets: the same session and user in
the ``scope``, but a handshake whose session or user the database fails to load (it is
down, restarting, or Django's pool has no connection free) is refused with one log line
(HTTP 403, which the page's client retries with backoff), as an HTTP request gets its
503, instead of Channels' HTTP 500 and a traceback for every socket."""

from __future__ import annotations

from typing import Any

from channels.auth import AuthMiddleware as ChannelsAuthMiddleware
from channels.sessions import CookieMiddleware, SessionMiddleware
from django.db import DatabaseError

from .requests import database_failed


class AuthMiddleware(ChannelsAuthMiddleware):
    """Channels' ``AuthMiddleware`` (the user from the session), refusing the handshake
    when the database fails under it."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        scope = dict(scope)
        self.populate_scope(scope)
        try:
            await self.resolve_scope(scope)
        except DatabaseError as exc:
            await database_failed(exc, "the WebSocket handshake")
            await send({"type": "websocket.close"})
            return None
        return await self.inner(scope, receive, send)


def AuthMiddlewareStack(inner: Any) -> CookieMiddleware:
    """``channels.auth.AuthMiddlewareStack``, with this module's ``AuthMiddleware``."""
    return CookieMiddleware(SessionMiddleware(AuthMiddleware(inner)))
