"""``manage.py demo``: the dashboard with a broker, a Gooee cloud emulator and a simulated
building, in one process; ``make demo`` runs it.
"""

from __future__ import annotations

import json
import os
import secrets
import uuid
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from dashboard import serving
from dashboard.bridge.runner import BridgeService
from dashboard.demo.cloud_api import CloudApiEmulator
from dashboard.demo.inventory import DEMO_SEED, INVENTORY_FILE
from dashboard.demo.service import DemoService
from dashboard.models import Role

DEMO_USER = "demo"


class Command(BaseCommand):
    help = "Run the dashboard on a simulated building (embedded broker unless MQTT_URL is set)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))

    def handle(self, *args: object, **options: Any) -> None:
        building = json.loads(INVENTORY_FILE.read_text(encoding="utf-8"))["buildings"][0]
        building_id = uuid.UUID(building["id"])
        # Onboarded the way a customer's building is: sync_inventory against the Gooee Cloud
        # API, here the emulator's, which keeps answering so the bridge's re-syncs reach it.
        api = CloudApiEmulator([building], secrets.token_urlsafe(24))
        api.start()
        try:
            settings.GOOEE_API_URL, settings.GOOEE_API_TOKEN = api.url, api.token
            settings.GOOEE_API_AUTH_SCHEME = "Bearer"
            try:
                call_command("sync_inventory", building=[str(building_id)], stdout=self.stdout)
            except CommandError as exc:
                raise CommandError(f"the demo building does not sync: {exc}") from None
            password = settings.DEMO_PASSWORD or secrets.token_urlsafe(9)
            self.make_demo_user(building_id, password)

            bridge = BridgeService()
            where = (
                "the embedded broker" if settings.MQTT_BROKER is None else str(settings.MQTT_BROKER)
            )
            serving.run(
                self.stdout,
                options["host"],
                options["port"],
                [bridge, DemoService(bridge, building_id, seed=DEMO_SEED)],
                notes=[
                    f"Log in as {DEMO_USER} with password {password}",
                    f"Simulating {building['name']} on {where}",
                    f"Gooee Cloud API emulator on {api.url}",
                ],
            )
        finally:
            api.stop()

    @transaction.atomic
    def make_demo_user(self, building_id: uuid.UUID, password: str) -> None:
        """The user ``demo`` with every role on the demo building, and this run's password."""
        user, _ = User.objects.get_or_create(username=DEMO_USER)
        user.set_password(password)
        user.is_active = True
        user.save()
        for role in (Role.VIEWER, Role.OPERATOR, Role.SUPPORT):
            Role.objects.get_or_create(user=user, building_id=building_id, role=role)
