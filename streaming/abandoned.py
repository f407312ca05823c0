"""Anonymous visitors' conversations that nobody can open any more.

An anonymous visitor owns their conversations through a token in their session
(``streaming.owners``). Once that session expires nothing reaches them again, yet they
would stay in the database for good; a request without a session owns its conversations
only while it lasts. ``manage.py clearconversations`` deletes them, as ``clearsessions``
deletes the sessions.

A conversation goes when it has been idle (``updated``) for the given time, and, where the
session engine keeps its sessions in the database (``db``, ``cached_db`` or a subclass),
when no live session holds its owner's token: a visitor who still has their session keeps
every conversation. Other engines (signed cookies, the cache, files) cannot be listed, so
there the idle time alone decides.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import import_module

from django.apps import apps
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.db.models import Q, QuerySet
from django.utils import timezone

from .models import Conversation, Message
from .owners import CONNECTION_OWNER, OWNER_SESSION_KEY, SESSION_OWNER

#: Owners per query: within every database's limit of query parameters.
BATCH = 500
#: Conversations deleted per transaction, with their messages: an owner may keep
#: thousands (``MAX_CONVERSATIONS_PER_OWNER``), and a batch of owners millions, which one
#: transaction would hold locked (and the collector in memory) until it ended.
DELETE_BATCH = 1000
#: Sessions read per round trip while looking for live tokens.
SESSIONS_PER_FETCH = 2000


@dataclass(frozen=True)
class Cleared:
    """What a clearing deleted (or, in a dry run, would delete), and what it kept."""

    conversations: int
    messages: int
    #: Idle conversations kept because their visitor's session is still live.
    kept: int
    #: Whether live sessions were looked for (the engine keeps them in the database).
    sessions_listed: bool


def clear_abandoned(idle: timedelta, *, dry_run: bool = False) -> Cleared:
    """Delete the anonymous conversations idle for longer than ``idle`` whose visitor
    has no live session (see the module's docstring); ``dry_run`` only counts them."""
    now = timezone.now()
    idle_anonymous = Conversation.objects.filter(updated__lt=now - idle).filter(
        Q(owner__startswith=SESSION_OWNER) | Q(owner__startswith=CONNECTION_OWNER)
    )
    # Without the ordering (``-updated``), which DISTINCT would take in: a row per owner.
    owners = set(idle_anonymous.order_by().values_list("owner", flat=True).distinct())
    tokens = {o.removeprefix(SESSION_OWNER) for o in owners if o.startswith(SESSION_OWNER)}
    live = _live_tokens(tokens, now)
    alive = {f"{SESSION_OWNER}{token}" for token in live or ()}
    kept = sum(idle_anonymous.filter(owner__in=batch).count() for batch in _batches(sorted(alive)))
    conversations = messages = 0
    for batch in _batches(sorted(owners - alive)):
        doomed = idle_anonymous.filter(owner__in=batch)
        if dry_run:
            conversations += doomed.count()
            messages += Message.objects.filter(conversation__in=doomed).count()
            continue
        while ids := list(doomed.order_by().values_list("pk", flat=True)[:DELETE_BATCH]):
            _, deleted = Conversation.objects.filter(pk__in=ids).delete()  # a transaction
            conversations += deleted.get(Conversation._meta.label, 0)
            messages += deleted.get(Message._meta.label, 0)
    return Cleared(conversations, messages, kept, live is not None)


def _live_tokens(tokens: set[str], now: datetime) -> set[str] | None:
    """Which of ``tokens`` a live session holds; ``None`` when the session engine keeps
    its sessions where they cannot be listed."""
    if not apps.is_installed("django.contrib.sessions"):
        return None
    store_class = import_module(settings.SESSION_ENGINE).SessionStore
    if not issubclass(store_class, DatabaseSessionStore):
        return None
    decoder = store_class()
    sessions: QuerySet = store_class.get_model_class().objects.filter(expire_date__gt=now)
    live = set()
    for data in sessions.values_list("session_data", flat=True).iterator(SESSIONS_PER_FETCH):
        token = decoder.decode(data).get(OWNER_SESSION_KEY)
        if token in tokens:
            live.add(token)
    return live


def _batches(owners: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(owners), BATCH):
        yield owners[start : start + BATCH]
