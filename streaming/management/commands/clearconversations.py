"""``manage.py clearconversations``: delete anonymous visitors' conversations that
nobody can open any more (``streaming.abandoned``). Run it daily, beside
``clearsessions``."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from ...abandoned import clear_abandoned

SECONDS_PER_DAY = 86400


class Command(BaseCommand):
    help = (
        "Delete the conversations of anonymous visitors idle for longer than --days "
        "(default: SESSION_COOKIE_AGE) whose sessions have ended. With sessions in the "
        "database a visitor whose session is live keeps them; with other session engines "
        "the idle time alone decides."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--days",
            type=float,
            default=None,
            help="Idle time in days (fractions allowed); default SESSION_COOKIE_AGE.",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would go; delete nothing."
        )

    def handle(self, *args: Any, days: float | None, dry_run: bool, **options: Any) -> None:
        if days is None:
            days = settings.SESSION_COOKIE_AGE / SECONDS_PER_DAY
        elif not (math.isfinite(days) and days > 0):
            raise CommandError(f"--days must be a positive number of days, not {days:g}.")
        try:
            idle = timedelta(days=days)
            timezone.now() - idle
        except OverflowError:
            raise CommandError(f"--days {days:g} reaches before the calendar starts.") from None
        cleared = clear_abandoned(idle, dry_run=dry_run)
        verb = "Would delete" if dry_run else "Deleted"
        self.stdout.write(
            f"{verb} {_count(cleared.conversations, 'conversation')} "
            f"({_count(cleared.messages, 'message')}) "
            f"of anonymous visitors idle for over {days:g} days."
        )
        if not cleared.sessions_listed:
            self.stdout.write(
                f"Sessions ({settings.SESSION_ENGINE}) cannot be listed: the idle time "
                "alone decided."
            )
        elif cleared.kept:
            self.stdout.write(
                f"Kept {_count(cleared.kept, 'idle conversation')} of visitors with a live session."
            )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
