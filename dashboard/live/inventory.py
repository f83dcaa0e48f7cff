"""Import buildings, spaces, areas and devices: write a checked inventory file to the database.

``inventory_file.parse_inventory`` reads and checks the file; ``apply_inventory`` writes it in
one transaction, idempotently.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from django.db import models, transaction
from django.db.models import F

from dashboard.live import current_values, occupancy_days
from dashboard.live.inventory_file import InventoryError, InventoryFile
from dashboard.models import Area, Building, Device, Space

logger = logging.getLogger(__name__)

KINDS = ("building", "space", "area", "device")
MODELS: dict[str, type[models.Model]] = {
    "building": Building,
    "space": Space,
    "area": Area,
    "device": Device,
}
# Below SQLite's 999 bound parameters per query, whatever the database.
_BATCH = 500


def _plural(count: int, kind: str) -> str:
    return f"{count} {kind}" if count == 1 else f"{count} {kind}s"


@dataclass
class ImportReport:
    """Ids created, updated and removed, per kind (building, space, area, device)."""

    created: dict[str, list[uuid.UUID]] = field(default_factory=lambda: {k: [] for k in KINDS})
    updated: dict[str, list[uuid.UUID]] = field(default_factory=lambda: {k: [] for k in KINDS})
    removed: dict[str, list[uuid.UUID]] = field(default_factory=lambda: {k: [] for k in KINDS})
    values: int = 0  # current values taken from the file (a cloud sync), newer than ours

    @property
    def changed(self) -> bool:
        return any(
            ids for action in (self.created, self.updated, self.removed) for ids in action.values()
        )

    def lines(self) -> list[str]:
        """What the import command prints, e.g. ``created: 1 building, 6 spaces``."""
        lines = []
        for label, action in (
            ("created", self.created),
            ("updated", self.updated),
            ("removed", self.removed),
        ):
            counts = [_plural(len(action[kind]), kind) for kind in KINDS if action[kind]]
            if counts:
                lines.append(f"{label}: {', '.join(counts)}")
        if self.values:
            lines.append(f"current values: {self.values} taken")
        return lines or ["nothing changed"]

    def __str__(self) -> str:
        return "\n".join(self.lines())


# --- Writing ---------------------------------------------------------------------


def _set_parents(
    parents: dict[uuid.UUID, uuid.UUID | None], report: ImportReport, touched: set[uuid.UUID]
) -> None:
    rows = Space.objects.filter(pk__in=list(parents)).values_list("pk", "parent_id", "building_id")
    for pk, parent_id, building_id in rows:
        if parent_id != parents[pk]:
            Space.objects.filter(pk=pk).update(parent_id=parents[pk])
            if pk not in report.created["space"] and pk not in report.updated["space"]:
                report.updated["space"].append(pk)
            touched.add(building_id)


def _set_memberships(
    inventory: InventoryFile, report: ImportReport, touched: set[uuid.UUID]
) -> None:
    """Each listed device is a member of exactly the spaces the file lists for it."""
    wanted = {d.id: set(d.space_ids) for b in inventory.buildings for d in b.devices}
    through = Device.spaces.through
    held: dict[uuid.UUID, set[uuid.UUID]] = {pk: set() for pk in wanted}
    for chunk in _chunks(list(wanted)):
        for device_id, space_id in through.objects.filter(device_id__in=chunk).values_list(
            "device_id", "space_id"
        ):
            held[device_id].add(space_id)
    homes = {d.id: b.id for b in inventory.buildings for d in b.devices}
    for device_id, spaces in wanted.items():
        if held[device_id] == spaces:
            continue
        through.objects.filter(device_id=device_id).exclude(space_id__in=spaces).delete()
        through.objects.bulk_create(
            [through(device_id=device_id, space_id=s) for s in spaces - held[device_id]]
        )
        if device_id not in report.created["device"] and device_id not in report.updated["device"]:
            report.updated["device"].append(device_id)
        touched.add(homes[device_id])


def _chunks(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), _BATCH):
        yield items[start : start + _BATCH]


def _existing_ids(model: type[models.Model], ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    found: set[uuid.UUID] = set()
    for chunk in _chunks(ids):
        found.update(model._default_manager.filter(pk__in=chunk).values_list("pk", flat=True))
    return found


def _refuse_kind_conflicts(wanted: dict[str, dict[uuid.UUID, str]]) -> None:
    """Refuse ids the database already holds as another kind (a device id reused for a space)."""
    errors = []
    for db_kind, model in MODELS.items():
        for file_kind, paths in wanted.items():
            if file_kind == db_kind:
                continue
            for entity_id in sorted(_existing_ids(model, list(paths)), key=str):
                errors.append(
                    f"{paths[entity_id]}.id: {entity_id} is already a {db_kind} in the database,"
                    f" not a {file_kind}"
                )
    if errors:
        raise InventoryError(sorted(errors))


def _upsert(
    kind: str,
    wanted: dict[uuid.UUID, dict[str, Any]],
    report: ImportReport,
    touched: set[uuid.UUID],
) -> dict[uuid.UUID, uuid.UUID]:
    """Create or update ``kind`` rows to match ``wanted`` (attname -> value); return moved ids.

    Saves only rows whose fields differ; ``touched`` gains every building whose inventory changed.
    """
    model = MODELS[kind]
    existing = model._default_manager.in_bulk(list(wanted))
    to_create, to_update, changed_fields = [], [], set()
    moved: dict[uuid.UUID, uuid.UUID] = {}  # id -> the building it left
    for entity_id, values in wanted.items():
        home = values.get("building_id", entity_id)
        obj = existing.get(entity_id)
        if obj is None:
            to_create.append(model(pk=entity_id, **values))
            report.created[kind].append(entity_id)
            touched.add(home)
            continue
        changed = [name for name, value in values.items() if getattr(obj, name) != value]
        if not changed:
            continue
        if "building_id" in changed and isinstance(obj, Space | Area | Device):
            moved[entity_id] = obj.building_id
            touched.add(obj.building_id)
        for name in changed:
            setattr(obj, name, values[name])
        changed_fields.update(changed)
        to_update.append(obj)
        report.updated[kind].append(entity_id)
        touched.add(home)
    # Bulk writes send no signals; the caller bumps inventory_version for ``touched`` once.
    model._default_manager.bulk_create(to_create, batch_size=_BATCH)
    if to_update:
        fields = sorted(model._meta.get_field(name).name for name in changed_fields)
        model._default_manager.bulk_update(to_update, fields, batch_size=_BATCH)
    return moved


def _detach_from_moved_spaces(
    moved: dict[uuid.UUID, uuid.UUID],
    listed: dict[str, set[uuid.UUID]],
    report: ImportReport,
    touched: set[uuid.UUID],
) -> None:
    """Unset the space of areas/devices the file does not list that point at a space now in
    another building, so no building refers to another building's space."""
    space_homes = dict(Space.objects.filter(pk__in=list(moved)).values_list("pk", "building_id"))
    for kind in ("area", "device"):
        model = MODELS[kind]
        rows = model._default_manager.filter(space_id__in=list(moved)).values_list(
            "pk", "building_id", "space_id"
        )
        stranded = [
            (pk, building_id)
            for pk, building_id, space_id in rows
            if pk not in listed[kind] and building_id != space_homes[space_id]
        ]
        for chunk in _chunks([pk for pk, _ in stranded]):
            model._default_manager.filter(pk__in=chunk).update(space=None)
        for pk, building_id in stranded:
            report.updated[kind].append(pk)
            touched.add(building_id)


def _prune(
    building_ids: list[uuid.UUID],
    listed: dict[str, set[uuid.UUID]],
    report: ImportReport,
    touched: set[uuid.UUID],
) -> None:
    # Devices and areas first, so deleting their spaces has nothing left to SET_NULL.
    for kind in ("device", "area", "space"):
        model = MODELS[kind]
        rows = model._default_manager.filter(building_id__in=building_ids).values_list(
            "pk", "building_id"
        )
        gone = sorted(
            ((pk, b) for pk, b in rows if pk not in listed[kind]), key=lambda r: str(r[0])
        )
        for chunk in _chunks([pk for pk, _ in gone]):
            # A queryset delete also removes the rows' history and alarms (CASCADE).
            model._default_manager.filter(pk__in=chunk).delete()
        for pk, building_id in gone:
            report.removed[kind].append(pk)
            touched.add(building_id)


def apply_inventory(inventory: InventoryFile, *, prune: bool = False) -> ImportReport:
    """Create or update everything the file lists, in one transaction; idempotent.

    ``prune`` also deletes spaces, areas and devices of the file's buildings that the file no
    longer lists; buildings the file does not mention are never pruned.
    """
    buildings = {b.id: {"name": b.name, "timezone": b.timezone} for b in inventory.buildings}
    spaces: dict[uuid.UUID, dict[str, Any]] = {}
    areas: dict[uuid.UUID, dict[str, Any]] = {}
    devices: dict[uuid.UUID, dict[str, Any]] = {}
    parents = {s.id: s.parent_id for b in inventory.buildings for s in b.spaces}
    paths: dict[str, dict[uuid.UUID, str]] = {kind: {} for kind in KINDS}
    for b in inventory.buildings:
        paths["building"][b.id] = b.path
        for s in b.spaces:
            spaces[s.id] = {
                "building_id": b.id,
                "name": s.name,
                "capacity": s.capacity,
            }
            paths["space"][s.id] = s.path
        for a in b.areas:
            areas[a.id] = {
                "building_id": b.id,
                "space_id": a.space_id,
                "name": a.name,
                "capacity": a.capacity,
            }
            paths["area"][a.id] = a.path
        for d in b.devices:
            devices[d.id] = {
                "building_id": b.id,
                "space_id": d.space_id,
                "name": d.name,
                "product_type": d.product_type,
            }
            paths["device"][d.id] = d.path
    listed = {kind: set(paths[kind]) for kind in KINDS}

    report = ImportReport()
    touched: set[uuid.UUID] = set()
    with transaction.atomic():
        _refuse_kind_conflicts(paths)
        zones = dict(Building.objects.filter(pk__in=list(buildings)).values_list("id", "timezone"))
        _upsert("building", buildings, report, touched)
        for building_id, values in buildings.items():
            # Written in bulk (no signal): a building whose zone the cloud changed gets its
            # occupancy day rows made again on its new clock, once this is committed.
            if zones.get(building_id, values["timezone"]) != values["timezone"]:
                transaction.on_commit(partial(occupancy_days.rebuild, building_id))
        moved_spaces = _upsert("space", spaces, report, touched)
        # Parents after every space exists: a room may be listed before its floor.
        _set_parents(parents, report, touched)
        _upsert("area", areas, report, touched)
        _upsert("device", devices, report, touched)
        _set_memberships(inventory, report, touched)
        report.values = current_values.write(inventory)
        if prune:
            _prune(list(buildings), listed, report, touched)
        if moved_spaces:
            _detach_from_moved_spaces(moved_spaces, listed, report, touched)
        # One bump per changed building, however many rows changed (renames included: the
        # bridge keeps the building's name with its inventory).
        for chunk in _chunks(sorted(touched, key=str)):
            Building.objects.filter(pk__in=chunk).update(
                inventory_version=F("inventory_version") + 1
            )
    logger.info("inventory import: %s", "; ".join(report.lines()))
    return report
