"""A building's inventory as plain data: what the bridge subscribes to and pages show."""

from __future__ import annotations

import uuid
import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from dashboard.contract.topics import Scope, subscription_topics


@dataclass(frozen=True, slots=True)
class Entity:
    id: uuid.UUID
    name: str
    # The space it is in: an area's or a device's (its card's); a space's parent space.
    space_id: uuid.UUID | None = None
    capacity: int | None = None


UTC = zoneinfo.ZoneInfo("UTC")


@dataclass(frozen=True)
class BuildingInventory:
    """A building and its spaces, areas and devices, as the bridge sees them."""

    id: uuid.UUID
    name: str
    version: int
    spaces: dict[uuid.UUID, Entity] = field(default_factory=dict)
    areas: dict[uuid.UUID, Entity] = field(default_factory=dict)
    devices: dict[uuid.UUID, Entity] = field(default_factory=dict)
    # Every time shown of the building is in its zone: tiles format with it, never asking
    # Django for the current zone (a bridge renders many buildings on one thread).
    zone: zoneinfo.ZoneInfo = UTC
    # Every space each device is in, its card's first (one missing here: its card's only).
    memberships: dict[uuid.UUID, tuple[uuid.UUID, ...]] = field(default_factory=dict)

    def spaces_of(self, device: Entity) -> tuple[uuid.UUID, ...]:
        """The spaces ``device`` is in, its card's first."""
        found = self.memberships.get(device.id)
        if found:
            return found
        return (device.space_id,) if device.space_id else ()

    def space_tree(self) -> list[tuple[Entity, int]]:
        """Every space with its depth, each parent followed by its children, by name."""
        children: dict[uuid.UUID | None, list[Entity]] = {}
        for space in self.spaces.values():
            parent = space.space_id if space.space_id in self.spaces else None
            children.setdefault(parent, []).append(space)
        ordered: list[tuple[Entity, int]] = []
        seen: set[uuid.UUID] = set()

        def walk(parent: uuid.UUID | None, depth: int) -> None:
            for space in sorted(children.get(parent, []), key=lambda s: s.name.casefold()):
                if space.id not in seen:  # a loop (refused on import) cannot hang a page
                    seen.add(space.id)
                    ordered.append((space, depth))
                    walk(space.id, depth + 1)

        walk(None, 0)
        # Spaces in a loop have no root: shown last, flat, rather than lost.
        ordered += [(s, 0) for s in self.spaces.values() if s.id not in seen]
        return ordered

    def space_label(self, space_id: uuid.UUID | None) -> str:
        """A space as a list of several names it: "Boardroom (Level 2)" where it nests."""
        space = self.spaces.get(space_id) if space_id else None
        if space is None:
            return "a space no longer in the building"
        parent = self.spaces.get(space.space_id) if space.space_id else None
        return f"{space.name} ({parent.name})" if parent else space.name

    def within(self, space_id: uuid.UUID) -> set[uuid.UUID]:
        """``space_id`` and every space inside it, however deep."""
        return spaces_within(self.spaces, space_id)

    @cached_property
    def devices_by_space(self) -> dict[uuid.UUID, list[uuid.UUID]]:
        """Each space's devices (every space a device is in): its card sums up their lamps."""
        found: dict[uuid.UUID, list[uuid.UUID]] = {}
        for device in self.devices.values():
            for space_id in self.spaces_of(device):
                found.setdefault(space_id, []).append(device.id)
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


def spaces_within(spaces: Mapping[uuid.UUID, Entity], space_id: uuid.UUID) -> set[uuid.UUID]:
    """``space_id`` and every space of ``spaces`` inside it, however deep (a space's
    ``space_id`` is its parent)."""
    found = {space_id}
    grew = True
    while grew:
        inner = {s.id for s in spaces.values() if s.space_id in found} - found
        found |= inner
        grew = bool(inner)
    return found


def space_inventory(
    building_id: uuid.UUID, rows: Iterable[tuple[uuid.UUID, str, Any]]
) -> BuildingInventory:
    """A building's spaces alone, from (id, name, parent id) rows: for their tree."""
    return BuildingInventory(
        building_id, "", 0, spaces={r[0]: Entity(r[0], r[1], r[2]) for r in rows}
    )
