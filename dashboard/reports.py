"""Occupancy reports: what the rollup tables say about a building's places over a period.

Plain functions over ``OccupancyDay``, ``OccupancyHour`` and ``OccupancyMinute``, shared by
the page, the CSV export and the e-mailed digest, so the three always agree. The per-place
peak and average are aggregated in the database from day rows (30 a place a month, made from
the hour rows by the history writer: live/occupancy_days.py); the time over capacity of the
few places whose peak went over it is counted from hour rows, or minute rows over a short
period, as are the heatmaps and the chart.

A period is whole local days of the building (``Building.zone``): its bounds are the local
midnights, converted to UTC, so a value received at 03:30 UTC counts on the previous day in
New York. Hour buckets are UTC hours; in a zone offset by half an hour a bucket straddles two
local hours and is placed by its local start.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Count, Q, QuerySet

from dashboard.contract.topics import Kind, Scope
from dashboard.live import occupancy_days
from dashboard.live.integrity import CountersAtZero, HeadcountWarning, check_headcount
from dashboard.live.occupancy_days import local_midnight
from dashboard.models import (
    Area,
    Building,
    LatestHeadcount,
    OccupancyDay,
    OccupancyHour,
    OccupancyMinute,
    Space,
)

HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
# Up to this long a period's chart is drawn from minute rows (2,880 points), and its time over
# capacity counted in minutes; longer ones use hour rows.
MINUTE_SPAN = timedelta(days=2)
BUSIEST = 5  # heatmap cells listed as the busiest hours
HEAT_LEVELS = 5  # shades of the heatmap, 1 (quiet) .. 5 (busiest); 0 = no readings
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True)
class Period:
    """Whole local days ``first`` .. ``last`` (both included) on the building's clock."""

    first: date
    last: date
    zone: ZoneInfo

    @property
    def start(self) -> datetime:
        return local_midnight(self.first, self.zone)

    @property
    def end(self) -> datetime:
        return local_midnight(self.last + timedelta(days=1), self.zone)

    @property
    def days(self) -> list[date]:
        return [self.first + timedelta(days=n) for n in range((self.last - self.first).days + 1)]

    @property
    def short(self) -> bool:
        """Short enough for minute rows."""
        return self.end - self.start <= MINUTE_SPAN

    def day(self, day: date) -> Period:
        return Period(day, day, self.zone)


def last_days(today: date, days: int, zone: ZoneInfo) -> Period:
    """The ``days`` local days ending with ``today``."""
    return Period(today - timedelta(days=days - 1), today, zone)


@dataclass
class Place:
    """The building, a space or an area, with what the report found for it."""

    scope: str
    entity_id: uuid.UUID
    name: str
    capacity: int | None
    peak: int | None = None
    peak_at: datetime | None = None
    average: float | None = None  # mean of the hourly means over opening hours with readings
    open_hours: int = 0  # opening hours with readings
    # Time over capacity, in ``over_unit`` buckets: with a reading over it, and over it at
    # every reading (a lower bound of the time; ``over`` is an upper bound).
    over: int = 0
    over_throughout: int = 0
    over_unit: str = "h"

    def _share(self, value: float | None) -> float | None:
        if value is None or not self.capacity:
            return None
        return 100 * value / self.capacity

    @property
    def peak_pct(self) -> float | None:
        return self._share(self.peak)

    @property
    def average_pct(self) -> float | None:
        return self._share(self.average)


def places_of(building: Building) -> list[Place]:
    """The building, then its spaces, then its areas, each by name."""
    places = [Place(Scope.BUILDING.value, building.id, building.name, None)]
    for model, scope in ((Space, Scope.SPACE), (Area, Scope.AREA)):
        rows = model.objects.filter(building=building).order_by("name", "id")
        places += [
            Place(scope.value, pk, name, capacity)
            for pk, name, capacity in rows.values_list("id", "name", "capacity")
        ]
    return places


def _in_period(rows: QuerySet[Any], period: Period) -> QuerySet[Any]:
    return rows.filter(bucket__gte=period.start, bucket__lt=period.end)


def _fresh(places: list[Place]) -> list[Place]:
    return [Place(p.scope, p.entity_id, p.name, p.capacity) for p in places]


def _fill(place: Place, peak: int | None, open_sum: float | None, open_hours: int | None) -> None:
    """The peak and the average over opening hours (the mean of the hourly means, from the
    days' sums of them and how many there were)."""
    place.peak = peak
    place.open_hours = open_hours or 0
    place.average = open_sum / open_hours if open_sum is not None and open_hours else None


def place_figures(building: Building, period: Period, places: list[Place]) -> list[Place]:
    """Fill in each place's peak, average, utilisation and time over capacity (fresh copies)."""
    places = _fresh(places)
    by_id = {p.entity_id: p for p in places}
    # By the places' ids, not the building: then every column read is in the
    # occupancy_day_report index, and its rows come grouped by place.
    for entity_id, found in occupancy_days.read(list(by_id), period.first, period.last).items():
        place = by_id[entity_id]
        _fill(place, found.peak, found.open_sum, found.open_hours)
        place.peak_at = found.peak_at
    _time_over_capacity(period, places)
    return places


def _each(places: Iterable[Place], period: Period, **more: Any) -> Q:
    """One condition for the places sharing the same values of ``more``, its period inside
    each, so every branch can use the (entity, bucket) indexes.

    Grouped, not one branch a place: 500 branches took longer to build in the ORM than the
    database took to run them, and places of the same capacity or peak are many.
    """
    groups: dict[tuple[tuple[str, Any], ...], list[uuid.UUID]] = defaultdict(list)
    for place in places:
        extra = tuple((name, value(place)) for name, value in more.items())
        groups[extra].append(place.entity_id)
    terms = Q(pk__in=[])
    for extra, ids in groups.items():
        terms |= Q(
            entity_id__in=ids, bucket__gte=period.start, bucket__lt=period.end, **dict(extra)
        )
    return terms


def _time_over_capacity(period: Period, places: list[Place]) -> None:
    """Buckets over capacity, for the places whose peak went over it (few, usually)."""
    over = [p for p in places if p.capacity is not None and (p.peak or 0) > p.capacity]
    model = OccupancyMinute if period.short else OccupancyHour
    unit = "min" if period.short else "h"
    for place in places:
        place.over_unit = unit
    if not over:
        return
    by_id = {p.entity_id: p for p in over}
    # Counted in the database (a month of a crowded place is hundreds of rows): over it at
    # every reading is the minimum over it, which puts the maximum over it too.
    for column, attribute in (("count_max", "over"), ("count_min", "over_throughout")):
        rows = model.objects.filter(_each(over, period, **{f"{column}__gt": lambda p: p.capacity}))
        for row in rows.values("entity_id").annotate(n=Count("entity_id")).order_by():
            setattr(by_id[row["entity_id"]], attribute, row["n"])


@dataclass
class Heatmap:
    """Mean headcount by local weekday and hour: ``rows[weekday][hour]``."""

    place: Place
    rows: list[list[dict[str, Any]]] = field(default_factory=list)
    busiest: list[dict[str, Any]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.busiest


def heatmap(period: Period, place: Place) -> Heatmap:
    """The place's hour-by-weekday means over the period, and its busiest cells."""
    sums: dict[tuple[int, int], list[float]] = defaultdict(lambda: [0.0, 0])
    rows = _in_period(OccupancyHour.objects.filter(entity_id=place.entity_id), period)
    for bucket, total, n in rows.filter(count_n__gt=0).values_list(
        "bucket", "count_sum", "count_n"
    ):
        local = bucket.astimezone(period.zone)
        cell = sums[(local.weekday(), local.hour)]
        cell[0] += total / n
        cell[1] += 1
    means = {key: total / n for key, (total, n) in sums.items()}
    top = max(means.values(), default=0)
    result = Heatmap(place)
    for weekday, name in enumerate(WEEKDAYS):
        row = []
        for hour in range(24):
            mean = means.get((weekday, hour))
            level = 0 if mean is None else 1 + int((HEAT_LEVELS - 1) * mean / top if top else 0)
            # Rounded here, not by template filters: 168 cells, twice each, add up.
            shown = None if mean is None else (round(mean), round(mean, 1))
            row.append(
                {"weekday": name, "hour": hour, "mean": mean, "level": level, "shown": shown}
            )
        result.rows.append(row)
    ranked = sorted(means.items(), key=lambda item: (-item[1], item[0]))[:BUSIEST]
    result.busiest = [
        {"weekday": WEEKDAYS[weekday], "hour": hour, "mean": mean}
        for (weekday, hour), mean in ranked
    ]
    return result


def chart(period: Period, places: list[Place]) -> dict[str, Any]:
    """uPlot data for the places over the period: each place's mean and peak a bucket, from
    minute rows over a short period, hour rows otherwise."""
    model = OccupancyMinute if period.short else OccupancyHour
    step = MINUTE if period.short else HOUR
    columns: dict[tuple[uuid.UUID, str], dict[int, float | None]] = defaultdict(dict)
    for place in places:  # a query each: no id to convert on every row
        rows = _in_period(model.objects.filter(entity_id=place.entity_id), period)
        means, peaks = columns[(place.entity_id, "mean")], columns[(place.entity_id, "peak")]
        for bucket, total, n, peak in rows.values_list(
            "bucket", "count_sum", "count_n", "count_max"
        ):
            x = int(bucket.timestamp())
            means[x] = round(total / n, 2) if n else None
            peaks[x] = peak
    xs = sorted({x for column in columns.values() for x in column})
    series: list[dict[str, str]] = []
    data: list[list[Any]] = [xs]
    for place in places:
        for what in ("mean", "peak"):
            series.append({"name": f"{place.name} ({what})", "what": what})
            values = columns.get((place.entity_id, what), {})
            data.append([values.get(x) for x in xs])
    return {
        "zone": period.zone.key,
        "step": int(step.total_seconds()),
        "since": int(period.start.timestamp()),
        "until": int(period.end.timestamp()),
        "series": series,
        "data": data,
    }


def daily(building: Building, period: Period, places: list[Place]) -> Iterator[tuple[date, Place]]:
    """Each place's figures for each local day of the period, day by day: its day rows as
    they are, read at once."""
    rows = OccupancyDay.objects.filter(
        entity_id__in=[p.entity_id for p in places], day__range=(period.first, period.last)
    )
    found = {
        (entity_id, day): occupancy_days.Figures(peak, peak_at, open_sum, open_hours)
        for entity_id, day, peak, peak_at, open_sum, open_hours in rows.values_list(
            "entity_id", "day", "peak", "peak_at", "open_sum", "open_hours"
        )
    }
    for day in period.days:
        shown = _fresh(places)
        for place in shown:
            row = found.get((place.entity_id, day))
            if row is not None:
                _fill(place, row.peak, row.open_sum, row.open_hours)
                place.peak_at = row.peak_at
        _time_over_capacity(period.day(day), shown)
        for place in shown:
            yield day, place


def hourly(building: Building, period: Period) -> QuerySet[OccupancyHour]:
    """The period's hour rows, hour by hour, for an export."""
    return _in_period(OccupancyHour.objects.filter(building=building), period).order_by(
        "bucket", "scope", "entity_id"
    )


def integrity_warnings(
    building: Building, places: list[Place]
) -> dict[uuid.UUID, HeadcountWarning]:
    """The places whose latest count disagrees with their counters (or is negative, or far
    over capacity), as their live cards show it: one query for the whole building."""
    kinds = (Kind.HEAD_COUNT, Kind.HEADCOUNT_IN, Kind.HEADCOUNT_OUT)
    latest: dict[uuid.UUID, dict[str, int]] = defaultdict(dict)
    at_zero: dict[uuid.UUID, CountersAtZero] = {}
    rows = LatestHeadcount.objects.filter(building=building, kind__in=kinds)
    for entity_id, kind, value, in_at_zero, out_at_zero in rows.values_list(
        "entity_id", "kind", "value", "in_at_zero", "out_at_zero"
    ):
        latest[entity_id][kind] = value
        if in_at_zero is not None or out_at_zero is not None:
            at_zero[entity_id] = CountersAtZero(in_at_zero, out_at_zero)
    found = {}
    for place in places:
        count, counted_in, counted_out = (latest[place.entity_id].get(k) for k in kinds)
        warning = check_headcount(
            count,
            counted_in,
            counted_out,
            place.capacity,
            settings.HEADCOUNT_TOLERANCE,
            at_zero.get(place.entity_id),
        )
        if warning is not None:
            found[place.entity_id] = warning
    return found
