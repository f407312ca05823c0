"""The stored conversations in Django's admin: listed newest first, searchable by title,
owner and message text, with their last messages inline. What the chat wrote (messages,
their status and generation, the owner) is read-only; a title can be corrected. Deleting a
conversation here stops its running reply, as the conversations API's ``DELETE`` does.

Built for tables of millions of messages: a conversation's message count is a subquery
per listed row (never a join of every message, which the search by text multiplied),
the search by text is an ``EXISTS`` (no ``DISTINCT`` over the joined messages), and a
conversation's page shows its last ``INLINE_MESSAGES`` messages, with a link to all of
them in the messages' list.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Count, Exists, IntegerField, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.text import capfirst, smart_split, unescape_string_literal

from .conversations import stop_replies
from .models import Conversation, Message

#: Messages a conversation's admin page shows inline: its last ones (a conversation of
#: thousands would otherwise be a page of megabytes).
INLINE_MESSAGES = 100


class LastMessages(BaseInlineFormSet):
    """The conversation's last ``INLINE_MESSAGES`` messages, oldest first."""

    def get_queryset(self) -> QuerySet[Message]:
        if not hasattr(self, "_last"):
            messages = super().get_queryset()
            first = messages.order_by("-id").values_list("id", flat=True)[
                INLINE_MESSAGES - 1 : INLINE_MESSAGES
            ]
            start = next(iter(first), None)
            self._last = messages if start is None else messages.filter(id__gte=start)
        return self._last


class MessageInline(admin.TabularInline):
    model = Message
    formset = LastMessages
    extra = 0
    can_delete = False
    fields = ("created", "role", "status", "content", "reasoning", "generation")
    readonly_fields = fields
    ordering = ("id",)
    verbose_name_plural = f"messages (the last {INLINE_MESSAGES})"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def message_total() -> Coalesce:
    """A conversation's number of messages, as a subquery of the row."""
    counted = (
        Message.objects.filter(conversation=OuterRef("pk"))
        .order_by()
        .values("conversation")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ("title", "owner", "message_count", "updated", "created")
    list_filter = ("updated",)
    #: As ``get_search_results`` searches them.
    search_fields = ("title", "owner", "messages__content")
    readonly_fields = ("id", "owner", "created", "updated", "generation", "all_messages")
    fields = ("id", "title", "renamed", "owner", "created", "updated", "generation", "all_messages")
    date_hierarchy = "updated"
    inlines = (MessageInline,)

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).annotate(message_total=message_total())

    def get_search_results(
        self, request: HttpRequest, queryset: Any, search_term: str
    ) -> tuple[Any, bool]:
        """Each word in the title, the owner or a message's text: the messages with an
        ``EXISTS``, so a conversation is listed once (no ``DISTINCT``), however many of
        its messages match."""
        terms = []
        for bit in smart_split(search_term):
            if bit.startswith(('"', "'")) and bit[0] == bit[-1]:
                bit = unescape_string_literal(bit)
            in_text = Message.objects.filter(conversation=OuterRef("pk"), content__icontains=bit)
            terms.append(Q(title__icontains=bit) | Q(owner__icontains=bit) | Exists(in_text))
        return queryset.filter(*terms), False

    @admin.display(description="messages", ordering="message_total")
    def message_count(self, obj: Any) -> int:
        return int(obj.message_total)

    @admin.display(description="all messages")
    def all_messages(self, obj: Conversation) -> str:
        total = getattr(obj, "message_total", None)
        return _messages_link(self, obj.pk, obj.messages.count() if total is None else total)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # conversations are started from the chat

    def get_deleted_objects(
        self, objs: Any, request: HttpRequest
    ) -> tuple[list[Any], dict[str, int], set[str], list[Any]]:
        """The delete confirmation names each conversation and counts its messages, rather
        than listing every message (a page of megabytes for a long one, and every message
        loaded); Django's own listing when another model relates to these (a project's
        own, whose rows it must show)."""
        if _others_relate():
            return super().get_deleted_objects(objs, request)
        conversations = list(objs)
        totals = _message_totals(conversations)
        perms_needed = set()
        if not all(self.has_delete_permission(request, c) for c in conversations):
            perms_needed.add(str(Conversation._meta.verbose_name))
        if any(totals.values()) and not _may_delete_messages(self, request):
            perms_needed.add(str(Message._meta.verbose_name))
        listed: list[Any] = []
        for conversation in conversations:
            listed.append(_linked(self, conversation))
            if totals[conversation.pk]:
                listed.append([_messages_link(self, conversation.pk, totals[conversation.pk])])
        counted = {str(Conversation._meta.verbose_name_plural): len(conversations)}
        if any(totals.values()):
            counted[str(Message._meta.verbose_name_plural)] = sum(totals.values())
        return listed, counted, perms_needed, []

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        """Delete it, then stop its running reply, as the conversations API does."""
        super().delete_model(request, obj)
        stop_replies([(obj.owner, obj.generation)])

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        """Delete them, then stop their running replies (the admin's bulk action)."""
        replies = list(queryset.exclude(generation="").values_list("owner", "generation"))
        super().delete_queryset(request, queryset)
        stop_replies(replies)


def _others_relate() -> bool:
    """Whether a model other than ``Message`` relates to a conversation or a message (a
    project's own, deleted or protected with them)."""
    return any(
        relation.related_model is not Message for relation in Conversation._meta.related_objects
    ) or bool(Message._meta.related_objects)


def _message_totals(conversations: list[Conversation]) -> dict[Any, int]:
    """Each conversation's number of messages: the admin's annotation, else one query."""
    totals = {c.pk: getattr(c, "message_total", None) for c in conversations}
    missing = [pk for pk, total in totals.items() if total is None]
    if missing:
        counted = dict(
            Message.objects.filter(conversation__in=missing)
            .order_by()
            .values_list("conversation")
            .annotate(n=Count("pk"))
        )
        totals.update({pk: counted.get(pk, 0) for pk in missing})
    return {pk: int(total or 0) for pk, total in totals.items()}


def _may_delete_messages(model_admin: admin.ModelAdmin[Any], request: HttpRequest) -> bool:
    """Whether the messages' admin (if registered) lets this user delete messages, as
    Django asks of every related row it lists."""
    site = model_admin.admin_site
    if not site.is_registered(Message):
        return True
    return bool(site.get_model_admin(Message).has_delete_permission(request))


def _linked(model_admin: admin.ModelAdmin[Any], conversation: Conversation) -> str:
    url = reverse(
        f"{model_admin.admin_site.name}:streaming_conversation_change", args=(conversation.pk,)
    )
    return format_html(
        '{}: <a href="{}">{}</a>', capfirst(Conversation._meta.verbose_name), url, conversation
    )


def _messages_link(model_admin: admin.ModelAdmin[Any], pk: Any, total: int) -> str:
    url = reverse(f"{model_admin.admin_site.name}:streaming_message_changelist")
    return format_html(
        '<a href="{}?conversation__id__exact={}">{} {}</a>',
        url,
        pk,
        total,
        Message._meta.verbose_name if total == 1 else Message._meta.verbose_name_plural,
    )


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
