"""``manage.py rebuild_occupancy_days [--building UUID ...]``: make the occupancy day rows
again from the hour rows.

The history writer and a building's save keep them current; this is for a change they did
not see (a zone or opening hours written straight into the database), or to check.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from dashboard.live import occupancy_days
from dashboard.models import Building


class Command(BaseCommand):
    help = "Make the occupancy report's day rows again from the hour rows, building by building."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--building", type=uuid.UUID, action="append", help="only this building (repeatable)"
        )

    def handle(self, *args: Any, building: list[uuid.UUID] | None, **options: Any) -> None:
        buildings = Building.objects.order_by("name")
        if building:
            buildings = buildings.filter(id__in=building)
            missing = set(building) - set(buildings.values_list("id", flat=True))
            if missing:
                raise CommandError(f"no building {', '.join(sorted(map(str, missing)))}")
        for one in buildings:
            started = time.monotonic()
            days = occupancy_days.rebuild(one.pk)
            took = time.monotonic() - started
            self.stdout.write(f"{one.name} ({one.id}): {days} day(s) rebuilt in {took:.1f} s")
