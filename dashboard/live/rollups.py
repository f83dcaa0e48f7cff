"""Per-minute and per-hour rollups of headcounts and numeric device meta.

The history writer aggregates each batch here, in Python, then merges the buckets into the
rollup tables with one upsert per table (min of mins, max of maxes, sums and counts added, the
last reading kept, in/out increments added). Pages read these rows, never raw samples, so a
chart costs the same with a day or a month of history kept. The 0009 migration backfills the
tables from the raw samples through the same functions, in chunks, as if they had just arrived.
After the hour rows, the batch's places' day rows (the occupancy report's) are made again from
them, in the same transaction (``occupancy_days``).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from django.db import connection
from django.db.models import Model, OuterRef, Subquery

from dashboard.live import columns, occupancy_days

MINUTE = 60
HOUR = 3600
WIDTHS = (MINUTE, HOUR)  # seconds per bucket: the minute tier, the hour tier
COUNT, IN, OUT = "head_count", "headcount_in", "headcount_out"
KINDS = (COUNT, IN, OUT)

# (building id, scope, entity id, kind, value, received at): a HeadcountSample's columns.
HeadcountReading = tuple[uuid.UUID, str, uuid.UUID, str, int, datetime]
# (device id, name, value, received at): a MetaSample's columns.
MetaReading = tuple[uuid.UUID, str, Any, datetime]
# The in/out counters' last readings, by (entity id, kind): where the next increment starts.
Counters = dict[tuple[uuid.UUID, str], int]


@dataclass(slots=True)
class Occupancy:
    """One place's headcounts over one bucket (the columns of OccupancyMinute/Hour)."""

    building_id: uuid.UUID
    scope: str
    entity_id: uuid.UUID
    bucket: datetime
    count_min: int | None = None
    count_max: int | None = None
    count_sum: int = 0
    count_n: int = 0
    count_last: int | None = None
    count_max_at: datetime | None = None
    in_increment: int = 0
    out_increment: int = 0
    # The counters as of the bucket's end (carried from before when they did not move in
    # it), so the latest row of a place is where its next increments start.
    in_last: int | None = None
    out_last: int | None = None

    def add_count(self, value: int, at: datetime) -> None:
        if self.count_max is None or value > self.count_max:
            self.count_max, self.count_max_at = value, at
        if self.count_min is None or value < self.count_min:
            self.count_min = value
        self.count_sum += value
        self.count_n += 1
        self.count_last = value


@dataclass(slots=True)
class MetaBucket:
    """One numeric meta of one device over one bucket (the columns of MetaMinute/Hour)."""

    device_id: uuid.UUID
    name: str
    bucket: datetime
    value_min: float
    value_max: float
    value_sum: float
    value_n: int
    value_last: float

    def add(self, value: float) -> None:
        self.value_min = min(self.value_min, value)
        self.value_max = max(self.value_max, value)
        self.value_sum += value
        self.value_n += 1
        self.value_last = value


def _start(second: int, width: int) -> datetime:
    """The UTC start of the ``width``-second bucket holding ``second`` (a Unix time)."""
    return datetime.fromtimestamp(second // width * width, UTC)


def rise(previous: int | None, value: int) -> int:
    """A cumulative counter's increment since its previous reading.

    A counter that fell was reset and counts from 0; a first reading (nothing before it)
    is where counting starts, not a rise of its whole value.
    """
    if previous is None:
        return 0
    return value - previous if value >= previous else value


def numeric(value: Any) -> float | None:
    """The value as a float if it is a finite int or float; bools are states, not numbers."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int past a float's range
        return None
    return number if math.isfinite(number) else None


def occupancy_buckets(
    readings: Iterable[HeadcountReading], counters: Counters
) -> dict[int, list[Occupancy]]:
    """The readings' buckets per width (MINUTE, HOUR).

    ``counters`` holds each place's in/out readings before these; it is moved on to the last
    ones here, so that chunks of readings chain.
    """
    # Keyed by the bucket's number (seconds // width): a datetime is made for a new row only.
    tiers: dict[int, dict[tuple[uuid.UUID, int], Occupancy]] = {w: {} for w in WIDTHS}
    # In time order: a batch is in arrival order, a backfill's chunk in (received_at, id).
    for building_id, scope, entity_id, kind, value, at in sorted(readings, key=lambda r: r[5]):
        increment = 0
        if kind in (IN, OUT):
            increment = rise(counters.get((entity_id, kind)), value)
            counters[(entity_id, kind)] = value
        elif kind != COUNT:
            continue
        second = int(at.timestamp())
        for width, buckets in tiers.items():
            row = buckets.get((entity_id, second // width))
            if row is None:
                row = buckets[(entity_id, second // width)] = Occupancy(
                    building_id,
                    scope,
                    entity_id,
                    _start(second, width),
                    in_last=counters.get((entity_id, IN)),
                    out_last=counters.get((entity_id, OUT)),
                )
            if kind == COUNT:
                row.add_count(value, at)
            elif kind == IN:
                row.in_increment += increment
                row.in_last = value
            else:
                row.out_increment += increment
                row.out_last = value
    return {width: list(buckets.values()) for width, buckets in tiers.items()}


def meta_buckets(readings: Iterable[MetaReading]) -> dict[int, list[MetaBucket]]:
    """The numeric readings' buckets per width (MINUTE, HOUR); other values are left out."""
    minutes: dict[tuple[uuid.UUID, str, int], MetaBucket] = {}
    for device_id, name, raw, at in sorted(readings, key=lambda r: r[3]):
        value = numeric(raw)
        if value is None:
            continue
        key = (device_id, name, int(at.timestamp()) // MINUTE)
        row = minutes.get(key)
        if row is None:
            minutes[key] = MetaBucket(
                device_id, name, _start(key[2] * MINUTE, MINUTE), value, value, value, 1, value
            )
        else:
            row.add(value)
    # Each reading is added once, to its minute; the hours merge the minutes, which came in
    # time order (readings sorted, dicts ordered), so a later minute's last is the hour's.
    hours: dict[tuple[uuid.UUID, str, int], MetaBucket] = {}
    for (device_id, name, minute), row in minutes.items():
        key = (device_id, name, minute * MINUTE // HOUR)
        hour = hours.get(key)
        if hour is None:
            hours[key] = MetaBucket(
                device_id,
                name,
                _start(key[2] * HOUR, HOUR),
                row.value_min,
                row.value_max,
                row.value_sum,
                row.value_n,
                row.value_last,
            )
        else:
            hour.value_min = min(hour.value_min, row.value_min)
            hour.value_max = max(hour.value_max, row.value_max)
            hour.value_sum += row.value_sum
            hour.value_n += row.value_n
            hour.value_last = row.value_last
    return {MINUTE: list(minutes.values()), HOUR: list(hours.values())}


# Writing: the model classes are parameters, so the migration passes its historical ones.


@dataclass(frozen=True)
class Tables:
    occupancy_minute: type[Model]
    occupancy_hour: type[Model]
    meta_minute: type[Model]
    meta_hour: type[Model]
    # None before the day rows existed (the 0009 migration's tables): none are made then.
    days: occupancy_days.Tables | None = None


def default_tables() -> Tables:
    from dashboard import models

    return Tables(
        models.OccupancyMinute,
        models.OccupancyHour,
        models.MetaMinute,
        models.MetaHour,
        occupancy_days.default_tables(),
    )


def write(
    headcounts: Sequence[HeadcountReading],
    meta: Sequence[MetaReading],
    tables: Tables | None = None,
) -> int:
    """Merge the readings into the rollup tables; return the bucket rows upserted.

    Call it inside the batch's transaction: a batch that fails is retried whole, and its
    rollups must not have been added once already. Correct under the one history writer
    (the increments start from the rows as they are when the batch is read).
    """
    tables = tables or default_tables()
    written = 0
    if headcounts:
        # Every place of the batch, not only those whose counters moved: a row of counts
        # alone carries its counters' readings on, for the next batch to start from.
        places = {r[2] for r in headcounts}
        by_width = occupancy_buckets(headcounts, counters_of(tables.occupancy_minute, places))
        written += _upsert(
            tables.occupancy_minute, by_width[MINUTE], OCCUPANCY_KEY, OCCUPANCY_MERGE
        )
        written += _upsert(tables.occupancy_hour, by_width[HOUR], OCCUPANCY_KEY, OCCUPANCY_MERGE)
        if tables.days is not None:
            occupancy_days.after_hours(
                ((r.building_id, r.entity_id, r.bucket) for r in by_width[HOUR]),
                tables.days,
            )
    if meta:
        by_width_meta = meta_buckets(meta)
        written += _upsert(tables.meta_minute, by_width_meta[MINUTE], META_KEY, META_MERGE)
        written += _upsert(tables.meta_hour, by_width_meta[HOUR], META_KEY, META_MERGE)
    return written


def counters_of(model: type[Model], places: set[uuid.UUID]) -> Counters:
    """The in/out counters' last readings of these places, from each one's latest row."""
    if not places:
        return {}
    latest = model._default_manager.filter(entity_id=OuterRef("entity_id")).order_by("-bucket")
    rows = model._default_manager.filter(
        entity_id__in=places, bucket=Subquery(latest.values("bucket")[:1])
    ).values_list("entity_id", "in_last", "out_last")
    counters: Counters = {}
    for entity_id, in_last, out_last in rows:
        if in_last is not None:
            counters[(entity_id, IN)] = in_last
        if out_last is not None:
            counters[(entity_id, OUT)] = out_last
    return counters


OCCUPANCY_KEY = ("entity_id", "bucket")
META_KEY = ("device_id", "name", "bucket")


# How each column of a stored row and of the batch's bucket combine, by column.
OCCUPANCY_MERGE = {
    "count_min": "least",
    "count_max": "greatest",
    "count_sum": "add",
    "count_n": "add",
    "count_last": "latest",
    "count_max_at": "max_at",
    "in_increment": "add",
    "out_increment": "add",
    "in_last": "latest",
    "out_last": "latest",
}
META_MERGE = {
    "value_min": "least",
    "value_max": "greatest",
    "value_sum": "add",
    "value_n": "add",
    "value_last": "latest",
}


def _merges(rules: dict[str, str], old: str, new: str) -> dict[str, str]:
    """The SET expressions of ``rules`` for the stored row (old) and the batch's (new).

    Both PostgreSQL and SQLite evaluate every SET expression against the row before the
    update, so ``count_max_at`` compares with the stored maximum, not the merged one.
    """
    # SQLite's two-argument min() and max() are NULL when either is; PostgreSQL has its own
    # names for them. The COALESCEs let a NULL (no count on one side) give way.
    least, greatest = ("LEAST", "GREATEST") if connection.vendor == "postgresql" else ("MIN", "MAX")
    forms = {
        "least": least + "(COALESCE({o}, {n}), COALESCE({n}, {o}))",
        "greatest": greatest + "(COALESCE({o}, {n}), COALESCE({n}, {o}))",
        "add": "{o} + {n}",
        "latest": "COALESCE({n}, {o})",
        # The first time the maximum was seen: a later equal maximum keeps the stored one.
        "max_at": f"CASE WHEN {old}.count_max IS NULL OR {new}.count_max > {old}.count_max"
        " THEN {n} ELSE {o} END",
    }
    return {
        column: forms[rule].format(o=f"{old}.{column}", n=f"{new}.{column}")
        for column, rule in rules.items()
    }


def _upsert(
    model: type[Model],
    rows: Sequence[Occupancy | MetaBucket],
    key: tuple[str, ...],
    rules: dict[str, str],
) -> int:
    """One INSERT … ON CONFLICT DO UPDATE for the rows (``columns.write_rows``).

    The bucket's field names are the tables' column names.
    """
    if not rows:
        return 0
    names = [f.name for f in fields(rows[0])]
    table = connection.ops.quote_name(model._meta.db_table)
    updates = ", ".join(
        f"{column} = {expr}" for column, expr in _merges(rules, table, "excluded").items()
    )
    values = [[getattr(row, name) for name in names] for row in rows]
    columns.write_rows(model, names, values, conflict=key, updates=updates)
    return len(rows)
