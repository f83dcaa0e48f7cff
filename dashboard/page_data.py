"""What pages read from the database besides live state: summaries, trends, history."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime, time, timedelta
from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import Count
from django.http import QueryDict
from django.utils import timezone

from dashboard import models
from dashboard.live import fragments
from dashboard.live.buildings import BuildingInventory, Entity
from dashboard.live.state import HeadcountValue
from dashboard.live.store import OPEN_STATES

TREND_BUCKET = 60  # seconds per point of the day's headcount chart
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
    samples = models.HeadcountSample.objects.filter(
        building_id=inventory.id,
        kind="head_count",
        entity_id__in=list(index),
        received_at__gte=midnight,
    ).order_by("received_at")
    for entity_id, value, received_at in samples.values_list("entity_id", "value", "received_at"):
        bucket = int(received_at.timestamp()) // TREND_BUCKET * TREND_BUCKET
        buckets[bucket][index[entity_id]] = value  # the last sample of the minute wins
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
