"""What the bridge knows of each building's inventory, read from the database."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from dashboard.models import Area, Building, Device, Space
from dashboard.topics import Scope, subscription_topics


@dataclass(frozen=True, slots=True)
class Entity:
    id: uuid.UUID
    name: str
    space_id: uuid.UUID | None = None
    capacity: int | None = None


@dataclass(frozen=True)
class BuildingInventory:
    """A building and its spaces, areas and devices, as the bridge sees them."""

    id: uuid.UUID
    name: str
    version: int
    spaces: dict[uuid.UUID, Entity] = field(default_factory=dict)
    areas: dict[uuid.UUID, Entity] = field(default_factory=dict)
    devices: dict[uuid.UUID, Entity] = field(default_factory=dict)

    def topics(self) -> list[str]:
        """Exactly the topics to subscribe to for this building."""
        return subscription_topics(self.id, self.spaces, self.areas, self.devices)

    def knows(self, scope: str, entity_id: uuid.UUID) -> bool:
        """Whether a topic's id belongs to this building."""
        if scope == Scope.DEVICE:
            return entity_id in self.devices
        if scope == Scope.SPACE:
            return entity_id in self.spaces
        if scope == Scope.AREA:
            return entity_id in self.areas
        return entity_id == self.id


def load_versions(building_ids: list[uuid.UUID] | None = None) -> dict[uuid.UUID, int]:
    """Inventory version per building: one cheap query the bridge polls."""
    buildings = Building.objects.all()
    if building_ids:
        buildings = buildings.filter(id__in=building_ids)
    return dict(buildings.values_list("id", "inventory_version"))


def load_inventory(building_id: uuid.UUID) -> BuildingInventory | None:
    """The building's inventory, or None when it no longer exists."""
    building = Building.objects.filter(id=building_id).first()
    if building is None:
        return None
    return BuildingInventory(
        id=building.id,
        name=building.name,
        version=building.inventory_version,
        # Tuples, not model instances: every page of a building loads this, and a large
        # building has thousands of devices.
        spaces={
            id: Entity(id, name, capacity=capacity)
            for id, name, capacity in Space.objects.filter(building=building).values_list(
                "id", "name", "capacity"
            )
        },
        areas={
            row[0]: Entity(*row)
            for row in Area.objects.filter(building=building).values_list(
                "id", "name", "space_id", "capacity"
            )
        },
        devices={
            row[0]: Entity(*row)
            for row in Device.objects.filter(building=building).values_list(
                "id", "name", "space_id"
            )
        },
    )
