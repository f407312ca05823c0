"""Owners: a user, else a session's visitor, else the connection alone."""

from __future__ import annotations

from typing import Any

from streaming.models import Conversation
from streaming.owners import aowner_of, is_connection_owner, owner_of


class Session(dict[str, Any]):
    pass


class User:
    def __init__(self, pk: object, authenticated: bool) -> None:
        self.pk = pk
        self.is_authenticated = authenticated


def test_owners_are_users_then_session_visitors_then_nobody_else() -> None:
    session = Session()
    assert owner_of(User(3, True), session) == "user:3"
    visitor = owner_of(User(0, False), session)
    assert visitor.startswith("session:") and owner_of(None, session) == visitor
    assert owner_of(None, Session()) != visitor
    assert owner_of(None, None).startswith("connection:")
    assert owner_of(None, None) != owner_of(None, None)


async def test_the_async_owner_uses_the_async_session_api() -> None:
    from django.contrib.sessions.backends.signed_cookies import SessionStore

    session = SessionStore()
    visitor = await aowner_of(None, session)
    assert visitor.startswith("session:")
    assert await aowner_of(User(0, False), session) == visitor == owner_of(None, session)
    assert await aowner_of(User(5, True), session) == "user:5"
    assert (await aowner_of(None, None)).startswith("connection:")


async def test_create_false_reads_a_token_and_never_makes_one() -> None:
    """What a page view, a listing and a socket's handshake ask: a session without a token
    stays unmodified (Django saves nothing), and its owner owns nothing."""
    from django.contrib.sessions.backends.signed_cookies import SessionStore

    session = SessionStore()
    for owner in (
        owner_of(None, session, create=False),
        await aowner_of(None, session, create=False),
    ):
        assert is_connection_owner(owner)
    assert not session.modified and session.is_empty()
    assert owner_of(User(5, True), session, create=False) == "user:5"
    visitor = await aowner_of(None, session)  # the first chat
    assert owner_of(None, session, create=False) == visitor
    assert await aowner_of(None, session, create=False) == visitor


def test_a_user_whose_primary_key_is_too_long_for_the_owner_column_is_hashed() -> None:
    """A custom user keyed by email address (up to 254 characters): ``user:<pk>`` would
    not fit the owner column, which PostgreSQL enforces (every chat of theirs a 503). The
    hashed owner fits, and is the same for the same user and another for another."""
    column = Conversation._meta.get_field("owner").max_length
    long_pk = "someone." * 30 + "@example.com"
    owner = owner_of(User(long_pk, True), Session())
    assert owner.startswith("user#") and len(owner) <= column
    assert owner == owner_of(User(long_pk, True), None)
    assert owner != owner_of(User(long_pk + "x", True), None)
    assert owner_of(User("a" * (column - 5), True), None) == "user:" + "a" * (column - 5)
