"""Import buildings, spaces, areas and devices from an inventory file (JSON).

The format, with the spaces/areas/devices lists and every capacity optional::

    {"buildings": [{"id": "<uuid>", "name": "Headquarters",
                    "spaces": [{"id": "<uuid>", "name": "Floor 1", "capacity": 120}],
                    "areas": [{"id": "<uuid>", "name": "Lobby", "space": "<uuid or null>",
                               "capacity": 40}],
                    "devices": [{"id": "<uuid>", "name": "Lobby downlight 1",
                                 "space": "<uuid or null>"}]}]}
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import models, transaction
from django.db.models import F

from dashboard.models import Area, Building, Device, Space

logger = logging.getLogger(__name__)

MAX_NAME_LENGTH = 200  # the models' max_length
MAX_CAPACITY = 2_147_483_647  # PositiveIntegerField's ceiling on every supported database
KINDS = ("building", "space", "area", "device")
MODELS: dict[str, type[models.Model]] = {
    "building": Building,
    "space": Space,
    "area": Area,
    "device": Device,
}
# Below SQLite's 999 bound parameters per query, whatever the database.
_BATCH = 500
_SURROGATE = re.compile(r"[\ud800-\udfff]")


class InventoryError(Exception):
    """The inventory was refused; ``messages`` says why, one ``path: problem`` per item."""

    def __init__(self, messages: Sequence[str]) -> None:
        self.messages = list(messages)
        super().__init__("\n".join(self.messages))


@dataclass(frozen=True, slots=True)
class SpaceEntry:
    id: uuid.UUID
    name: str
    capacity: int | None
    path: str


@dataclass(frozen=True, slots=True)
class AreaEntry:
    id: uuid.UUID
    name: str
    space_id: uuid.UUID | None
    capacity: int | None
    path: str


@dataclass(frozen=True, slots=True)
class DeviceEntry:
    id: uuid.UUID
    name: str
    space_id: uuid.UUID | None
    path: str


@dataclass(frozen=True, slots=True)
class BuildingEntry:
    id: uuid.UUID
    name: str
    path: str
    spaces: tuple[SpaceEntry, ...] = ()
    areas: tuple[AreaEntry, ...] = ()
    devices: tuple[DeviceEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class InventoryFile:
    """A validated inventory: ids unique across the file, space references within a building."""

    buildings: tuple[BuildingEntry, ...]


def _plural(count: int, kind: str) -> str:
    return f"{count} {kind}" if count == 1 else f"{count} {kind}s"


@dataclass
class ImportReport:
    """Ids created, updated and removed, per kind (building, space, area, device)."""

    created: dict[str, list[uuid.UUID]] = field(default_factory=lambda: {k: [] for k in KINDS})
    updated: dict[str, list[uuid.UUID]] = field(default_factory=lambda: {k: [] for k in KINDS})
    removed: dict[str, list[uuid.UUID]] = field(default_factory=lambda: {k: [] for k in KINDS})

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
        return lines or ["nothing changed"]

    def __str__(self) -> str:
        return "\n".join(self.lines())


# --- Reading and validating ---------------------------------------------------------


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else type(value).__name__


def _shown(value: str) -> str:
    # Keeps a message about a huge bogus value readable.
    return repr(value) if len(value) <= 60 else repr(value[:57] + "...")


class _Reader:
    """Walks the parsed JSON, collecting every problem instead of stopping at the first."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.id_paths: dict[uuid.UUID, str] = {}  # id -> where it first appeared
        self.space_homes: dict[uuid.UUID, tuple[int, str]] = {}  # -> (building index, path)
        self.references: list[tuple[str, uuid.UUID, int]] = []  # (path, space id, building index)

    def error(self, path: str, problem: str) -> None:
        self.errors.append(f"{path}: {problem}")

    def read(self, data: Any) -> InventoryFile:
        if not isinstance(data, dict):
            self.error("$", f"expected an object with a buildings array, got {_type_name(data)}")
            return InventoryFile(())
        if "buildings" not in data:
            self.error("buildings", "missing")
            return InventoryFile(())
        raw_buildings = self.array(data["buildings"], "buildings")
        buildings = [
            self.building(raw, f"buildings[{i}]", i) for i, raw in enumerate(raw_buildings)
        ]
        self.check_references()
        return InventoryFile(tuple(b for b in buildings if b is not None))

    def array(self, value: Any, path: str) -> list[Any]:
        if not isinstance(value, list):
            self.error(path, f"expected an array, got {_type_name(value)}")
            return []
        return value

    def optional_array(self, obj: dict[str, Any], key: str, path: str) -> list[Any]:
        # null is taken as absent: some exports write empty lists that way.
        value = obj.get(key)
        return [] if value is None else self.array(value, f"{path}.{key}")

    def object(self, value: Any, path: str) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.error(path, f"expected an object, got {_type_name(value)}")
            return None
        return value

    def uuid_value(self, value: Any, path: str) -> uuid.UUID | None:
        if not isinstance(value, str):
            self.error(path, f"expected a UUID string, got {_type_name(value)}")
            return None
        try:
            return uuid.UUID(value)
        except ValueError:
            self.error(path, f"not a UUID: {_shown(value)}")
            return None

    def ident(self, obj: dict[str, Any], path: str) -> uuid.UUID | None:
        if "id" not in obj:
            self.error(f"{path}.id", "missing")
            return None
        value = self.uuid_value(obj["id"], f"{path}.id")
        if value is None:
            return None
        if value in self.id_paths:
            self.error(f"{path}.id", f"duplicate id {value} (also at {self.id_paths[value]})")
            return None
        self.id_paths[value] = f"{path}.id"
        return value

    def name(self, obj: dict[str, Any], path: str) -> str | None:
        path = f"{path}.name"
        if "name" not in obj:
            self.error(path, "missing")
            return None
        value = obj["name"]
        if not isinstance(value, str):
            self.error(path, f"expected a string, got {_type_name(value)}")
            return None
        if not value.strip():
            self.error(path, "must not be blank")
            return None
        # Neither can be stored (PostgreSQL refuses NUL; no database takes a lone surrogate).
        if "\x00" in value:
            self.error(path, "must not contain NUL characters")
            return None
        if not value.isascii() and _SURROGATE.search(value):
            self.error(path, "not valid Unicode text (a lone surrogate)")
            return None
        if len(value) > MAX_NAME_LENGTH:
            self.error(path, f"longer than {MAX_NAME_LENGTH} characters ({len(value)})")
            return None
        return value

    def capacity(self, obj: dict[str, Any], path: str) -> int | None:
        value = obj.get("capacity")
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            self.error(f"{path}.capacity", "must be a whole number >= 0")
        elif value > MAX_CAPACITY:
            self.error(f"{path}.capacity", f"must be at most {MAX_CAPACITY}")
        else:
            return value
        return None

    def space_reference(self, obj: dict[str, Any], path: str, building: int) -> uuid.UUID | None:
        value = obj.get("space")
        if value is None:
            return None
        space_id = self.uuid_value(value, f"{path}.space")
        if space_id is not None:
            # Checked once every building's spaces are known.
            self.references.append((f"{path}.space", space_id, building))
        return space_id

    def building(self, raw: Any, path: str, index: int) -> BuildingEntry | None:
        obj = self.object(raw, path)
        if obj is None:
            return None
        building_id, name = self.ident(obj, path), self.name(obj, path)
        spaces = []
        for i, raw_space in enumerate(self.optional_array(obj, "spaces", path)):
            space_path = f"{path}.spaces[{i}]"
            if (item := self.object(raw_space, space_path)) is None:
                continue
            space_id, space_name = self.ident(item, space_path), self.name(item, space_path)
            capacity = self.capacity(item, space_path)
            if space_id is not None:
                self.space_homes[space_id] = (index, space_path)
                if space_name is not None:
                    spaces.append(SpaceEntry(space_id, space_name, capacity, space_path))
        areas = []
        for i, raw_area in enumerate(self.optional_array(obj, "areas", path)):
            area_path = f"{path}.areas[{i}]"
            if (item := self.object(raw_area, area_path)) is None:
                continue
            area_id, area_name = self.ident(item, area_path), self.name(item, area_path)
            space_id = self.space_reference(item, area_path, index)
            capacity = self.capacity(item, area_path)
            if area_id is not None and area_name is not None:
                areas.append(AreaEntry(area_id, area_name, space_id, capacity, area_path))
        devices = []
        for i, raw_device in enumerate(self.optional_array(obj, "devices", path)):
            device_path = f"{path}.devices[{i}]"
            if (item := self.object(raw_device, device_path)) is None:
                continue
            device_id, device_name = self.ident(item, device_path), self.name(item, device_path)
            space_id = self.space_reference(item, device_path, index)
            if device_id is not None and device_name is not None:
                devices.append(DeviceEntry(device_id, device_name, space_id, device_path))
        if building_id is None or name is None:
            return None
        return BuildingEntry(building_id, name, path, tuple(spaces), tuple(areas), tuple(devices))

    def check_references(self) -> None:
        for path, space_id, building in self.references:
            home = self.space_homes.get(space_id)
            if home is None:
                if space_id in self.id_paths:
                    self.error(path, f"{space_id} is not a space (it is {self.id_paths[space_id]})")
                else:
                    self.error(path, f"unknown space {space_id}")
            elif home[0] != building:
                self.error(path, f"space {space_id} belongs to another building ({home[1]})")


def parse_inventory(text: str) -> InventoryFile:
    """Parse and validate a whole inventory file, or raise InventoryError naming every problem.

    Keys the format does not know are ignored, so Gooee Cloud API exports with extra fields load.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        message = f"$: not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        raise InventoryError([message]) from None
    except (ValueError, RecursionError) as exc:
        # Integers past Python's digit limit, or nesting deeper than the parser allows.
        raise InventoryError([f"$: not JSON ({exc})"]) from None
    reader = _Reader()
    inventory = reader.read(data)
    if reader.errors:
        raise InventoryError(reader.errors)
    return inventory


# --- Writing ---------------------------------------------------------------------


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
        if "building_id" in changed:
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
    buildings = {b.id: {"name": b.name} for b in inventory.buildings}
    spaces, areas, devices = {}, {}, {}
    paths: dict[str, dict[uuid.UUID, str]] = {kind: {} for kind in KINDS}
    for b in inventory.buildings:
        paths["building"][b.id] = b.path
        for s in b.spaces:
            spaces[s.id] = {"building_id": b.id, "name": s.name, "capacity": s.capacity}
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
            devices[d.id] = {"building_id": b.id, "space_id": d.space_id, "name": d.name}
            paths["device"][d.id] = d.path
    listed = {kind: set(paths[kind]) for kind in KINDS}

    report = ImportReport()
    touched: set[uuid.UUID] = set()
    with transaction.atomic():
        _refuse_kind_conflicts(paths)
        _upsert("building", buildings, report, touched)
        moved_spaces = _upsert("space", spaces, report, touched)
        _upsert("area", areas, report, touched)
        _upsert("device", devices, report, touched)
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
