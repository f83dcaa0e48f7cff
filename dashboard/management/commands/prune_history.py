"""``manage.py prune_history``: remove history older than the retention setting."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from dashboard.live.store import prune_history


class Command(BaseCommand):
    help = "Delete meta and headcount history, payload logs and cleared alarms past retention."

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=settings.HISTORY_RETENTION_DAYS)

    def handle(self, *args: object, days: int, **options: object) -> None:
        removed = prune_history(days)
        total = sum(removed.values())
        details = ", ".join(f"{count} {name}" for name, count in removed.items() if count)
        self.stdout.write(
            f"removed {total} rows older than {days} days" + (f": {details}" if details else "")
        )
