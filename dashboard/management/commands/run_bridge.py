"""``manage.py run_bridge``: only the MQTT bridge, for running apart from the web processes."""

from __future__ import annotations

import asyncio
import signal
import uuid

from django.core.management.base import BaseCommand, CommandError

from dashboard.bridge.runner import BridgeService
from dashboard.live import gc_tuning


class Command(BaseCommand):
    help = "Run the MQTT bridge (no web server) until SIGINT or SIGTERM."

    def add_arguments(self, parser):
        parser.add_argument("--buildings", nargs="+", metavar="ID", help="only these buildings")

    def handle(self, *args: object, buildings: list[str] | None = None, **options: object) -> None:
        try:
            ids = [uuid.UUID(b) for b in buildings] if buildings else None
        except ValueError as exc:
            raise CommandError(f"--buildings: not a UUID ({exc})") from None
        asyncio.run(self._run(ids))

    async def _run(self, building_ids: list[uuid.UUID] | None) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        service = BridgeService(building_ids)
        await service.start()
        gc_tuning.tune(ingest_only=True)
        self.stdout.write("bridge running; Ctrl-C to stop", ending="\n")
        self.stdout.flush()
        await stop.wait()
        self.stdout.write("stopping: disconnecting sessions and flushing history…")
        await service.stop()
