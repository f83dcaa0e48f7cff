"""The cloud's device meta definitions (``meta_definitions.json``): how each value is shown and bounded.

``payloads`` checks a value against its definition's JSON Schema (``value_schema``); pages show
values with ``meta_definition`` and ``format_value``. Plain Python: no Django import.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFINITIONS_FILE = Path(__file__).resolve().parent / "meta_definitions.json"

with DEFINITIONS_FILE.open(encoding="utf-8") as _f:
    DEFINITIONS: dict[str, dict[str, Any]] = json.load(_f)["device_meta"]


def to_2020_12(schema: dict[str, Any]) -> dict[str, Any]:
    """A definition's schema in JSON Schema 2020-12, as the validators read it."""
    # One cloud definition (power_factor) is draft 4: "exclusiveMinimum": true beside "minimum".
    schema = dict(schema)
    for exclusive, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(schema.get(exclusive), bool) and schema.pop(exclusive) and bound in schema:
            schema[exclusive] = schema.pop(bound)
    return schema


def value_schema(name: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """A defined meta name's value schema (2020-12) and the context its errors quote, if any."""
    definition = DEFINITIONS.get(name)
    if definition is None or definition.get("json_schema") is None:
        return None
    schema = definition["json_schema"]
    context = {**schema, "title": definition.get("display_name") or name}
    return to_2020_12(schema), context


@dataclass(frozen=True, slots=True)
class MetaDefinition:
    """How the cloud names and shows one device meta value."""

    name: str
    display_name: str
    unit: str | None
    precision: int | None
    value_labels: dict[str, str] | None  # {"true": "On", "false": "Off"} for enum labels


def _make_definition(name: str, entry: dict) -> MetaDefinition:
    labels = entry.get("value_display_name")
    if isinstance(labels, dict) and labels.get("type") == "enum":
        value_labels = {k: v for k, v in labels.items() if k != "type"}
    else:
        value_labels = None  # "range" labels are kept in the JSON but not interpreted here
    return MetaDefinition(
        name=name,
        display_name=entry.get("display_name") or name,
        unit=entry.get("unit_of_measure"),
        precision=entry.get("decimal_precision"),
        value_labels=value_labels,
    )


_META_DEFINITIONS: dict[str, MetaDefinition] = {
    name: _make_definition(name, entry) for name, entry in DEFINITIONS.items()
}


def meta_definition(name: str) -> MetaDefinition | None:
    """The cloud's definition of a device meta name, or None for a name it does not define."""
    return _META_DEFINITIONS.get(name)


def format_value(definition: MetaDefinition | None, value: Any) -> str:
    """A meta value as plain text: numbers at the definition's precision, booleans labelled."""
    if isinstance(value, bool):
        text = "true" if value else "false"
        if definition is not None and definition.value_labels:
            return definition.value_labels.get(text, text)
        return text
    if value is None:
        return ""
    if isinstance(value, int | float):
        precision = definition.precision if definition is not None else None
        try:
            if precision is None or not math.isfinite(value):
                return str(value)
            if isinstance(value, int):  # exact: float() overflows on huge ints
                return str(value) + ("." + "0" * precision if precision > 0 else "")
            text = f"{value:.{precision}f}"
        except (ValueError, OverflowError):  # ints beyond the 4300-digit conversion limit
            return "(number too long)"
        return text[1:] if text.startswith("-") and float(text) == 0 else text
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=repr)
