"""The building inventory as the bridge and pages read it from the database.

``load_versions`` is the cheap poll the bridge makes; ``load_building`` turns a building's rows
into the plain ``BuildingInventory`` (tuples, not model instances: large buildings have
thousands of devices).
"""

from __future__ import annotations

import uuid
from collections import defaultdict

from dashboard import models
from dashboard.live.buildings import BuildingInventory, Entity


def load_versions(building_ids: list[uuid.UUID] | None = None) -> dict[uuid.UUID, int]:
    """Inventory version per building: one cheap query the bridge polls."""
    buildings = models.Building.objects.all()
    if building_ids:
        buildings = buildings.filter(id__in=building_ids)
    return dict(buildings.values_list("id", "inventory_version"))


def load_building(building_id: uuid.UUID) -> BuildingInventory | None:
    """The building's inventory, or None when it no longer exists."""
    building = models.Building.objects.filter(id=building_id).first()
    if building is None:
        return None
    memberships: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    through = models.Device.spaces.through
    for device_id, space_id in (
        through.objects.filter(device__building=building)
        .order_by("device_id", "space__name", "space_id")
        .values_list("device_id", "space_id")
    ):
        memberships[device_id].append(space_id)
    devices = {
        row[0]: Entity(*row)
        for row in models.Device.objects.filter(building=building).values_list(
            "id", "name", "space_id"
        )
    }
    return BuildingInventory(
        id=building.id,
        name=building.name,
        version=building.inventory_version,
        zone=building.zone,
        memberships={
            device_id: _card_first(devices[device_id].space_id, spaces)
            for device_id, spaces in memberships.items()
            if device_id in devices
        },
        # Tuples, not model instances: every page of a building loads this, and a large
        # building has thousands of devices.
        spaces={
            id: Entity(id, name, parent_id, capacity)
            for id, name, parent_id, capacity in models.Space.objects.filter(
                building=building
            ).values_list("id", "name", "parent_id", "capacity")
        },
        areas={
            row[0]: Entity(*row)
            for row in models.Area.objects.filter(building=building).values_list(
                "id", "name", "space_id", "capacity"
            )
        },
        devices=devices,
    )


def _card_first(card: uuid.UUID | None, spaces: list[uuid.UUID]) -> tuple[uuid.UUID, ...]:
    # The card's space leads: it is the one a device's row names first.
    if card in spaces:
        return (card, *(s for s in spaces if s != card))
    return tuple(spaces) if card is None else (card, *spaces)
