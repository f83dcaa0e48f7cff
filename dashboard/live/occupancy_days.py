"""Per-place, per-local-day occupancy rows (``OccupancyDay``), made from the hour rows.

A day row holds what the occupancy report needs of a place's day on the building's clock:
its peak and when it was first reached, and the sum and number of its hourly means over the
opening hours with readings. A month's report of 500 places then reads 15,000 day rows
instead of 360,000 hour rows (docs/benchmarks.md, scenario 9).

A day row is made again from the day's hour rows (at most 25 a place) each time, never
merged from a batch's readings: readings added to an hour change that hour's mean, and so
its share of the day's sum. One ``INSERT … SELECT`` a building and day does it in the
database. The history writer runs it for the places and days of each batch right after
their hour rows (``rollups.write``), in the same transaction, so the day rows are exactly as
current as the hour rows; the 0013 migration runs it over the hour rows already stored.

What goes stale: the local day an hour falls on follows the building's zone, and the hours
averaged follow its opening hours. When either changes, ``rebuild`` makes the building's day
rows again (signals.py on a save, the inventory import when the Gooee Cloud changes a zone,
``manage.py rebuild_occupancy_days`` by hand). Capacities are not in the rows: utilisation
and time over capacity are worked out when the report is read, so a capacity edit needs
nothing here.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

from django.db import connection, transaction
from django.db.models import Field, Max, Min, Model
from django.db.models.expressions import Col

from dashboard.live import columns

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
CHUNK = 500  # places a statement: with 2 x 25 open hours, under the 999 parameters of SQLite before 3.32


@dataclass(frozen=True)
class Opening:
    """A building's clock and opening hours: what its day rows depend on."""

    zone: ZoneInfo
    days: frozenset[int]
    opens: time
    closes: time

    @classmethod
    def of(cls, building: Any) -> Opening:
        """The building's (a model instance, or a migration's historical one)."""
        from dashboard.models import zone_named

        return cls(
            zone_named(building.timezone),
            frozenset(building.opening_days or []),
            building.opening_time,
            building.closing_time,
        )


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The UTC moment a local day starts (DST-correct: 23 or 25 hours apart on change days)."""
    return datetime.combine(day, time.min, tzinfo=zone).astimezone(UTC)


def local_day(bucket: datetime, zone: ZoneInfo) -> date:
    return bucket.astimezone(zone).date()


def opening_buckets(opening: Opening, start: datetime, end: datetime) -> list[datetime]:
    """The UTC hour buckets from ``start`` to ``end`` that overlap the opening hours.

    Walked hour by hour in UTC and each placed on the local clock, so DST days have their
    true number of open hours; an opening at 08:30 counts the hour from 08:00.
    """
    buckets = []
    bucket = start
    while bucket < end:
        local = bucket.astimezone(opening.zone)
        if local.weekday() in opening.days:
            begins = local.time()
            ends = (local + HOUR).time()
            whole_day_end = ends <= begins  # the hour runs into the next day
            if begins < opening.closes and (whole_day_end or ends > opening.opens):
                buckets.append(bucket)
        bucket += HOUR
    return buckets


@dataclass(frozen=True)
class Tables:
    """The models written and read (parameters, so the migration passes its historical ones)."""

    hour: type[Model]
    day: type[Model]
    building: type[Model]


def default_tables() -> Tables:
    from dashboard import models

    return Tables(models.OccupancyHour, models.OccupancyDay, models.Building)


def after_hours(rows: Iterable[tuple[uuid.UUID, uuid.UUID, datetime]], tables: Tables) -> None:
    """Make again the day rows of these hour rows' places and local days, given as (building
    id, entity id, hour bucket): the writer calls it right after upserting them."""
    by_building: dict[uuid.UUID, list[tuple[uuid.UUID, datetime]]] = defaultdict(list)
    for building_id, entity_id, bucket in rows:
        by_building[building_id].append((entity_id, bucket))
    if not by_building:
        return
    buildings = tables.building._default_manager.filter(pk__in=list(by_building))
    if connection.in_atomic_block and connection.features.has_select_for_update:
        # An opening-hours edit waits for this batch, or this batch for the edit: never a
        # day row made under the old hours after the rebuild that follows the edit.
        buildings = buildings.select_for_update(no_key=True)
    for building in buildings.only(
        "id", "timezone", "opening_days", "opening_time", "closing_time"
    ):
        opening = Opening.of(building)
        places: dict[date, set[uuid.UUID]] = defaultdict(set)
        for entity_id, bucket in by_building[building.pk]:
            places[local_day(bucket, opening.zone)].add(entity_id)
        for day, entities in sorted(places.items()):
            _refresh(building.pk, opening, day, entities, tables)


def refresh_days(
    building_id: uuid.UUID, days: Iterable[date], entities: Collection[uuid.UUID], tables: Tables
) -> None:
    """Make the building's day rows of these local days again, for ``entities`` (every place
    of the building with hour rows), each day in a transaction of its own: a long rebuild
    never holds the history writer up for long."""
    for day in sorted(set(days)):
        with transaction.atomic():
            building = tables.building._default_manager.filter(pk=building_id).first()
            if building is None:
                return
            # Places without hour rows that day (after a zone change) have no row either.
            tables.day._default_manager.filter(building_id=building_id, day=day).delete()
            _refresh(building_id, Opening.of(building), day, entities, tables)


def rebuild(building_id: uuid.UUID, tables: Tables | None = None) -> int:
    """Make all of the building's day rows again from its hour rows; the days made."""
    tables = tables or default_tables()
    building = tables.building._default_manager.filter(pk=building_id).first()
    if building is None:
        return 0
    zone = Opening.of(building).zone
    hours = tables.hour._default_manager.filter(building_id=building_id)
    span = hours.aggregate(first=Min("bucket"), last=Max("bucket"))
    days = tables.day._default_manager.filter(building_id=building_id)
    if span["first"] is None:
        days.delete()
        return 0
    first, last = local_day(span["first"], zone), local_day(span["last"], zone)
    days.exclude(day__range=(first, last)).delete()
    # Its places once (a read of its hours from the building index): then each day reads
    # the (entity, bucket) covering index only, 13 ms a day of 500 places, not 300.
    entities = set(hours.values_list("entity_id", flat=True).distinct())
    wanted = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    refresh_days(building_id, wanted, entities, tables)
    return len(wanted)


def _refresh(
    building_id: uuid.UUID,
    opening: Opening,
    day: date,
    entities: Collection[uuid.UUID],
    tables: Tables,
) -> None:
    """The day's rows of these places from their hour rows, inserted or replacing the stored
    ones: a statement for each CHUNK places (SQLite's bound on a statement's parameters)."""
    ids = sorted(entities)
    for at in range(0, len(ids), CHUNK):
        _refresh_some(building_id, opening, day, ids[at : at + CHUNK], tables)


def _refresh_some(
    building_id: uuid.UUID,
    opening: Opening,
    day: date,
    ids: list[uuid.UUID],
    tables: Tables,
) -> None:
    """One statement for these places.

    The peak's time is the earliest ``count_max_at`` (or hour, when it has none) of the hours
    at the day's peak, as the report took it from the hour rows. Every column it reads is in
    the occupancy_hour_report index (the building is a parameter, not read), so it never
    touches the hour table itself.
    """
    start = local_midnight(day, opening.zone)
    end = local_midnight(day + DAY, opening.zone)
    ops = connection.ops
    quote = ops.quote_name
    hour, day_table = quote(tables.hour._meta.db_table), quote(tables.day._meta.db_table)
    real = "double precision" if connection.vendor == "postgresql" else "REAL"
    stamp = ops.adapt_datetimefield_value
    ident = columns.adapter(cast("Field[Any, Any]", tables.day._meta.get_field("entity_id")))
    open_buckets = opening_buckets(opening, start, end)
    is_open = (
        f"count_n > 0 AND bucket IN ({', '.join(['%s'] * len(open_buckets))})"
        if open_buckets
        else "1 = 0"
    )
    # SQLite needs the WHERE before ON CONFLICT to tell the upsert from a join's ON.
    sql = f"""
        INSERT INTO {day_table}
            (building_id, entity_id, day, peak, peak_at, open_sum, open_hours)
        SELECT %s, g.entity_id, %s, g.peak,
               (SELECT MIN(COALESCE(h.count_max_at, h.bucket)) FROM {hour} h
                WHERE h.entity_id = g.entity_id AND h.bucket >= %s AND h.bucket < %s
                  AND h.count_max = g.peak),
               g.open_sum, g.open_hours
        FROM (SELECT entity_id, MAX(count_max) AS peak,
                     COALESCE(SUM(CASE WHEN {is_open}
                                  THEN CAST(count_sum AS {real}) / count_n END), 0) AS open_sum,
                     COUNT(CASE WHEN {is_open} THEN 1 END) AS open_hours
              FROM {hour}
              WHERE entity_id IN ({", ".join(["%s"] * len(ids))})
                AND bucket >= %s AND bucket < %s
              GROUP BY entity_id) g
        WHERE 1 = 1
        ON CONFLICT (entity_id, day) DO UPDATE SET
            building_id = excluded.building_id, peak = excluded.peak,
            peak_at = excluded.peak_at, open_sum = excluded.open_sum,
            open_hours = excluded.open_hours
    """
    opens = [stamp(b) for b in open_buckets]
    params = [
        ident(building_id),
        ops.adapt_datefield_value(day),
        stamp(start),
        stamp(end),
        *opens,
        *opens,
        *[ident(i) for i in ids],
        stamp(start),
        stamp(end),
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


@dataclass(frozen=True)
class Figures:
    """A place's days over a period, together."""

    peak: int | None
    peak_at: datetime | None  # the earliest of its days at the peak
    open_sum: float
    open_hours: int


def read(
    entities: Collection[uuid.UUID], first: date, last: date, tables: Tables | None = None
) -> dict[uuid.UUID, Figures]:
    """The places' days ``first`` .. ``last`` together, in one statement.

    When the peak was first reached is a subquery of each place's group, not a second
    grouped query with a branch for each distinct peak: building those in the ORM cost
    more than the database took to answer.
    """
    if not entities:
        return {}
    model = (tables or default_tables()).day
    table = connection.ops.quote_name(model._meta.db_table)
    ident = columns.adapter(cast("Field[Any, Any]", model._meta.get_field("entity_id")))
    ids = [ident(i) for i in entities]
    sql = f"""
        SELECT g.entity_id, g.peak,
               (SELECT MIN(d.peak_at) FROM {table} d
                WHERE d.entity_id = g.entity_id AND d.day >= %s AND d.day <= %s
                  AND d.peak = g.peak),
               g.open_sum, g.open_hours
        FROM (SELECT entity_id, MAX(peak) AS peak, SUM(open_sum) AS open_sum,
                     SUM(open_hours) AS open_hours
              FROM {table}
              WHERE entity_id IN ({", ".join(["%s"] * len(ids))}) AND day >= %s AND day <= %s
              GROUP BY entity_id) g
    """
    bounds = [connection.ops.adapt_datefield_value(d) for d in (first, last)]
    entity, at = (
        _converter(cast("Field[Any, Any]", model._meta.get_field(name)))
        for name in ("entity_id", "peak_at")
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*bounds, *ids, *bounds])
        return {
            entity(entity_id): Figures(peak, at(peak_at), open_sum or 0.0, open_hours or 0)
            for entity_id, peak, peak_at, open_sum, open_hours in cursor.fetchall()
        }


def _converter(field: Field[Any, Any]) -> Any:
    """What Django does to this column's values as read (a UUID from SQLite's hex, an aware
    datetime from its text), as its compiler would."""
    column = Col(field.model._meta.db_table, field)
    steps = connection.ops.get_db_converters(column) + field.get_db_converters(connection)

    def convert(value: Any) -> Any:
        for step in steps:
            value = step(value, column, connection)
        return value

    return convert
