"""The chat's stored conversations: ``Conversation`` and its ``Message``s.

A conversation belongs to an owner string, the same one that owns its replies
(``streaming.owners.owner_of``: ``user:<pk>`` for a logged-in user, else
``session:<token>`` for the browser session's visitor), so nobody else can list, read,
continue or delete it. Its id is a random UUID.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from .owners import OWNER_MAX_LENGTH

#: Longest conversation title (characters); a title made from a prompt is cut to fit.
TITLE_MAX_LENGTH = 200


class Conversation(models.Model):
    """A chat between one owner and the model."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.CharField(max_length=OWNER_MAX_LENGTH)
    title = models.CharField(max_length=TITLE_MAX_LENGTH, blank=True)
    #: True once the owner renamed it: the first prompt no longer sets the title.
    renamed = models.BooleanField(default=False)
    created = models.DateTimeField(default=timezone.now, editable=False)
    #: When a message was last added (or the title changed): the list is newest first.
    updated = models.DateTimeField(default=timezone.now)
    #: The generation id of the last reply started here; the reply is running while the
    #: event store says so (a process that died leaves it finished or expired there).
    generation = models.CharField(max_length=64, blank=True, editable=False)
    #: How many characters of that reply its client had shown when it stopped it: the
    #: stopped reply is stored cut there, as its user saw it (``None``: not stopped so).
    shown_when_stopped = models.PositiveIntegerField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ("-updated",)
        indexes = (models.Index(fields=["owner", "-updated"], name="streaming_conv_owner_upd"),)

    def __str__(self) -> str:
        return self.title or f"Conversation {self.pk}"


class Message(models.Model):
    """One turn: the user's prompt, or the model's reply with how it ended."""

    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"

    class Status(models.TextChoices):
        COMPLETE = "complete"
        STOPPED = "stopped"
        FAILED = "failed"

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    #: The text shown: the prompt, or the reply's streamable text (so far, when it stopped
    #: or failed).
    content = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE)
    #: The reply's generation id (``None`` for a user message).
    generation = models.CharField(max_length=64, null=True, blank=True)
    #: The thought the pipeline separated from the reply (may be empty).
    reasoning = models.TextField(blank=True)
    created = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ("id",)  # the order they were stored in
        indexes = (models.Index(fields=["conversation", "id"], name="streaming_msg_conv_id"),)

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:60]}"
