"""A building's activity log: every action attempt, as a page and as a CSV export.

Both views read the same filters from the query string (``filters.ActivityFilter``). Anything in
an attempt (username, names, payload, reason) may be hostile: the page relies on the
template's autoescaping and the CSV neutralises cells a spreadsheet would run as formulas.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone

from dashboard import exports, page_data
from dashboard.access import building_for
from dashboard.filters import ActivityFilter
from dashboard.live.confirmation import across_spaces
from dashboard.models import ActionAttempt

PER_PAGE = 100
# Payloads are what we published ourselves, but the column is plain text: don't parse a
# huge one just to summarise it.
MAX_PARSED_PAYLOAD = 64 * 1024
OUTCOME_LABELS = dict(ActionAttempt.OUTCOMES)
CSV_HEADER = [
    "created_at",
    "username",
    "building_id",
    "target_type",
    "target_id",
    "target_name",
    "topic",
    "payload",
    "outcome",
    "reason",
    "acknowledged_at",
    "seen_at",
    "confirmation",
    "not_followed",
    "followed_late",
]


RESET_TYPE = "reset count"


@dataclass
class ActionSummary:
    """What an attempt asked for, as far as its payload can be read."""

    type: str = ""
    level: float | None = None
    transition_time: float | None = None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def summarise_payload(payload: str, topic: str = "") -> ActionSummary:
    """Type, level and transition time of an action payload; blanks for whatever is missing."""
    summary = ActionSummary()
    data: Any = None
    if payload and len(payload) <= MAX_PARSED_PAYLOAD:
        try:
            data = json.loads(payload)
        except (ValueError, RecursionError):
            data = None
    if isinstance(data, dict):
        if isinstance(data.get("type"), str):
            summary.type = data["type"][:50]
        value = data.get("value")
        if isinstance(value, dict):
            summary.level = _number(value.get("level"))
            summary.transition_time = _number(value.get("transition_time"))
    if not summary.type and topic.endswith("/meta/head_count"):
        summary.type = RESET_TYPE  # {"name": "headcount", "value": 0}: a count set to 0
    if not summary.type:
        # On a typed topic (.../actions/<type>) the type is in the topic, not the payload.
        parts = topic.rsplit("/", 2)
        if len(parts) == 3 and parts[1] == "actions":
            summary.type = parts[2][:50]
    return summary


@login_required
def activity(request: HttpRequest, building_id: uuid.UUID) -> HttpResponse:
    """The building's action attempts, newest first, filterable, 100 a page."""
    # Any role will do: who did what in a building is for everyone who sees it.
    building, _ = building_for(request, building_id)
    filters = ActivityFilter(building, request.GET)
    filters.offer_choices()
    page = Paginator(filters.attempts(), PER_PAGE).get_page(request.GET.get("page"))
    totals = batch_totals(building.id, [a.batch for a in page.object_list if a.batch])
    rows = [
        {
            "attempt": attempt,
            "action": summarise_payload(attempt.payload, attempt.topic),
            "confirmation": attempt.confirmation_text(),
            "batch": totals.get(attempt.batch) if attempt.batch else None,
        }
        for attempt in page.object_list
    ]
    return render(
        request,
        "dashboard/activity.html",
        {
            "building": building,
            "filters": filters,
            **page_data.pager(page, filters.query),
            "rows": rows,
        },
    )


def last_batch(building_id: uuid.UUID, username: str, within: timedelta) -> dict[str, Any] | None:
    """The person's latest action on several spaces of the building, in total, if it was sent
    within ``within``: what the building page shows again after a reload, kept live."""
    since = timezone.now() - within
    batch = (
        ActionAttempt.objects.filter(
            building_id=building_id, username=username, batch__isnull=False, created_at__gte=since
        )
        .order_by("-id")
        .values_list("batch", flat=True)
        .first()
    )
    if batch is None:
        return None
    total = batch_totals(building_id, [batch]).get(batch)
    return None if total is None else {"id": batch.hex, **total}


def batch_totals(building_id: uuid.UUID, batches: list[uuid.UUID]) -> dict[uuid.UUID, Any]:
    """Each action sent to several spaces, in total over its spaces (one query a page)."""
    members: dict[uuid.UUID, list[tuple[str, str]]] = defaultdict(list)
    rows = ActionAttempt.objects.filter(
        building_id=building_id, batch__in=set(batches), target_type="space"
    ).exclude(outcome=ActionAttempt.REFUSED)
    for batch, name, state in rows.order_by("id").values_list(
        "batch", "target_name", "confirmation"
    ):
        if batch is not None:
            members[batch].append((name, state))
    totals = {}
    for batch, spaces in members.items():
        if len(spaces) > 1:
            totals[batch] = {"spaces": len(spaces), **across_spaces(spaces, len(spaces))}
    return totals


CSV = exports.csv_format(CSV_HEADER)


CONFIRMATION_COLUMNS = ("confirmation", "not_followed", "followed_late")


def _record(attempt: ActionAttempt) -> exports.Record:
    record = {name: getattr(attempt, name) for name in CSV_HEADER[: -len(CONFIRMATION_COLUMNS)]}
    shown = attempt.confirmation_text()
    record["confirmation"] = shown["text"] if shown else ""
    record["not_followed"] = "; ".join(shown["missing"]) if shown else ""
    record["followed_late"] = "; ".join(shown["late"]) if shown else ""
    return record


@login_required
def activity_csv(request: HttpRequest, building_id: uuid.UUID) -> StreamingHttpResponse:
    """Every attempt matching the page's filters, as CSV, streamed row by row."""
    building, _ = building_for(request, building_id)
    attempts = ActivityFilter(building, request.GET).attempts()
    return exports.stream(request, attempts, _record, CSV, f"activity-{building.id}", building.zone)
