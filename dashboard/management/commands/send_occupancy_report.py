"""``manage.py send_occupancy_report [--building UUID] [--period week|day]``: the digest.

For cron or a systemd timer (docs/deploy.md): each building's occupancy over the last
complete week or day of its own clock, a short summary and the CSV by place and day, e-mailed
to its report recipients (admin). A building without recipients is skipped with one line.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from django.core.mail import EmailMessage
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from dashboard.models import Building
from dashboard.occupancy import digest, file_name
from dashboard.reports import last_days

DAYS = {"week": 7, "day": 1}


def recipients(building: Building) -> list[str]:
    return [line.strip() for line in building.report_recipients.splitlines() if line.strip()]


class Command(BaseCommand):
    help = "E-mail each building's occupancy digest (summary and CSV) to its report recipients."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--building", type=uuid.UUID, help="only this building (its id)")
        parser.add_argument(
            "--period",
            choices=sorted(DAYS),
            default="week",
            help="the last 7 complete days (default) or yesterday, on each building's clock",
        )

    def handle(self, *args: Any, building: uuid.UUID | None, period: str, **options: Any) -> None:
        buildings = Building.objects.order_by("name")
        if building is not None:
            buildings = buildings.filter(id=building)
            if not buildings.exists():
                raise CommandError(f"no building {building}")
        failed: list[str] = []
        for one in buildings:
            to = recipients(one)
            if not to:
                self.stdout.write(f"{one.name} ({one.id}): no report recipients, skipped")
                continue
            yesterday = timezone.localdate(timezone=one.zone) - timedelta(days=1)
            days = last_days(yesterday, DAYS[period], one.zone)
            subject, text, csv = digest(one, days)
            message = EmailMessage(subject, text, to=to)
            message.attach(f"{file_name(one, days)}.csv", csv, "text/csv")
            try:
                message.send()
            except OSError as exc:  # smtplib's errors among them: the next building still goes
                failed.append(str(one.id))
                self.stderr.write(f"{one.name} ({one.id}): not sent: {exc}")
                continue
            self.stdout.write(f"{one.name} ({one.id}): sent to {len(to)} recipient(s)")
        if failed:
            raise CommandError(f"not sent for {len(failed)} building(s): {', '.join(failed)}")
