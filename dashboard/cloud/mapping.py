"""What the Gooee Cloud API's objects mean to the dashboard: the one place to correct it.

Known from Gooee's public SDK and integrations (``client.py`` does the HTTP):

- ``GET /buildings/<id>``, ``GET /buildings``: ``id``, ``name``, ``timezone`` (IANA name).
- ``GET /spaces?building=<id>``: ``id``, ``name``, ``parent_space`` (a space id or null: spaces
  nest), ``capacity`` (sometimes), ``meta`` (``[{"name", "value", "timestamp"?}]``).
- ``GET /devices?building=<id>``: ``id``, ``name``, ``spaces`` (ids: a device may be in several),
  ``type``, ``meta`` (its current values).
- ``GET /areas?building=<id>``: not in the public samples; ``id``, ``name``, ``space``
  (or ``parent_space``), ``capacity`` assumed. A 404 there means "no areas endpoint".

Each object is checked against its JSON Schema (``schemas/``); a refusal names the object and
field as the API listed it, e.g. ``devices[3].spaces``. The result is a building in the
inventory file format (``dashboard/live/inventory.py``), so a synced building and an imported
file take the same path into the database.
"""

from __future__ import annotations

import json
import uuid
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

_SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
_SCHEMAS = {p.name: json.loads(p.read_text(encoding="utf-8")) for p in _SCHEMA_DIR.glob("*.json")}
_REGISTRY: Registry = Registry().with_resources(
    (name, Resource.from_contents(schema)) for name, schema in _SCHEMAS.items()
)
_VALIDATORS = {
    kind: Draft202012Validator(_SCHEMAS[f"{kind}.json"], registry=_REGISTRY)
    for kind in ("building", "space", "area", "device")
}
MAX_ERRORS = 20


class MappingError(Exception):
    """The API's answer is not what the dashboard understands; one ``path: problem`` each."""

    def __init__(self, messages: list[str]) -> None:
        self.messages = messages
        more = f" (and {len(messages) - 1} more)" if len(messages) > 1 else ""
        super().__init__(f"{messages[0]}{more}")


def _path(prefix: str, parts: Any) -> str:
    out = prefix
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _problem(error: Any) -> str:
    if error.validator == "required":
        return f"missing {error.message.split(chr(39))[1]!r}"
    if error.validator == "pattern":
        return "not an id (a UUID)"
    if error.validator == "type":
        expected = error.validator_value
        return f"expected {' or '.join(expected) if isinstance(expected, list) else expected}"
    if error.validator == "$ref" or error.validator == "anyOf":
        return "not an id (a UUID) or null"
    return error.message[:120]


def _check(kind: str, objects: list[Any], prefix: str, errors: list[str]) -> list[dict[str, Any]]:
    """The objects that pass their schema; each refusal goes into ``errors`` with its path."""
    good = []
    for index, obj in enumerate(objects):
        found = sorted(_VALIDATORS[kind].iter_errors(obj), key=lambda e: list(e.absolute_path))
        for error in found:
            base = _path(f"{prefix}[{index}]" if prefix != "building" else prefix, [])
            errors.append(f"{_path(base, error.absolute_path)}: {_problem(error)}")
        if not found:
            good.append(obj)
    return good


def _meta(values: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    return [
        {"name": m["name"], "value": m.get("value"), "timestamp": m.get("timestamp") or ""}
        for m in values or []
    ]


@dataclass
class Mapped:
    """One building in the inventory file format, and what was dropped on the way (notes)."""

    building: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def _id(value: str) -> str:
    return str(uuid.UUID(value))


def _type_name(value: Any) -> str:
    # Seen as a plain name and as an object with one; the dashboard only shows it.
    if isinstance(value, dict):
        value = value.get("name")
    return value[:100] if isinstance(value, str) else ""


def map_building(
    building: Any,
    spaces: list[Any],
    areas: list[Any] | None,
    devices: list[Any],
) -> Mapped:
    """The API's objects of one building as one inventory-file building.

    ``areas`` is None when the API has no areas endpoint: the result then has no ``areas`` key,
    which the import reads as "keep the areas already there".
    """
    errors: list[str] = []
    _check("building", [building], "building", errors)
    good_spaces = _check("space", spaces, "spaces", errors)
    good_areas = _check("area", areas or [], "areas", errors)
    good_devices = _check("device", devices, "devices", errors)
    if not errors:
        tz = building.get("timezone")
        if tz:
            try:
                zoneinfo.ZoneInfo(tz)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                errors.append(f"building.timezone: unknown time zone {tz[:64]!r}")
    if errors:
        raise MappingError(errors[:MAX_ERRORS])

    notes: list[str] = []
    space_ids = {_id(s["id"]) for s in good_spaces}
    parents: dict[str, str | None] = {}
    for index, s in enumerate(good_spaces):
        parent = _id(s["parent_space"]) if s.get("parent_space") else None
        if parent is not None and parent not in space_ids:
            notes.append(f"spaces[{index}].parent_space: not a space of this building; top level")
            parent = None
        parents[_id(s["id"])] = parent
    for index, s in enumerate(good_spaces):
        seen, at = [_id(s["id"])], parents[_id(s["id"])]
        while at is not None:
            if at in seen:
                raise MappingError([f"spaces[{index}].parent_space: spaces nest in a loop"])
            seen.append(at)
            at = parents[at]

    out_devices = []
    for index, d in enumerate(good_devices):
        inside = []
        for ref in d.get("spaces") or []:
            if _id(ref) in space_ids:
                inside.append(_id(ref))
            else:
                notes.append(f"devices[{index}].spaces: {ref} is not a space of this building")
        out_devices.append(
            {
                "id": _id(d["id"]),
                "name": d["name"],
                "spaces": list(dict.fromkeys(inside)),
                "type": _type_name(d.get("type")),
                "meta": _meta(d.get("meta")),
            }
        )
    result: dict[str, Any] = {
        "id": _id(building["id"]),
        "name": building["name"],
        "timezone": building.get("timezone") or "",
        "spaces": [
            {
                "id": _id(s["id"]),
                "name": s["name"],
                "capacity": s.get("capacity"),
                "parent": parents[_id(s["id"])],
                "meta": _meta(s.get("meta")),
            }
            for s in good_spaces
        ],
        "devices": out_devices,
    }
    if areas is not None:
        result["areas"] = []
        for index, a in enumerate(good_areas):
            ref = a.get("space") or a.get("parent_space")
            if ref and _id(ref) not in space_ids:
                notes.append(f"areas[{index}].space: not a space of this building; none")
                ref = None
            result["areas"].append(
                {
                    "id": _id(a["id"]),
                    "name": a["name"],
                    "space": _id(ref) if ref else None,
                    "capacity": a.get("capacity"),
                }
            )
    return Mapped(result, notes)
