"""Rows written by the history writer: one INSERT for a batch's rows (on PostgreSQL one
statement over an array per column, elsewhere executed per row), each column's values adapted
for the driver by a plain function chosen once per column.

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
from typing import Any, cast

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
    ``device_id``); with ``conflict``, ``ON CONFLICT (...) DO UPDATE SET updates`` (which may
    name the stored row by the quoted table and the new one ``excluded``). With ``conflict``,
    no two rows may have the same key: PostgreSQL updates a row at most once a statement.
    A column's values are of one Python type (None aside): psycopg makes one array of them.
    """
    meta = model._meta
    # get_field knows a foreign key by its attname too (building_id, device_id).
    # Concrete columns only, never a reverse relation or a generic foreign key.
    fields = cast("list[Field[Any, Any]]", [meta.get_field(name) for name in names])
    rows = list(rows)
    if not rows:
        return
    # Column by column: map() runs each adapter at C speed over a column, where a tuple
    # built per row called every adapter from Python (a third of the writer's time).
    adapted = [
        list(column) if adapt is _same else list(map(adapt, column))
        for adapt, column in zip(
            [adapter(field) for field in fields],
            zip(*rows, strict=True),
            strict=True,
        )
    ]
    into = f"INSERT INTO {connection.ops.quote_name(meta.db_table)} ({', '.join(names)})"
    on_conflict = (
        f" ON CONFLICT ({', '.join(conflict)}) DO UPDATE SET {updates}" if conflict else ""
    )
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # One statement over an array per column. Executed per row, the statements of
            # a 4,000-value batch cost PostgreSQL's backend 230 ms of CPU (74 ms so), which
            # took a core from the live pages' web process every history interval
            # (docs/benchmarks.md, "2026-12-05, 10:00").
            arrays = ", ".join(f"%s::{_array_type(field)}[]" for field in fields)
            cursor.execute(f"{into} SELECT * FROM unnest({arrays}){on_conflict}", adapted)
        else:
            values = f" VALUES ({', '.join(['%s'] * len(names))})"
            cursor.executemany(into + values + on_conflict, list(zip(*adapted, strict=True)))


def _array_type(field: Field[Any, Any]) -> str:
    """The PostgreSQL type of a column's array: text for a varchar(n) column, whose cast
    would cut longer text short where the INSERT refuses it."""
    kind = str(field.db_type(connection))
    return "text" if kind.startswith("varchar") else kind


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
