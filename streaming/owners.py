"""Who owns a reply: the only one who may resume, follow or stop it.

A logged-in user owns the replies of all their sessions (``user:<pk>``, or
``user#<sha256 of pk>`` for a long one); an anonymous
visitor owns those of their session (``session:<token>``, a random token kept in the
session); a request without a session owns only its own (``connection:<token>``).
"""

from __future__ import annotations

import hashlib
import uuid
import weakref
from typing import Any

from .login import is_logged_in

#: Longest owner string (the column that keeps it: ``Conversation.owner``).
OWNER_MAX_LENGTH = 150
#: The session key holding an anonymous visitor's owner token.
OWNER_SESSION_KEY = "streaming_owner"
#: The owner of a logged-in user: their primary key follows.
USER_OWNER = "user:"
#: The owner of a logged-in user whose primary key is too long: its SHA-256 follows.
HASHED_USER_OWNER = "user#"
#: The owner of an anonymous visitor: their session's token follows.
SESSION_OWNER = "session:"
#: The owner of a request without a session: that connection alone.
CONNECTION_OWNER = "connection:"

#: The sessions ``aowner_of`` gave an owner token in the request they serve (held weakly:
#: a session object lives as long as its request).
_given_here: weakref.WeakSet[Any] = weakref.WeakSet()


def new_owner_token() -> str:
    """A random owner token: what an anonymous visitor's session keeps."""
    return uuid.uuid4().hex


def owner_of(user: Any, session: Any, *, create: bool = True) -> str:
    """Who may follow a reply: the user when logged in, else the session's visitor.

    An anonymous visitor gets a random token in the session (saved with the response, or
    by the caller), so the same browser can resume and nobody else can. Without a session
    the owner is random: the reply can only be followed by the request that made it.

    ``create=False`` only reads: a session without a token is left unmodified (Django then
    saves nothing, and sets no cookie) and the owner is random, one that owns nothing yet.
    Requests that only look (a page view, a listing) pass it, so that a client that never
    chats (a crawler, an uptime check) stores no session.
    """
    if is_logged_in(user):
        return user_owner(user.pk)
    if session is None:
        return f"{CONNECTION_OWNER}{new_owner_token()}"
    token = session.get(OWNER_SESSION_KEY)
    if not isinstance(token, str):
        if not create:
            return f"{CONNECTION_OWNER}{new_owner_token()}"
        token = session[OWNER_SESSION_KEY] = new_owner_token()
    return f"{SESSION_OWNER}{token}"


async def aowner_of(user: Any, session: Any, *, create: bool = True) -> str:
    """``owner_of`` with Django's async session API (no thread for a database session)."""
    if is_logged_in(user):
        return user_owner(user.pk)
    if session is None:
        return f"{CONNECTION_OWNER}{new_owner_token()}"
    token = await session.aget(OWNER_SESSION_KEY)
    if not isinstance(token, str):
        if not create:
            return f"{CONNECTION_OWNER}{new_owner_token()}"
        token = new_owner_token()
        await session.aset(OWNER_SESSION_KEY, token)
        _given_here.add(session)
    return f"{SESSION_OWNER}{token}"


async def atake_back_owner(session: Any) -> None:
    """Remove the owner token this request gave the session, for a request refused before
    it made anything (a bad prompt, a limit): its session, empty again, is not stored, so
    a client refused over and over (a bot) adds no session row per refusal."""
    if session is not None and session in _given_here:
        _given_here.discard(session)
        await session.apop(OWNER_SESSION_KEY, None)


def is_connection_owner(owner: str) -> bool:
    """Whether ``owner`` is a request's own (no user, no session token): it owns nothing
    another request can reach."""
    return owner.startswith(CONNECTION_OWNER)


def user_owner(pk: object) -> str:
    """The owner a logged-in user is: the same for all their sessions. A primary key too
    long for the owner column (a custom user keyed by email address, up to 254
    characters) is hashed, so PostgreSQL does not refuse its conversations."""
    owner = f"{USER_OWNER}{pk}"
    if len(owner) <= OWNER_MAX_LENGTH:
        return owner
    return f"{HASHED_USER_OWNER}{hashlib.sha256(str(pk).encode()).hexdigest()}"
