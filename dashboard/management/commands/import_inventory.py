"""``manage.py import_inventory PATH [--prune]``: load buildings and their inventory from JSON."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from dashboard.live.inventory import apply_inventory
from dashboard.live.inventory_file import InventoryError, parse_inventory


class Command(BaseCommand):
    help = (
        "Create or update buildings, spaces, areas and devices from an inventory JSON file. "
        "The file is checked whole first; on any error nothing is written."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", metavar="PATH", help="inventory JSON file, or - for stdin")
        parser.add_argument(
            "--prune",
            action="store_true",
            help="also delete spaces, areas and devices of the file's buildings that the file "
            "no longer lists, with their history and alarms; other buildings are left alone",
        )

    def handle(self, *args: Any, path: str, prune: bool, **options: Any) -> None:
        text = self.read(path)
        try:
            report = apply_inventory(parse_inventory(text), prune=prune)
        except InventoryError as exc:
            for message in exc.messages:
                self.stderr.write(message)
            count = len(exc.messages)
            raise CommandError(
                f"inventory not imported ({count} error{'s' if count != 1 else ''}); "
                "nothing was changed"
            ) from None
        for line in report.lines():
            self.stdout.write(line)

    def read(self, path: str) -> str:
        """The file's text; a BOM is tolerated since some editors on Windows add one."""
        try:
            raw = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from None
        try:
            return raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            name = "stdin" if path == "-" else path
            raise CommandError(f"{name}: not UTF-8 text (byte offset {exc.start})") from None
