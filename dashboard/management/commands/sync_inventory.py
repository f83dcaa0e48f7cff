"""Onboard and keep in step buildings from a Gooee account, through the Gooee Cloud API."""

from __future__ import annotations

import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from dashboard.live import cloud_sync
from dashboard.live.cloud_sync import SyncError


class Command(BaseCommand):
    help = (
        "Read buildings, spaces, areas and devices (with their current values and time zone) "
        "from the Gooee Cloud API and write them, one transaction per building."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--building", action="append", default=[], metavar="UUID", help="sync this building"
        )
        parser.add_argument("--all", action="store_true", help="every building the token can see")
        parser.add_argument(
            "--prune", action="store_true", help="remove what the cloud no longer has"
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="say what would change, write nothing"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            wanted = [uuid.UUID(b) for b in options["building"]]
        except ValueError:
            raise CommandError("--building: not a building id (a UUID)") from None
        try:
            with cloud_sync.client_from_settings() as client:
                if options["all"]:
                    wanted += cloud_sync.cloud_building_ids(client)
                    if not wanted:
                        raise CommandError("the Gooee Cloud API shows this token no buildings")
                elif not wanted:
                    wanted = cloud_sync.buildings_here()
                    if not wanted:
                        raise CommandError(
                            "no buildings here yet: name them with --building UUID, or use --all"
                        )
                for building_id in dict.fromkeys(wanted):
                    result = cloud_sync.sync_building(
                        client, building_id, prune=options["prune"], dry_run=options["dry_run"]
                    )
                    for line in result.lines():
                        self.stdout.write(line)
        except SyncError as exc:
            raise CommandError(str(exc)) from None
