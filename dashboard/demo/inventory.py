"""Deterministic demo buildings in the ``import_inventory`` file format.

``python -m dashboard.demo.inventory`` rewrites the committed ``inventory.json``.
"""

from __future__ import annotations

import json
import math
import random
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dashboard.live.buildings import BuildingInventory, Entity

DEMO_SEED = 7
DEMO_DEVICES = 40
DEMO_NAME = "Harbour House"
INVENTORY_FILE = Path(__file__).with_name("inventory.json")

DEVICES_PER_FLOOR = 40
DEVICES_PER_SENSOR = 5  # a floor gets one sensor per space while it has this many devices each
SENSOR_WORDS = ("sensor",)  # a device whose name says this is a sensor, anything else a lamp

_NAMESPACE = uuid.UUID("9f1c2b7e-4a4d-5d6e-8f11-2c3b4a5d6e7f")
_BUILDING_NAMES = (
    "Harbour House",
    "Quayside Point",
    "Foundry Works",
    "Meridian Court",
    "Cedar Exchange",
    "Northgate Plaza",
    "Riverside Studios",
    "Atlas Building",
)


@dataclass(frozen=True)
class SpaceTemplate:
    name: str
    capacity: int
    lamp_weight: int  # share of the floor's lamps
    lamp: str  # what its lamps are called
    lamp_type: str  # their product type: a lamp's says so (confirmation.LAMP_TYPES)


@dataclass(frozen=True)
class AreaTemplate:
    name: str
    space: str
    capacity: int


# One floor of a small office building; bigger buildings repeat it per floor.
FLOOR: tuple[SpaceTemplate, ...] = (
    SpaceTemplate("Open Office", 80, 12, "luminaire", "LED luminaire"),
    SpaceTemplate("Boardroom", 16, 3, "downlight", "LED downlight"),
    SpaceTemplate("Meeting Room Fastnet", 8, 2, "downlight", "LED downlight"),
    SpaceTemplate("Meeting Room Lundy", 6, 2, "downlight", "LED downlight"),
    SpaceTemplate("Reception", 10, 3, "pendant", "LED pendant light"),
    SpaceTemplate("Cafe", 36, 5, "pendant", "LED pendant light"),
)
SENSOR_TYPE = "Occupancy sensor"
FLOOR_AREAS: tuple[AreaTemplate, ...] = (
    AreaTemplate("Hot Desks", "Open Office", 30),
    AreaTemplate("Quiet Zone", "Open Office", 12),
    AreaTemplate("Window Bar", "Cafe", 10),
)


def is_sensor(device_name: str) -> bool:
    """Whether the simulator plays this device as a sensor (else as a lamp)."""
    lowered = device_name.lower()
    return any(word in lowered for word in SENSOR_WORDS)


def _shares(total: int, weights: list[int]) -> list[int]:
    """``total`` split by ``weights``, largest remainders first: exact and deterministic."""
    if total <= 0:
        return [0] * len(weights)
    scale = sum(weights)
    exact = [total * w / scale for w in weights]
    shares = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: (shares[i] - exact[i], i))
    for i in by_remainder[: total - sum(shares)]:
        shares[i] += 1
    return shares


def building_inventory(
    devices: int, *, seed: int, name: str | None = None, timezone: str = "Europe/London"
) -> dict:
    """One building with ``devices`` devices, as ``import_inventory`` reads it.

    The same arguments always give the same file: ids are uuid5 of the seed.
    """
    if devices < 0:
        raise ValueError("devices must be >= 0")
    namespace = uuid.uuid5(_NAMESPACE, f"seed/{seed}")

    def gid(path: str) -> str:
        return str(uuid.uuid5(namespace, path))

    if name is None:
        name = random.Random(seed).choice(_BUILDING_NAMES)
    floors = max(1, math.ceil(devices / DEVICES_PER_FLOOR))
    spaces: list[dict[str, Any]] = []
    areas: list[dict[str, Any]] = []
    device_rows: list[tuple[str, str, str]] = []  # (space id, device name, product type)
    for floor, floor_devices in enumerate(_shares(devices, [1] * floors), start=1):
        prefix = f"Level {floor} " if floors > 1 else ""
        space_ids = {}
        for template in FLOOR:
            space_id = gid(f"floor/{floor}/space/{template.name}")
            space_ids[template.name] = space_id
            spaces.append(
                {"id": space_id, "name": prefix + template.name, "capacity": template.capacity}
            )
        for area in FLOOR_AREAS:
            areas.append(
                {
                    "id": gid(f"floor/{floor}/area/{area.name}"),
                    "name": prefix + area.name,
                    "space": space_ids[area.space],
                    "capacity": area.capacity,
                }
            )
        sensors = min(len(FLOOR), floor_devices // DEVICES_PER_SENSOR)
        lamps = _shares(floor_devices - sensors, [t.lamp_weight for t in FLOOR])
        for index, (template, count) in enumerate(zip(FLOOR, lamps, strict=True)):
            space_name = prefix + template.name
            for n in range(1, count + 1):
                lamp = f"{space_name} {template.lamp} {n}"
                device_rows.append((space_ids[template.name], lamp, template.lamp_type))
            if index < sensors:
                device_rows.append((space_ids[template.name], f"{space_name} sensor", SENSOR_TYPE))
    return {
        "buildings": [
            {
                "id": gid("building"),
                "name": name,
                "timezone": timezone,
                "spaces": spaces,
                "areas": areas,
                # Ids by name: a different device count keeps every device both counts have. A
                # lamp's product type lets an action count it before its first report.
                "devices": [
                    {
                        "id": gid(f"device/{device_name}"),
                        "name": device_name,
                        "space": space_id,
                        "type": product_type,
                    }
                    for space_id, device_name, product_type in device_rows
                ],
            }
        ]
    }


def demo_inventory() -> dict:
    """The demo building committed as ``inventory.json``."""
    return building_inventory(DEMO_DEVICES, seed=DEMO_SEED, name=DEMO_NAME)


def render(data: dict) -> str:
    """An inventory as the committed file writes it."""
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def building_inventories(data: dict) -> list[BuildingInventory]:
    """An inventory file's buildings as the bridge sees them, without a database."""

    def ref(row: dict[str, Any]) -> uuid.UUID | None:
        return uuid.UUID(row["space"]) if row.get("space") else None

    result = []
    for b in data["buildings"]:
        result.append(
            BuildingInventory(
                id=uuid.UUID(b["id"]),
                name=b["name"],
                version=1,
                spaces={
                    uuid.UUID(s["id"]): Entity(
                        uuid.UUID(s["id"]), s["name"], None, s.get("capacity")
                    )
                    for s in b.get("spaces") or ()
                },
                areas={
                    uuid.UUID(a["id"]): Entity(
                        uuid.UUID(a["id"]), a["name"], ref(a), a.get("capacity")
                    )
                    for a in b.get("areas") or ()
                },
                devices={
                    uuid.UUID(d["id"]): Entity(uuid.UUID(d["id"]), d["name"], ref(d))
                    for d in b.get("devices") or ()
                },
            )
        )
    return result


if __name__ == "__main__":
    INVENTORY_FILE.write_text(render(demo_inventory()), encoding="utf-8")
    print(f"wrote {INVENTORY_FILE}")
