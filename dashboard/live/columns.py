"""Rows written by the history writer: one INSERT executed for a batch's rows, each column's
values adapted for the driver by a plain function chosen once per column.

The history writer turns thousands of values a batch into rows; Django's
``Field.get_db_prep_save`` per value was half the writer's time, and ``bulk_create`` builds
a model instance and compiles SQL per row (docs/benchmarks.md, "Ingest"). The adapters cover
the types history and rollups hold: ints, floats, strings, bools, UUIDs, aware datetimes and
JSON. Column names are the models' plain lower-case ones, written unquoted.
"""

from __future__ import annotations

import functools
import json
import math
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from django.db import connection
from django.db.models import Field, JSONField, Model


def write_rows(
    model: type[Model],
    names: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    conflict: Sequence[str] = (),
    updates: str = "",
) -> None:
    """INSERT ``rows`` (values in the order of ``names``, fields or their attnames such as
    ``device_id``) with one executemany; with ``conflict``, ``ON CONFLICT (...) DO UPDATE SET
    updates`` (which may name the stored row by the quoted table and the new one ``excluded``).
    """
    meta = model._meta
    # get_field knows a foreign key by its attname too (building_id, device_id).
    adapters = [adapter(meta.get_field(name)) for name in names]  # type: ignore[arg-type]
    sql = (
        f"INSERT INTO {connection.ops.quote_name(meta.db_table)} ({', '.join(names)})"
        f" VALUES ({', '.join(['%s'] * len(names))})"
    )
    if conflict:
        sql += f" ON CONFLICT ({', '.join(conflict)}) DO UPDATE SET {updates}"
    rows = list(rows)
    if not rows:
        return
    # Column by column: map() runs each adapter at C speed over a column, where a tuple
    # built per row called every adapter from Python (a third of the writer's time).
    adapted = [
        column if adapt is _same else list(map(adapt, column))
        for adapt, column in zip(adapters, zip(*rows, strict=True), strict=True)
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, list(zip(*adapted, strict=True)))


def replacing(names: Iterable[str]) -> str:
    """The SET clause of an upsert that replaces these columns with the new row's."""
    return ", ".join(f"{name} = excluded.{name}" for name in names)


def adapter(field: Field[Any, Any]) -> Callable[[Any], Any]:
    """A function giving the driver's value for ``field`` from a Python value (None stays)."""
    target = field.target_field if field.is_relation else field  # type: ignore[attr-defined]
    kind = target.get_internal_type()
    if kind == "UUIDField" and not connection.features.has_native_uuid_field:
        return _hex
    if kind == "DateTimeField":
        if connection.vendor == "sqlite" and connection.timezone == UTC:
            return _sqlite_utc
        adapt = connection.ops.adapt_datetimefield_value
        return lambda value: None if value is None else adapt(value)
    if isinstance(target, JSONField):
        # None is SQL NULL, as JSONField.get_db_prep_save has it.
        adapt_json, encoder = connection.ops.adapt_json_value, target.encoder
        if connection.vendor == "sqlite" and encoder is None:
            return _sqlite_json
        return lambda value: None if value is None else adapt_json(value, encoder)
    return _same


# A batch names the same few hundred devices and places thousands of times; UUID.hex is
# Python code, the cache's lookup is not.
@functools.lru_cache(maxsize=16384)
def _hex(value: uuid.UUID | None) -> str | None:
    return None if value is None else value.hex


def _sqlite_utc(value: datetime | None) -> str | None:
    """As Django stores an aware datetime in SQLite: naive UTC text, a space before the time
    (``adapt_datetimefield_value`` without its per-value settings lookups)."""
    if value is None:
        return None
    if value.tzinfo is UTC:  # what the bridge stamps: the text without its "+00:00"
        return value.isoformat(" ")[:-6]
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r} while time zone support is active")
    return str(value.astimezone(UTC).replace(tzinfo=None))


def _sqlite_json(value: Any) -> str | None:
    """JSON text as ``json.dumps`` writes it; most device values are ints, floats or
    booleans, whose text needs no encoder (a third of the cost per value)."""
    kind = type(value)
    if kind is int:
        return int.__repr__(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is float and math.isfinite(value):
        return float.__repr__(value)
    return None if value is None else json.dumps(value)


def _same(value: Any) -> Any:
    return value
