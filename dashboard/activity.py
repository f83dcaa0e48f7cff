"""A building's activity log: every action attempt, as a page and as a CSV export.

Both views read the same filters from the query string (``filter_attempts``). Anything in
an attempt (username, names, payload, reason) may be hostile: the page relies on the
template's autoescaping and the CSV neutralises cells a spreadsheet would run as formulas.
"""

from __future__ import annotations

import csv
import json
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.core.handlers.asgi import ASGIRequest
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, QueryDict, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone

from dashboard.access import building_for
from dashboard.models import ActionAttempt, Building

PER_PAGE = 100
CSV_CHUNK = 2000
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
]


@dataclass
class ActivityFilters:
    """The filters understood from a query string; ``problems`` says what was ignored."""

    user: str = ""
    target: uuid.UUID | None = None
    outcome: str = ""
    date_from: date | None = None
    date_to: date | None = None
    problems: list[str] = field(default_factory=list)

    def query(self) -> str:
        """The query string of the filters applied (bad parameters dropped)."""
        params = {
            "user": self.user,
            "target": str(self.target) if self.target else "",
            "outcome": self.outcome,
            "from": self.date_from.isoformat() if self.date_from else "",
            "to": self.date_to.isoformat() if self.date_to else "",
        }
        return urlencode({name: value for name, value in params.items() if value})


def _parse_date(raw: str, label: str, problems: list[str]) -> date | None:
    if not raw:
        return None
    try:
        value = date.fromisoformat(raw)
    except ValueError:
        problems.append(f"Ignored “{label}”: not a date (use YYYY-MM-DD).")
        return None
    # The first and last representable days cannot be shifted by a time zone or a day.
    if value in (date.min, date.max):
        problems.append(f"Ignored “{label}”: date out of range.")
        return None
    return value


def _local_midnight(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def filter_attempts(
    building: Building, params: QueryDict
) -> tuple[QuerySet[ActionAttempt], ActivityFilters]:
    """This building's attempts narrowed by ``user``, ``target``, ``outcome``, ``from``, ``to``.

    Invalid values are ignored and reported in ``ActivityFilters.problems``, never raised.
    Dates are whole days in the site's time zone, both ends included.
    """
    filters = ActivityFilters()
    attempts = ActionAttempt.objects.filter(building=building)

    user = params.get("user", "").strip()
    if user:
        if len(user) > ActionAttempt._meta.get_field("username").max_length:
            filters.problems.append("Ignored “User”: too long to be a username.")
        elif "\x00" in user:  # no username has one, and PostgreSQL cannot compare it
            filters.problems.append("Ignored “User”: contains a NUL character.")
        else:
            filters.user = user
            attempts = attempts.filter(username=user)

    target = params.get("target", "").strip()
    if target:
        try:
            filters.target = uuid.UUID(target)
        except ValueError:
            filters.problems.append("Ignored “Target”: not a valid target id.")
        else:
            attempts = attempts.filter(target_id=filters.target)

    outcome = params.get("outcome", "").strip()
    if outcome:
        if outcome in OUTCOME_LABELS:
            filters.outcome = outcome
            attempts = attempts.filter(outcome=outcome)
        else:
            filters.problems.append("Ignored “Outcome”: not a known outcome.")

    filters.date_from = _parse_date(params.get("from", "").strip(), "From", filters.problems)
    filters.date_to = _parse_date(params.get("to", "").strip(), "To", filters.problems)
    if filters.date_from:
        attempts = attempts.filter(created_at__gte=_local_midnight(filters.date_from))
    if filters.date_to:
        attempts = attempts.filter(
            created_at__lt=_local_midnight(filters.date_to + timedelta(days=1))
        )
    if filters.date_from and filters.date_to and filters.date_from > filters.date_to:
        filters.problems.append("“From” is after “To”: no attempt can match.")

    return attempts.order_by("-created_at", "-id"), filters


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
    if not summary.type:
        # On a typed topic (.../actions/<type>) the type is in the topic, not the payload.
        parts = topic.rsplit("/", 2)
        if len(parts) == 3 and parts[1] == "actions":
            summary.type = parts[2][:50]
    return summary


def _choices(building: Building, filters: ActivityFilters) -> dict[str, list[tuple[str, str]]]:
    """The users and targets that appear in this building's log, for the filter form."""
    attempts = ActionAttempt.objects.filter(building=building).order_by()
    users = sorted(attempts.values_list("username", flat=True).distinct(), key=str.casefold)
    if filters.user and filters.user not in users:
        users.append(filters.user)  # keep the form truthful about the filter applied
    names: dict[uuid.UUID, set[tuple[str, str]]] = {}
    for target_id, target_type, target_name in (
        attempts.filter(target_id__isnull=False)
        .values_list("target_id", "target_type", "target_name")
        .distinct()
    ):
        names.setdefault(target_id, set()).add((target_name, target_type))
    targets = []
    for target_id, labels in names.items():
        # A renamed target has several names over time: show them all under one id.
        shown = " / ".join(sorted(name or str(target_id) for name, _ in labels))
        kinds = ", ".join(sorted({kind for _, kind in labels if kind}))
        targets.append((str(target_id), f"{shown} ({kinds})" if kinds else shown))
    if filters.target and str(filters.target) not in names:
        targets.append((str(filters.target), str(filters.target)))
    targets.sort(key=lambda choice: choice[1].casefold())
    return {
        "users": [(name, name) for name in users],
        "targets": targets,
        "outcomes": list(ActionAttempt.OUTCOMES),
    }


@login_required
def activity(request: HttpRequest, building_id: uuid.UUID) -> HttpResponse:
    """The building's action attempts, newest first, filterable, 100 a page."""
    # Any role will do: who did what in a building is for everyone who sees it.
    building, _ = building_for(request, building_id)
    attempts, filters = filter_attempts(building, request.GET)
    page = Paginator(attempts, PER_PAGE).get_page(request.GET.get("page"))
    rows = [
        {"attempt": attempt, "action": summarise_payload(attempt.payload, attempt.topic)}
        for attempt in page.object_list
    ]
    query = filters.query()
    return render(
        request,
        "dashboard/activity.html",
        {
            "building": building,
            "filters": filters,
            "choices": _choices(building, filters),
            "page": page,
            "rows": rows,
            "query": query,
            "page_query": f"{query}&" if query else "",
        },
    )


# Spreadsheets run a cell starting with one of these as a formula (CSV injection). A
# leading apostrophe is what spreadsheet users expect: it makes the cell plain text and
# is not shown. Scripts reading the file see the apostrophe; that is the trade-off.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    text = str(value)
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def _csv_row(attempt: ActionAttempt) -> list[str]:
    return [
        _cell(value)
        for value in (
            attempt.created_at,
            attempt.username,
            attempt.building_id,
            attempt.target_type,
            attempt.target_id,
            attempt.target_name,
            attempt.topic,
            attempt.payload,
            attempt.outcome,
            attempt.reason,
            attempt.acknowledged_at,
            attempt.seen_at,
        )
    ]


class _Line:
    """A file-like object whose write() returns the line, for csv.writer in a generator."""

    def write(self, value: str) -> str:
        return value


def _csv_lines(attempts: Iterable[ActionAttempt]) -> Iterator[str]:
    writer = csv.writer(_Line())
    yield writer.writerow(CSV_HEADER)
    for attempt in attempts:
        yield writer.writerow(_csv_row(attempt))


async def _csv_lines_async(attempts: QuerySet[ActionAttempt]) -> AsyncIterator[str]:
    writer = csv.writer(_Line())
    yield writer.writerow(CSV_HEADER)
    async for attempt in attempts.aiterator(chunk_size=CSV_CHUNK):
        yield writer.writerow(_csv_row(attempt))


@login_required
def activity_csv(request: HttpRequest, building_id: uuid.UUID) -> StreamingHttpResponse:
    """Every attempt matching the page's filters, as CSV, streamed row by row."""
    # Any role will do: who did what in a building is for everyone who sees it.
    building, _ = building_for(request, building_id)
    attempts, _ = filter_attempts(building, request.GET)
    # Served by daphne, Django would read a synchronous iterator to the end before sending
    # (and warn); an asynchronous one streams there. The test client and WSGI take this one.
    lines: Iterator[str] | AsyncIterator[str]
    if isinstance(request, ASGIRequest):
        lines = _csv_lines_async(attempts)
    else:
        lines = _csv_lines(attempts.iterator(chunk_size=CSV_CHUNK))
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="activity-{building.id}.csv"'
    return response
