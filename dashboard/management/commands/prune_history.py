"""``manage.py prune_history``: remove history older than the retention settings."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from dashboard.live.store import prune_history


class Command(BaseCommand):
    help = (
        "Delete meta and headcount history, payload logs and cleared alarms past retention, "
        "the per-minute and per-hour rollups past their own windows, and the occupancy day rows "
        "with the hour rows."
    )

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=settings.HISTORY_RETENTION_DAYS)
        parser.add_argument("--minute-days", type=int, default=settings.ROLLUP_MINUTE_DAYS)
        parser.add_argument("--hour-days", type=int, default=settings.ROLLUP_HOUR_DAYS)

    def handle(
        self, *args: object, days: int, minute_days: int, hour_days: int, **options: object
    ) -> None:
        removed = prune_history(days, minute_days=minute_days, hour_days=hour_days)
        total = sum(removed.values())
        details = ", ".join(f"{count} {name}" for name, count in removed.items() if count)
        self.stdout.write(
            f"removed {total} rows past retention ({days} days raw, {minute_days} per-minute, "
            f"{hour_days} per-hour)" + (f": {details}" if details else "")
        )
