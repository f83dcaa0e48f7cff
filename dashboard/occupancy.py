"""A building's occupancy report: the page, its CSV export, and the digest's contents.

The figures come from ``dashboard.reports``; this module shows them. The page and the
CSV by day round the same way (``figures``), so a day's row of the CSV reads as the page
does for that day. Place names come from the inventory (the Gooee Cloud): the CSV
neutralises spreadsheet formulas in them as every export does.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import date
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string

from dashboard import exports, reports
from dashboard.access import building_for
from dashboard.contract.topics import Scope
from dashboard.filters.occupancy import BY_HOUR, OccupancyFilter
from dashboard.models import Building, OccupancyHour
from dashboard.reports import Period, Place

PLACE_FIELDS = ["place_type", "place_id", "place", "capacity"]
DAY_FIELDS = [
    *PLACE_FIELDS,
    "peak",
    "peak_at",
    "average_open",
    "open_hours",
    "peak_pct",
    "average_pct",
    "over_capacity",
    "over_capacity_throughout",
    "over_capacity_unit",
]
HOUR_FIELDS = [
    *PLACE_FIELDS,
    "count_min",
    "count_max",
    "count_max_at",
    "count_mean",
    "readings",
    "in",
    "out",
]
DIGEST_PLACES = 10  # the busiest places a digest names


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def figures(place: Place) -> dict[str, Any]:
    """A place's figures as the page and the CSV show them (averages and shares to 0.1)."""
    return {
        "place_type": place.scope,
        "place_id": place.entity_id,
        "place": place.name,
        "capacity": place.capacity,
        "peak": place.peak,
        "peak_at": place.peak_at,
        "average_open": _round(place.average),
        "open_hours": place.open_hours,
        "peak_pct": _round(place.peak_pct),
        "average_pct": _round(place.average_pct),
        "over_capacity": place.over if place.capacity is not None else None,
        "over_capacity_throughout": place.over_throughout if place.capacity is not None else None,
        "over_capacity_unit": place.over_unit,
    }


def day_column(period: Period) -> str:
    return f"day ({period.zone.key})"


def day_csv(building: Building, period: Period, places: list[Place]) -> tuple[str, exports.Format]:
    """The CSV of every place and day of the period, and its format."""
    column = day_column(period)
    out = exports.csv_format([column, *DAY_FIELDS])
    records = (
        {column: day.isoformat(), **figures(place)}
        for day, place in reports.daily(building, period, places)
    )
    return exports.text(records, out, period.zone), out


def _hour_record(
    names: dict[uuid.UUID, Place], column: str
) -> Callable[[OccupancyHour], exports.Record]:
    def record(row: OccupancyHour) -> exports.Record:
        place = names.get(row.entity_id)
        mean = row.count_mean
        return {
            column: row.bucket,
            "place_type": row.scope,
            "place_id": row.entity_id,
            "place": place.name if place else "",
            "capacity": place.capacity if place else None,
            "count_min": row.count_min,
            "count_max": row.count_max,
            "count_max_at": row.count_max_at,
            "count_mean": None if mean is None else round(mean, 2),
            "readings": row.count_n,
            "in": row.in_increment,
            "out": row.out_increment,
        }

    return record


def file_name(building: Building, period: Period) -> str:
    return f"occupancy-{building.id}-{period.first.isoformat()}-{period.last.isoformat()}"


@login_required
def occupancy(request: HttpRequest, building_id: uuid.UUID) -> HttpResponse:
    """Per place peak, average, utilisation and time over capacity; heatmaps; the chart."""
    # Every role: how full the building was is for everyone who sees it.
    building, _ = building_for(request, building_id)
    filters = OccupancyFilter(building, request.GET)
    period = filters.period
    places = reports.places_of(building)
    filters.offer_spaces([(str(p.entity_id), p.name) for p in places if p.scope == Scope.SPACE])
    shown = reports.place_figures(building, period, places)
    whole = shown[0]
    chosen = next((p for p in shown if p.entity_id == filters.applied["space"]), None)
    charted = [whole, chosen] if chosen else [whole]
    warnings = reports.integrity_warnings(building, places)
    return render(
        request,
        "dashboard/occupancy.html",
        {
            "building": building,
            "filters": filters,
            "period": period,
            "rows": [
                {"place": p, **figures(p), "warning": warnings.get(p.entity_id)} for p in shown
            ],
            "heatmaps": [reports.heatmap(period, p) for p in charted],
            "chart": reports.chart(period, charted),
            "opening_days": [reports.WEEKDAYS[d] for d in sorted(building.opening_days or [])],
            "hours": range(24),
        },
    )


@login_required
def occupancy_csv(
    request: HttpRequest, building_id: uuid.UUID
) -> HttpResponse | StreamingHttpResponse:
    """The report's period as CSV: a row per place and day, or per place and hour (``by``)."""
    building, _ = building_for(request, building_id)
    filters = OccupancyFilter(building, request.GET)
    period = filters.period
    places = reports.places_of(building)
    name = file_name(building, period)
    if filters.applied["by"] == BY_HOUR:
        column = f"hour ({period.zone.key})"
        out = exports.csv_format([column, *HOUR_FIELDS])
        names = {p.entity_id: p for p in places}
        rows = reports.hourly(building, period)
        return exports.stream(request, rows, _hour_record(names, column), out, name, period.zone)
    body, out = day_csv(building, period, places)
    return exports.attachment(body, out, name)


def digest(building: Building, period: Period) -> tuple[str, str, str]:
    """The e-mailed digest of a period: subject, text, and the CSV by day."""
    places = reports.places_of(building)
    shown = reports.place_figures(building, period, places)
    busiest = sorted(
        (p for p in shown[1:] if p.peak is not None), key=lambda p: (-(p.peak or 0), p.name)
    )[:DIGEST_PLACES]
    context = {
        "building": building,
        "period": period,
        "whole": figures(shown[0]),
        "busiest": [figures(p) for p in busiest],
        "over": [figures(p) for p in shown if p.over],
        "heatmap": reports.heatmap(period, shown[0]),
    }
    subject = f"Occupancy of {building.name}, {_days(period.first, period.last)}"
    text = render_to_string("dashboard/occupancy_digest.txt", context)
    body, _ = day_csv(building, period, places)
    return subject, text, body


def _days(first: date, last: date) -> str:
    return first.isoformat() if first == last else f"{first.isoformat()} to {last.isoformat()}"
