"""``manage.py demo``: the dashboard with a broker, a Gooee cloud emulator and a simulated
building, in one process; ``make demo`` runs it.
"""

from __future__ import annotations

import os
import secrets
import uuid
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from dashboard import serving
from dashboard.bridge.runner import BridgeService
from dashboard.demo.inventory import DEMO_SEED, INVENTORY_FILE
from dashboard.demo.service import DemoService
from dashboard.live.inventory import apply_inventory
from dashboard.live.inventory_file import InventoryError, parse_inventory
from dashboard.models import Role

DEMO_USER = "demo"


class Command(BaseCommand):
    help = "Run the dashboard on a simulated building (embedded broker unless MQTT_URL is set)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))

    def handle(self, *args: object, **options: Any) -> None:
        try:
            inventory = parse_inventory(INVENTORY_FILE.read_text(encoding="utf-8"))
            apply_inventory(inventory)
        except InventoryError as exc:
            raise CommandError(f"the demo inventory does not load: {exc}") from None
        building_id = inventory.buildings[0].id
        password = settings.DEMO_PASSWORD or secrets.token_urlsafe(9)
        self.make_demo_user(building_id, password)

        bridge = BridgeService()
        where = "the embedded broker" if settings.MQTT_BROKER is None else str(settings.MQTT_BROKER)
        serving.run(
            self.stdout,
            options["host"],
            options["port"],
            [bridge, DemoService(bridge, building_id, seed=DEMO_SEED)],
            notes=[
                f"Log in as {DEMO_USER} with password {password}",
                f"Simulating {inventory.buildings[0].name} on {where}",
            ],
        )

    @transaction.atomic
    def make_demo_user(self, building_id: uuid.UUID, password: str) -> None:
        """The user ``demo`` with every role on the demo building, and this run's password."""
        user, _ = User.objects.get_or_create(username=DEMO_USER)
        user.set_password(password)
        user.is_active = True
        user.save()
        for role in (Role.VIEWER, Role.OPERATOR, Role.SUPPORT):
            Role.objects.get_or_create(user=user, building_id=building_id, role=role)
