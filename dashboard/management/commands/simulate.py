"""``manage.py simulate``: a simulated building (and the cloud emulator) publishing to MQTT_URL.

The benchmark's load generator: ``--devices N --rate R`` makes a building of N devices that
publish R device meta messages per second between them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import uuid
from argparse import BooleanOptionalAction
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from dashboard.demo.emulator import INGRESS_PREFIX, CloudEmulator
from dashboard.demo.inventory import building_inventory
from dashboard.demo.service import client_cert
from dashboard.demo.simulator import BuildingSimulator
from dashboard.live.building_store import load_building
from dashboard.live.buildings import BuildingInventory
from dashboard.live.inventory import apply_inventory
from dashboard.live.inventory_file import InventoryError, parse_inventory

DEFAULT_DEVICES = 40
# The emulator publishes topics no client may publish on the real cloud, which would drop
# the connection; its ingress topics are not in the catalogue at all.
CLOUD_HOST_SUFFIX = "gooee.io"


def _positive(cast: type) -> Any:
    def parse(text: str) -> Any:
        value = cast(text)
        if value <= 0:
            raise ValueError(text)
        return value

    parse.__name__ = f"positive {cast.__name__}"
    return parse


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise ValueError(text)
    return value


_fraction.__name__ = "fraction between 0 and 1"


class Command(BaseCommand):
    help = (
        "Simulate a building's devices and people on MQTT_URL, with the Gooee cloud emulator, "
        "until Ctrl-C or --duration. Without --building, a building of --devices devices is "
        "generated from --seed and imported (again: the same building)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--devices",
            type=_positive(int),
            help=f"devices to generate (default {DEFAULT_DEVICES})",
        )
        parser.add_argument(
            "--rate",
            type=_positive(float),
            default=10.0,
            help="device meta messages per second, all devices together (default 10)",
        )
        parser.add_argument(
            "--seed", type=int, default=1, help="makes the building and its behaviour (default 1)"
        )
        parser.add_argument(
            "--building", metavar="ID", help="simulate this existing building instead"
        )
        parser.add_argument(
            "--invalid-fraction",
            type=_fraction,
            default=0.0,
            help="share of publishes made invalid on purpose, for the emulator to reject (default 0)",
        )
        parser.add_argument(
            "--duration", type=_positive(float), metavar="SECONDS", help="stop after this long"
        )
        parser.add_argument(
            "--day-minutes",
            type=_positive(float),
            default=20.0,
            help="real minutes a simulated working day takes (default 20)",
        )
        parser.add_argument(
            "--emulator",
            action=BooleanOptionalAction,
            default=True,
            help="also run the cloud emulator (default); --no-emulator when another one runs",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        broker = settings.MQTT_BROKER
        if broker is None:
            raise CommandError("simulate needs MQTT_URL: the broker to publish to")
        if broker.host.lower().endswith(CLOUD_HOST_SUFFIX):
            raise CommandError(
                f"simulate publishes to {INGRESS_PREFIX}… and other topics the Gooee cloud "
                "refuses; point MQTT_URL at a local broker"
            )
        inventory = self.inventory(options)
        asyncio.run(self.run(broker, inventory, options))

    def inventory(self, options: dict[str, Any]) -> BuildingInventory:
        """The building to simulate: the given one, or the generated one, imported first."""
        if options["building"]:
            if options["devices"] is not None:
                raise CommandError("--devices makes a new building; it does not go with --building")
            try:
                building_id = uuid.UUID(options["building"])
            except ValueError:
                raise CommandError(f"--building: not a UUID: {options['building']!r}") from None
        else:
            devices = options["devices"] or DEFAULT_DEVICES
            data = building_inventory(devices, seed=options["seed"])
            try:
                # Pruned: the generated building is the simulator's own, and a smaller
                # --devices must not leave devices behind that nothing simulates.
                report = apply_inventory(parse_inventory(json.dumps(data)), prune=True)
            except InventoryError as exc:
                raise CommandError(f"cannot import the generated building: {exc}") from None
            if report.changed:
                self.stdout.write(f"imported the simulated building: {'; '.join(report.lines())}")
            building_id = uuid.UUID(data["buildings"][0]["id"])
        inventory = load_building(building_id)
        if inventory is None:
            raise CommandError(f"no building {building_id}; import_inventory it first")
        return inventory

    async def run(self, broker: Any, inventory: BuildingInventory, options: dict[str, Any]) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        emulator = None
        if options["emulator"]:
            emulator = CloudEmulator(
                broker, [inventory], ca_file=settings.MQTT_CA_FILE, client_cert=client_cert()
            )
        simulator = BuildingSimulator(
            broker,
            [inventory],
            seed=options["seed"],
            rate=options["rate"],
            invalid_fraction=options["invalid_fraction"],
            day_minutes=options["day_minutes"],
            ca_file=settings.MQTT_CA_FILE,
            client_cert=client_cert(),
        )
        try:
            try:
                if emulator is not None:
                    await emulator.start()
                await simulator.start()
            except ConnectionError as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(
                f"simulating {inventory.name} ({inventory.id}): {len(inventory.devices)} devices, "
                f"{options['rate']:g} meta/s, {'with' if emulator else 'without'} the cloud "
                f"emulator, on {broker}; Ctrl-C to stop"
            )
            self.stdout.flush()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), options["duration"])
        finally:
            await simulator.stop()
            if emulator is not None:
                await emulator.stop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        stats = simulator.stats
        line = (
            f"published {simulator.published} messages: {stats['meta']} meta, "
            f"{stats['invalid']} invalid, {stats['headcount']} headcounts, "
            f"{stats['fault_alarm']} fault alarms, {stats['action_meta']} after actions"
        )
        if emulator is not None:
            e = emulator.stats
            line += (
                f"; emulator published {emulator.published}: accepted {e['accepted']}, "
                f"rejected {e['rejected']}, dropped {e['dropped']}, fanned out {e['actions']} actions"
            )
        self.stdout.write(line)
