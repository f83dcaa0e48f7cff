"""What the database driver takes for a column's values, adapted once per column.

The history writer turns thousands of values a batch into rows; Django's
``Field.get_db_prep_save`` per value was half the writer's time (docs/benchmarks.md,
"Ingest"), so each writer asks here once per column for a plain function instead. It covers
the types history and rollups hold: ints, floats, strings, UUIDs, aware datetimes and JSON.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from django.db import connection
from django.db.models import Field, JSONField


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
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r} while time zone support is active")
    return str(value.astimezone(UTC).replace(tzinfo=None))


def _same(value: Any) -> Any:
    return value
