"""A building's inventory as plain data: what the bridge subscribes to and pages show."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from functools import cached_property

from dashboard.contract.topics import Scope, subscription_topics


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

    @cached_property
    def devices_by_space(self) -> dict[uuid.UUID, list[uuid.UUID]]:
        """Each space's devices (by their first space): its card sums up their lamps."""
        found: dict[uuid.UUID, list[uuid.UUID]] = {}
        for device in self.devices.values():
            if device.space_id is not None:
                found.setdefault(device.space_id, []).append(device.id)
        return found

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
