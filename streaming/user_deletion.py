"""A deleted user's conversations go with them, and their running replies stop.

``Conversation.owner`` is a string (``user:<pk>``, or an anonymous visitor's token), not a
foreign key, so nothing would delete them: they would stay in the database, and a user
given the same primary key later (a custom or natural key, a reset sequence) would find
them in their list.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db.models.signals import post_delete

from .owners import user_owner


def delete_their_conversations(sender: Any, instance: Any, **kwargs: Any) -> None:
    """``post_delete`` of the user model: delete the conversations the user owned, and
    stop their running replies (nobody may follow them any more, and they cost)."""
    from .conversations import stop_replies
    from .models import Conversation

    theirs = Conversation.objects.filter(owner=user_owner(instance.pk))
    replies = list(theirs.exclude(generation="").values_list("owner", "generation"))
    theirs.delete()
    stop_replies(replies)


def connect() -> None:
    """Listen for deleted users (when ``django.contrib.auth`` is installed)."""
    post_delete.connect(
        delete_their_conversations,
        sender=get_user_model(),
        dispatch_uid="streaming.user_deletion",
    )
