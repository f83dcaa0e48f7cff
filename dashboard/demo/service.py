"""The demo's cloud emulator and building simulator as a service beside the bridge."""

from __future__ import annotations

import uuid

from asgiref.sync import sync_to_async
from django.conf import settings

from dashboard.bridge.runner import BridgeService
from dashboard.demo.emulator import CloudEmulator
from dashboard.demo.simulator import BuildingSimulator
from dashboard.live.building_store import load_building


def client_cert() -> tuple[str, str] | None:
    """The client certificate and key the demo's MQTT clients show (MQTT_CLIENT_CERT/KEY)."""
    if settings.MQTT_CLIENT_CERT and settings.MQTT_CLIENT_KEY:
        return settings.MQTT_CLIENT_CERT, settings.MQTT_CLIENT_KEY
    return None


DEMO_RATE = 8.0  # device meta messages per second: every device changes within seconds


class DemoService:
    """Emulates the Gooee cloud and plays one building on the bridge's broker."""

    def __init__(self, bridge: BridgeService, building_id: uuid.UUID, *, seed: int = 7) -> None:
        self._bridge = bridge
        self._building_id = building_id
        self._seed = seed
        self.emulator: CloudEmulator | None = None
        self.simulator: BuildingSimulator | None = None

    async def start(self) -> None:
        broker = self._bridge.broker
        if broker is None:
            raise RuntimeError("the demo starts after the bridge")
        inventory = await sync_to_async(load_building, thread_sensitive=False)(self._building_id)
        if inventory is None:
            raise RuntimeError(f"demo building {self._building_id} is not in the database")
        self.emulator = CloudEmulator(
            broker, [inventory], ca_file=settings.MQTT_CA_FILE, client_cert=client_cert()
        )
        await self.emulator.start()
        self.simulator = BuildingSimulator(
            broker,
            [inventory],
            seed=self._seed,
            rate=DEMO_RATE,
            ca_file=settings.MQTT_CA_FILE,
            client_cert=client_cert(),
        )
        await self.simulator.start()

    async def stop(self) -> None:
        # Devices go quiet first, so the emulator has nothing half-handled when it leaves.
        if self.simulator is not None:
            await self.simulator.stop()
        if self.emulator is not None:
            await self.emulator.stop()
