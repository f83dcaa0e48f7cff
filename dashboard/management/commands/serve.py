"""``manage.py serve``: the dashboard on daphne, with the MQTT bridge in the same process."""

from __future__ import annotations

import os
import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from dashboard import serving
from dashboard.bridge.runner import BridgeService


class Command(BaseCommand):
    help = "Serve the dashboard (HTTP and WebSockets) with the MQTT bridge, until Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--no-bridge", action="store_true", help="web side only")
        parser.add_argument("--buildings", nargs="+", metavar="ID", help="bridge only these")

    def handle(self, *args: object, **options: Any) -> None:
        try:
            ids = [uuid.UUID(b) for b in options["buildings"]] if options["buildings"] else None
        except ValueError as exc:
            raise CommandError(f"--buildings: not a UUID ({exc})") from None
        services = [] if options["no_bridge"] else [BridgeService(ids)]
        serving.run(self.stdout, options["host"], options["port"], services)
