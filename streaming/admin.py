"""The stored conversations in Django's admin: listed newest first, searchable by title,
owner and message text, with their messages inline. What the chat wrote (messages, their
status and generation, the owner) is read-only; a title can be corrected. Deleting a
conversation here stops its running reply, as the conversations API's ``DELETE`` does."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from .conversations import stop_replies
from .models import Conversation, Message


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    can_delete = False
    fields = ("created", "role", "status", "content", "reasoning", "generation")
    readonly_fields = fields
    ordering = ("id",)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ("title", "owner", "message_count", "updated", "created")
    list_filter = ("updated",)
    search_fields = ("title", "owner", "messages__content")
    readonly_fields = ("id", "owner", "created", "updated", "generation")
    fields = ("id", "title", "renamed", "owner", "created", "updated", "generation")
    date_hierarchy = "updated"
    inlines = (MessageInline,)

    def get_queryset(self, request: HttpRequest) -> Any:
        from django.db.models import Count

        return super().get_queryset(request).annotate(message_total=Count("messages"))

    @admin.display(description="messages", ordering="message_total")
    def message_count(self, obj: Any) -> int:
        return int(obj.message_total)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # conversations are started from the chat

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        """Delete it, then stop its running reply, as the conversations API does."""
        super().delete_model(request, obj)
        stop_replies([(obj.owner, obj.generation)])

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        """Delete them, then stop their running replies (the admin's bulk action)."""
        replies = list(queryset.exclude(generation="").values_list("owner", "generation"))
        super().delete_queryset(request, queryset)
        stop_replies(replies)


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("conversation", "role", "status", "short_content", "created")
    list_filter = ("role", "status")
    search_fields = ("content", "conversation__title", "generation")
    list_select_related = ("conversation",)
    readonly_fields = (
        "conversation", "role", "content", "status", "reasoning", "generation", "created",
    )  # fmt: skip

    @admin.display(description="content")
    def short_content(self, obj: Message) -> str:
        return obj.content if len(obj.content) <= 80 else obj.content[:79] + "…"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
