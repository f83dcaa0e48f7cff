"""What pages read from the database besides live state: summaries, trends, history."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime, time, timedelta, tzinfo
from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import Count
from django.http import QueryDict
from django.utils import timezone

from dashboard import models
from dashboard.live import fragments, rollups
from dashboard.live.buildings import BuildingInventory, Entity
from dashboard.live.state import HeadcountValue
from dashboard.live.store import OPEN_STATES

TREND_BUCKET = rollups.MINUTE  # seconds per point of the day's headcount chart
HISTORY_HOURS = 24
HISTORY_ROWS = 20  # per meta name on the device page
DEVICES_PER_PAGE = 100  # on a building's page
CARDS_PER_PAGE = 100  # headcount cards of spaces, and of areas, on a building's page
TREND_SPACES = 8  # a line each on the building's chart (trend.js has as many colours)


def summaries(buildings: list[models.Building]) -> list[dict[str, Any]]:
    """Overview lines of these buildings, from the last values written."""
    ids = [b.id for b in buildings]
    counts = {
        row.building_id: row
        for row in models.LatestHeadcount.objects.filter(
            building_id__in=ids, scope=models.Scope.BUILDING, kind="head_count"
        )
    }
    alarms: dict[tuple[uuid.UUID, str], int] = {
        (building_id, state): n
        for building_id, state, n in models.FaultAlarm.objects.filter(
            building_id__in=ids, state__in=OPEN_STATES
        )
        .values("building_id", "state")
        .annotate(n=Count("id"))
        .values_list("building_id", "state", "n")
    }
    lines = []
    for building in buildings:
        row = counts.get(building.id)
        head_count = (
            HeadcountValue("building", building.id, "head_count", row.value, row.received_at)
            if row
            else None
        )
        unacknowledged = alarms.get((building.id, models.FaultAlarm.OPEN), 0)
        acknowledged = alarms.get((building.id, models.FaultAlarm.ACKNOWLEDGED), 0)
        lines.append(
            fragments.summary_card(
                Entity(building.id, building.name),
                head_count,
                unacknowledged + acknowledged,
                None,
                unacknowledged,
                building.zone,
            )
        )
    return lines


def device_table(
    inventory: BuildingInventory, space: str, text: str, params: QueryDict
) -> dict[str, Any]:
    """The building's devices by name, with their spaces, filtered by the page's filters.

    Filtering by a space keeps the devices in it or in any space inside it (a floor's rooms);
    a device in several spaces is kept by each of them.

    Up to ``DEVICES_PER_PAGE`` devices, every row is in the page, the filtered-out ones
    hidden, so live.js filters as one types. A larger building's matching rows come a page
    at a time: rendering every row's values made a 1,000-device page take 350 ms, and
    pages of a 10,000-device one seconds (docs/benchmarks.md, "Render").
    """
    rows = []
    needle = text.casefold()
    wanted = _space_and_inner(inventory, space)
    for device in sorted(inventory.devices.values(), key=lambda d: d.name.casefold()):
        spaces = [inventory.spaces[s] for s in inventory.spaces_of(device) if s in inventory.spaces]
        # live.js filters by these ids: each space the device is in, and every one around it.
        around = {a for s in spaces for a in _around(inventory, s.id)}
        shown = (wanted is None or bool(around & wanted)) and not (
            needle and needle not in device.name.casefold()
        )
        rows.append(
            {
                "device": device,
                "spaces": spaces,
                "filter_ids": " ".join(sorted(s.hex for s in around)),
                "shown": shown,
            }
        )
    if len(rows) <= DEVICES_PER_PAGE:
        return {"rows": rows, "paged": False}
    return paginate([row for row in rows if row["shown"]], DEVICES_PER_PAGE, params, "page")


def _space_and_inner(inventory: BuildingInventory, space: str) -> set[uuid.UUID] | None:
    # None: no space filter; an unknown space matches nothing, as it did before nesting.
    if not space:
        return None
    chosen = next((s for s in inventory.spaces if s.hex == space), None)
    return inventory.within(chosen) if chosen else set()


def _around(inventory: BuildingInventory, space_id: uuid.UUID) -> list[uuid.UUID]:
    """``space_id`` and the spaces it is inside, innermost first."""
    chain = [space_id]
    parent = inventory.spaces[space_id].space_id
    while parent in inventory.spaces and parent not in chain:
        chain.append(parent)
        parent = inventory.spaces[parent].space_id
    return chain


def space_groups(rows: list[tuple[Entity, int]]) -> list[dict[str, Any]]:
    """A page of (space, depth) rows in the hierarchy's order, as the page groups their cards:
    a space holding others (a floor) heads a group of every space inside it (its rooms); the
    spaces around them holding none share a plain group. A page starting inside a floor
    starts with a group of its rooms, headless."""
    groups: list[dict[str, Any]] = []

    def plain_only() -> bool:
        return bool(groups) and groups[-1]["head"] is None and not groups[-1]["inner"]

    for n, (space, depth) in enumerate(rows):
        if depth == 0 and n + 1 < len(rows) and rows[n + 1][1] > 0:
            groups.append({"head": space, "inner": [], "plain": []})
        elif depth == 0:
            if not plain_only():
                groups.append({"head": None, "inner": [], "plain": []})
            groups[-1]["plain"].append(space)
        else:
            if not groups or plain_only():
                groups.append({"head": None, "inner": [], "plain": []})
            groups[-1]["inner"].append({"space": space, "depth": depth})
    return groups


def cards(entities: list[Any], params: QueryDict, param: str) -> dict[str, Any]:
    """Headcount cards of spaces or areas: all of them, or a page of ``CARDS_PER_PAGE``."""
    if len(entities) <= CARDS_PER_PAGE:
        return {"rows": entities, "paged": False}
    return paginate(entities, CARDS_PER_PAGE, params, param)


def paginate(items: list[Any], per_page: int, params: QueryDict, param: str) -> dict[str, Any]:
    """The page of ``items`` that query parameter ``param`` asks for; the pager's links keep
    the page's other parameters (filters, and where the other lists of the page are)."""
    page = Paginator(items, per_page).get_page(params.get(param))
    others = params.copy()
    others.pop(param, None)
    return {"rows": page.object_list, "paged": True, "page": page, **pager(page, others, param)}


def pager(page: Page, query: QueryDict, param: str = "page") -> dict[str, Any]:
    """What dashboard/pagination.html needs: the page, and the query of each neighbour page
    (``query`` with ``param`` last, as ``{% querystring %}`` then writes it)."""

    def at(number: int) -> QueryDict:
        moved = query.copy()
        moved.pop(param, None)
        moved[param] = str(number)
        return moved

    return {
        "page": page,
        "previous_query": at(page.previous_page_number()) if page.has_previous() else None,
        "next_query": at(page.next_page_number()) if page.has_next() else None,
    }


def headcount_trend(inventory: BuildingInventory, now: datetime | None = None) -> dict[str, Any]:
    """Today's head_count of the building and each space, one point per minute (uPlot's shape).

    Above ``TREND_SPACES`` spaces only the building's: a line per space of a large building
    is unreadable, and its day of samples would be megabytes in the page.
    """
    # The building's midnight, not the server's: "today" is the building's day.
    now = timezone.localtime(now or timezone.now(), inventory.zone)
    midnight = datetime.combine(now.date(), time.min, inventory.zone)
    spaces = sorted(inventory.spaces.values(), key=lambda s: s.name)
    if len(spaces) > TREND_SPACES:
        spaces = []
    series = [Entity(inventory.id, inventory.name), *spaces]
    index = {entity.id: n for n, entity in enumerate(series)}
    buckets: dict[int, list[int | None]] = defaultdict(lambda: [None] * len(series))
    # The history writer's minute rollups, never the raw samples: a day's chart reads at most
    # 1,440 rows a line, however much history is kept.
    minutes = models.OccupancyMinute.objects.filter(
        building_id=inventory.id,
        bucket__gte=midnight,
        entity_id__in=list(index),
        count_last__isnull=False,
    )
    for entity_id, value, bucket in minutes.values_list("entity_id", "count_last", "bucket"):
        buckets[int(bucket.timestamp())][index[entity_id]] = value  # the minute's last count
    xs = sorted(buckets)
    return {
        "series": [{"id": entity.id.hex, "name": entity.name} for entity in series],
        "bucket": TREND_BUCKET,
        # trend.js draws the axis on this clock (uPlot's tzDate), whatever the viewer's zone.
        "zone": inventory.zone.key,
        "since": int(midnight.timestamp()),
        "data": [xs, *([buckets[x][n] for x in xs] for n in range(len(series)))],
    }


def meta_history(device_id: uuid.UUID, now: datetime | None = None) -> list[dict[str, Any]]:
    """The device's recent values per meta name, newest first, formatted as the page shows."""
    since = (now or timezone.now()) - timedelta(hours=HISTORY_HOURS)
    by_name: dict[str, list[tuple[datetime, Any]]] = defaultdict(list)
    samples = models.MetaSample.objects.filter(device_id=device_id, received_at__gte=since)
    for name, value, received_at in samples.order_by("-received_at").values_list(
        "name", "value", "received_at"
    )[:2000]:
        if len(by_name[name]) < HISTORY_ROWS:
            by_name[name].append((received_at, value))
    return [
        {
            "name": name,
            "label": fragments.display_label(name),
            "points": [
                {"at": at, "text": fragments.format_meta(name, value), "value": value}
                for at, value in points
            ],
        }
        for name, points in sorted(by_name.items())
    ]


PICKER_ABOVE = 12  # spaces: up to this many, a form on each card's control; above, one picker
PICKER_MATCHES = 50  # search results listed at once; the rest wait for a narrower search


def space_picker(inventory: BuildingInventory, query: str, picked: list[str]) -> dict[str, Any]:
    """The one action form's space picker: the spaces chosen so far, and those whose name,
    or the name of a space they are inside (a floor), contains ``query``; each with its path
    (its names outermost first: Level 3, Boardroom)."""
    chosen_ids = []
    for raw in picked:
        try:
            space_id = uuid.UUID(raw)
        except ValueError:
            continue
        if space_id in inventory.spaces and space_id not in chosen_ids:
            chosen_ids.append(space_id)

    def row(space_id: uuid.UUID) -> dict[str, Any]:
        names = [inventory.spaces[s].name for s in reversed(_around(inventory, space_id))]
        return {"id": space_id.hex, "name": names[-1], "path": names}

    needle = query.strip().casefold()
    matches = [
        row(space.id)
        for space, _ in inventory.space_tree()
        if space.id not in chosen_ids
        and (
            not needle
            or any(
                needle in inventory.spaces[s].name.casefold() for s in _around(inventory, space.id)
            )
        )
    ]
    return {
        "query": query.strip(),
        "chosen": [row(s) for s in chosen_ids],
        "matches": matches[:PICKER_MATCHES],
        "found": len(matches),
        "more": max(0, len(matches) - PICKER_MATCHES),
    }


CHART_DAYS = 30  # the longest of a device page's chart ranges
CHART_RANGES = [("24h", "24 h"), ("7d", "7 d"), ("30d", "30 d")]  # meta_charts.js knows them
TIMELINE_ROWS = 5_000  # raw samples read for a device's state timelines, newest first


def meta_charts(device_id: uuid.UUID, zone: tzinfo, now: datetime | None = None) -> dict[str, Any]:
    """Each numeric meta of the device as its charts draw it (meta_charts.js): the last 24 h
    from the minute rollups, 30 days from the hour rollups; [x, min, mean, max] columns.

    Never raw samples: a month of a chatty sensor is 720 hour rows a name.
    """
    now = now or timezone.now()
    # Each name's rows by the (device, name, bucket) index, not all the device's rows.
    known = _meta_names(device_id)
    names: dict[str, dict[str, Any]] = {}
    tiers = (
        ("minute", models.MetaMinute, now - timedelta(hours=HISTORY_HOURS)),
        ("hour", models.MetaHour, now - timedelta(days=CHART_DAYS)),
    )
    for tier, model, since in tiers:
        rows = model.objects.filter(
            device_id=device_id, name__in=known, bucket__gte=since
        ).order_by("bucket")
        for name, bucket, low, total, n, high in rows.values_list(
            "name", "bucket", "value_min", "value_sum", "value_n", "value_max"
        ):
            chart = names.setdefault(name, {"minute": [[], [], [], []], "hour": [[], [], [], []]})
            for column, value in zip(
                chart[tier], (int(bucket.timestamp()), low, total / n, high), strict=True
            ):
                column.append(value)
    units = {name: unit for name, unit in known.items() if name in names}
    return {
        "zone": getattr(zone, "key", "UTC"),
        "now": int(now.timestamp()),
        "charts": [
            {
                "name": name,
                "dom": _dom_id(name),
                "label": fragments.display_label(name),
                "unit": units.get(name, ""),
                **tiers_of,
            }
            for name, tiers_of in sorted(names.items())
        ],
    }


def _meta_names(device_id: uuid.UUID) -> dict[str, str]:
    """Every meta name the device has sent (its latest values), with its unit."""
    return dict(models.LatestMeta.objects.filter(device_id=device_id).values_list("name", "unit"))


def _dom_id(name: str) -> str:
    return "chart-" + "".join(c if c.isalnum() else "-" for c in name)


def state_timelines(
    device_id: uuid.UUID, numeric_names: set[str], now: datetime | None = None
) -> list[dict[str, Any]]:
    """The device's on/off and other enumerated meta over the last 24 h, as runs of one state.

    Read from the raw samples (kept HISTORY_RETENTION_DAYS, longer than this window): a state
    has no mean to roll up. Each run is placed in percent of the window for the template's
    SVG (the page's CSP allows no inline styles).
    """
    now = now or timezone.now()
    since = now - timedelta(hours=HISTORY_HOURS)
    window = (now - since).total_seconds()
    samples = (
        models.MetaSample.objects.filter(
            device_id=device_id,
            name__in=[name for name in _meta_names(device_id) if name not in numeric_names],
            received_at__gte=since,
        )
        .order_by("-received_at")
        .values_list("name", "value", "received_at")[:TIMELINE_ROWS]
    )
    by_name: dict[str, list[tuple[datetime, Any]]] = defaultdict(list)
    for name, value, at in reversed(samples):
        if rollups.numeric(value) is not None:
            continue  # a number among states (say, a glitch): the chart's, not a state
        if not by_name[name] or by_name[name][-1][1] != value:
            by_name[name].append((at, value))
    timelines = []
    for name, changes in sorted(by_name.items()):
        states: dict[str, str] = {}  # text: its colour's class, in order of first seen
        runs = []
        for n, (start, value) in enumerate(changes):
            end = changes[n + 1][0] if n + 1 < len(changes) else now
            text = fragments.format_meta(name, value)
            state = states.setdefault(text, _state_class(value, len(states)))
            runs.append(
                {
                    "start": start,
                    "end": end,
                    "text": text,
                    "state": state,
                    "x": round((start - since).total_seconds() / window * 100, 3),
                    "width": round(max((end - start).total_seconds(), 0) / window * 100, 3),
                }
            )
        timelines.append(
            {
                "name": name,
                "label": fragments.display_label(name),
                "runs": runs,
                "states": [{"text": t, "state": c} for t, c in states.items()],
            }
        )
    return timelines


def _state_class(value: Any, index: int) -> str:
    if value is True or value in ("on", "ON", "On"):
        return "state-on"
    if value is False or value in ("off", "OFF", "Off"):
        return "state-off"
    return f"state-{index % 6}"  # dashboard.css has six colours for other enumerations
