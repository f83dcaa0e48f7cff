"""The inventory file: its format (``schemas/inventory_file.json``), read and checked whole.

The format, with the spaces/areas/devices lists and every capacity optional::

    {"buildings": [{"id": "<uuid>", "name": "Headquarters", "timezone": "Europe/London",
                    "spaces": [{"id": "<uuid>", "name": "Floor 1", "capacity": 120},
                               {"id": "<uuid>", "name": "Room 1.1", "parent": "<floor uuid>"}],
                    "areas": [{"id": "<uuid>", "name": "Lobby", "space": "<uuid or null>",
                               "capacity": 40}],
                    "devices": [{"id": "<uuid>", "name": "Lobby downlight 1",
                                 "space": "<uuid or null>"}]}]}

Optional beside those, as a Gooee Cloud sync writes them: a device's ``spaces`` (every space it
is in; the first is its card's, and ``space`` is the same as a list of one), its ``type``, and
``meta`` on devices and spaces: current values ``[{"name", "value", "timestamp"}]``.

The JSON Schema says what each entry must hold; this module adds what a schema cannot say
(ids unique across the file, a space reference naming a space of the same building) and
words every problem as ``path: problem``, e.g. ``buildings[0].devices[3].space: ...``.
"""

from __future__ import annotations

import json
import re
import uuid
import zoneinfo
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker, ValidationError

SCHEMA_FILE = Path(__file__).resolve().parent / "schemas" / "inventory_file.json"
_SURROGATE = re.compile(r"[\ud800-\udfff]")


class InventoryError(Exception):
    """The inventory was refused; ``messages`` says why, one ``path: problem`` per item."""

    def __init__(self, messages: Sequence[str]) -> None:
        self.messages = list(messages)
        super().__init__("\n".join(self.messages))


@dataclass(frozen=True, slots=True)
class CurrentValue:
    """A meta value the file (a cloud sync) says the device or space has now."""

    name: str
    value: Any
    timestamp: str


@dataclass(frozen=True, slots=True)
class SpaceEntry:
    id: uuid.UUID
    name: str
    capacity: int | None
    path: str
    parent_id: uuid.UUID | None = None
    values: tuple[CurrentValue, ...] = ()


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
    space_ids: tuple[uuid.UUID, ...] = ()  # every space it is in, space_id first
    product_type: str = ""
    values: tuple[CurrentValue, ...] = ()


@dataclass(frozen=True, slots=True)
class BuildingEntry:
    id: uuid.UUID
    name: str
    path: str
    timezone: str = "UTC"
    spaces: tuple[SpaceEntry, ...] = ()
    areas: tuple[AreaEntry, ...] = ()
    devices: tuple[DeviceEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class InventoryFile:
    """A validated inventory: ids unique across the file, space references within a building."""

    buildings: tuple[BuildingEntry, ...]


# --- The schema's part ------------------------------------------------------------------

_FORMATS = FormatChecker(formats=())


def _shown(value: str) -> str:
    # Keeps a message about a huge bogus value readable.
    return repr(value) if len(value) <= 60 else repr(value[:57] + "...")


@_FORMATS.checks("uuid", raises=ValueError)
def _is_uuid(value: object) -> bool:
    # Any spelling uuid.UUID reads (braces, no hyphens), as the import always took.
    if isinstance(value, str):
        try:
            uuid.UUID(value)
        except ValueError:
            raise ValueError(f"not a UUID: {_shown(value)}") from None
    return True


@_FORMATS.checks("time-zone", raises=ValueError)
def _is_time_zone(value: object) -> bool:
    if isinstance(value, str) and value:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"not a known time zone: {_shown(value)}") from None
    return True


@_FORMATS.checks("storable", raises=ValueError)
def _is_storable(value: object) -> bool:
    # Neither can be stored (PostgreSQL refuses NUL; no database takes a lone surrogate).
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
        if not value.isascii() and _SURROGATE.search(value):
            raise ValueError("not valid Unicode text (a lone surrogate)")
    return True


with SCHEMA_FILE.open(encoding="utf-8") as _f:
    SCHEMA: dict[str, Any] = json.load(_f)
Draft202012Validator.check_schema(SCHEMA)
_VALIDATOR = Draft202012Validator(SCHEMA, format_checker=_FORMATS)

_A_TYPE = {"array": "an array", "object": "an object", "string": "a string"}


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


def _path(parts: Sequence[str | int]) -> str:
    """``buildings[0].devices[3].space`` for ("buildings", 0, "devices", 3, "space")."""
    text = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")
    return text or "$"


def _worded(error: ValidationError) -> Iterator[tuple[str, str]]:
    """(path, problem) for one schema error, worded by the schema's ``x-messages``."""
    where = list(error.absolute_path)
    keyword = str(error.validator)
    if keyword == "required":
        for key in error.validator_value:
            if key not in error.instance:
                yield _path([*where, key]), "missing"
        return
    if keyword == "format" and error.cause is not None:
        yield _path(where), str(error.cause)
        return
    schema = error.schema if isinstance(error.schema, dict) else {}
    template = schema.get("x-messages", {}).get(keyword)
    if template is None and keyword == "type":
        types = error.validator_value
        first = types[0] if isinstance(types, list) else types
        template = f"expected {_A_TYPE.get(first, first)}, got {{got}}"
    instance = error.instance
    yield (
        _path(where),
        (template or error.message).format(
            got=_type_name(instance),
            maximum=schema.get("maximum"),
            maxLength=schema.get("maxLength"),
            length=len(instance) if isinstance(instance, str | list | dict) else None,
        ),
    )


def _schema_problems(data: Any) -> list[str]:
    """Every schema problem, one per path (the first the schema finds there), in file order."""
    problems: dict[str, str] = {}
    for error in _VALIDATOR.iter_errors(data):
        for path, problem in _worded(error):
            problems.setdefault(path, problem)
    return [f"{path}: {problem}" for path, problem in problems.items()]


# --- What a schema cannot say ------------------------------------------------------------


def _dicts(value: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    if isinstance(value, list):
        yield from ((i, item) for i, item in enumerate(value) if isinstance(item, dict))


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if isinstance(value, str) else None
    except ValueError:
        return None  # the schema's problem, already reported


def _cross_problems(data: Any) -> list[str]:
    """Ids repeated anywhere in the file; space references to no space of the same building.

    Looks only at what the schema let through (or reported already): entries that are
    objects, ids that are UUIDs.
    """
    problems: list[str] = []
    id_paths: dict[uuid.UUID, str] = {}  # id -> where it first appeared
    space_homes: dict[uuid.UUID, tuple[int, str]] = {}  # -> (building index, path)
    references: list[tuple[str, uuid.UUID, int]] = []  # (path, space id, building index)
    parents: dict[uuid.UUID, tuple[uuid.UUID, str]] = {}  # space -> (its parent, path)

    def new_id(obj: dict[str, Any], path: str) -> uuid.UUID | None:
        value = _uuid(obj.get("id"))
        if value is None:
            return None
        if value in id_paths:
            problems.append(f"{path}.id: duplicate id {value} (also at {id_paths[value]})")
            return None
        id_paths[value] = f"{path}.id"
        return value

    buildings = data.get("buildings") if isinstance(data, dict) else None
    for b, building in _dicts(buildings):
        path = f"buildings[{b}]"
        new_id(building, path)
        for kind in ("spaces", "areas", "devices"):
            for i, item in _dicts(building.get(kind)):
                item_path = f"{path}.{kind}[{i}]"
                entity_id = new_id(item, item_path)
                if kind == "spaces" and entity_id is not None:
                    space_homes[entity_id] = (b, item_path)
                    if (parent := _uuid(item.get("parent"))) is not None:
                        references.append((f"{item_path}.parent", parent, b))
                        parents[entity_id] = (parent, f"{item_path}.parent")
                elif kind != "spaces" and (space_id := _uuid(item.get("space"))) is not None:
                    # Checked once every building's spaces are known.
                    references.append((f"{item_path}.space", space_id, b))
                if kind == "devices" and isinstance(item.get("spaces"), list):
                    for r, ref in enumerate(item["spaces"]):
                        if (space_id := _uuid(ref)) is not None:
                            references.append((f"{item_path}.spaces[{r}]", space_id, b))
    for path, space_id, b in references:
        home = space_homes.get(space_id)
        if home is None:
            if space_id in id_paths:
                problems.append(f"{path}: {space_id} is not a space (it is {id_paths[space_id]})")
            else:
                problems.append(f"{path}: unknown space {space_id}")
        elif home[0] != b:
            problems.append(f"{path}: space {space_id} belongs to another building ({home[1]})")
    for start, (_, path) in parents.items():
        seen, at = {start}, parents[start][0]
        while at in parents:
            if at in seen:
                problems.append(f"{path}: spaces nest in a loop")
                break
            seen.add(at)
            at = parents[at][0]
    return problems


# --- The whole file --------------------------------------------------------------------


def _space_id(item: dict[str, Any]) -> uuid.UUID | None:
    return uuid.UUID(item["space"]) if item.get("space") is not None else None


def _space_ids(item: dict[str, Any]) -> tuple[uuid.UUID, ...]:
    """Every space a device is in, its card's first; ``space`` alone is a list of one."""
    listed = [uuid.UUID(ref) for ref in item.get("spaces") or () if ref is not None]
    first = _space_id(item)
    if first is not None:
        listed.insert(0, first)
    return tuple(dict.fromkeys(listed))


def _values(item: dict[str, Any]) -> tuple[CurrentValue, ...]:
    return tuple(
        CurrentValue(m["name"], m.get("value"), m.get("timestamp") or "")
        for m in item.get("meta") or ()
    )


def _entries(data: dict[str, Any]) -> InventoryFile:
    """The entries of a file with no problems."""
    buildings = []
    for b, raw in enumerate(data["buildings"]):
        path = f"buildings[{b}]"
        spaces = tuple(
            SpaceEntry(
                uuid.UUID(s["id"]),
                s["name"],
                s.get("capacity"),
                f"{path}.spaces[{i}]",
                uuid.UUID(s["parent"]) if s.get("parent") else None,
                _values(s),
            )
            for i, s in enumerate(raw.get("spaces") or ())
        )
        areas = tuple(
            AreaEntry(
                uuid.UUID(a["id"]), a["name"], _space_id(a), a.get("capacity"), f"{path}.areas[{i}]"
            )
            for i, a in enumerate(raw.get("areas") or ())
        )
        devices = tuple(
            DeviceEntry(
                uuid.UUID(d["id"]),
                d["name"],
                (_space_ids(d) or (None,))[0],
                f"{path}.devices[{i}]",
                _space_ids(d),
                d.get("type") or "",
                _values(d),
            )
            for i, d in enumerate(raw.get("devices") or ())
        )
        buildings.append(
            BuildingEntry(
                uuid.UUID(raw["id"]),
                raw["name"],
                path,
                raw.get("timezone") or "UTC",
                spaces,
                areas,
                devices,
            )
        )
    return InventoryFile(tuple(buildings))


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
    problems = _schema_problems(data) + _cross_problems(data)
    if problems:
        raise InventoryError(problems)
    return _entries(data)
