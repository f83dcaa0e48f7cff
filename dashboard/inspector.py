"""The rejected-payload inspector: what the cloud refused from a building, for support staff.

Three views, all for the building's support role: the inspector page (rejections grouped by
mistake, the filtered list kept live, and what the dashboard itself found malformed), the
export of the filtered rejections as JSON or CSV, and a form that checks a payload against
the dashboard's schemas without publishing it. Everything shown came from MQTT and may be
hostile: templates rely on autoescaping, the CSV neutralises formula cells.
"""

from __future__ import annotations

import csv
import json
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.handlers.asgi import ASGIRequest
from django.core.paginator import Paginator
from django.db.models import Count, Max, Min, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, QueryDict, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone

from dashboard.access import building_for
from dashboard.contract import payloads, rejections
from dashboard.contract.topics import CATALOGUE, Kind
from dashboard.live.state import ConnectionStatus
from dashboard.models import Building, Device, MalformedPayload, RejectedPayload, Role

PER_PAGE = 50  # entries on a page; the first page is also the live list's start
SHOWN_GROUPS = 50
NAMES_PER_GROUP = 10
SHOWN_MALFORMED = 50
MALFORMED_PREVIEW = 300  # characters of a malformed message's raw bytes
EXPORT_CHUNK = 2000
MAX_QUERY_TEXT = 200
MAX_CHECKED_BYTES = payloads.MAX_PAYLOAD_BYTES  # what the bridge accepts: 256 KiB

SUPPORT_ONLY = "Only the building's support staff inspect rejected payloads."
BUILDING_FILTER = "building"  # the device filter's value for the building's own topic
REJECTED_KINDS = (Kind.REJECTED_META, Kind.REJECTED_FAULT_ALARM)
_SIGNATURE = re.compile(r"[0-9a-f]{32}")

EXPORT_FIELDS = [
    "received_at",
    "topic",
    "kind",
    "device_id",
    "device_name",
    "message",
    "context",
    "data",
]


# --- topic kinds, labelled from the catalogue -------------------------------------------------

KIND_NAMES: dict[Kind, str] = {
    Kind.META: "Device meta",
    Kind.META_ITEM: "Device meta value",
    Kind.ACTION: "Action",
    Kind.TYPED_ACTION: "Typed action",
    Kind.FAULT_ALARM: "Fault alarm",
    Kind.HEAD_COUNT: "Head count",
    Kind.HEADCOUNT_IN: "Headcount in",
    Kind.HEADCOUNT_OUT: "Headcount out",
    Kind.REJECTED_META: "Device meta",
    Kind.REJECTED_FAULT_ALARM: "Fault alarm",
}


def _kind_choices(wanted: Callable[[Any], bool]) -> list[tuple[str, str]]:
    """(kind, "Name (topic, topic)") for the catalogue rows ``wanted`` keeps, in its order."""
    topics: dict[Kind, list[str]] = {}
    for row in CATALOGUE:
        if wanted(row):
            topics.setdefault(row.kind, []).append(row.pattern.replace("(:id)", "<id>"))
    return [(kind.value, f"{KIND_NAMES[kind]} ({', '.join(t)})") for kind, t in topics.items()]


# What clients may publish, for the check form; what the cloud refuses on, for the filter.
PUBLISHABLE_KINDS = _kind_choices(lambda row: row.pub)
REJECTED_KIND_CHOICES = _kind_choices(lambda row: row.kind in REJECTED_KINDS)


# --- filters ----------------------------------------------------------------------------------


@dataclass
class Filters:
    """The filters understood from a query string; ``problems`` says what was ignored."""

    device: str = ""  # a device id, BUILDING_FILTER, or nothing
    kind: str = ""
    start: datetime | None = None
    end: datetime | None = None  # exclusive
    start_text: str = ""  # for a datetime-local input and links
    end_text: str = ""
    q: str = ""
    signature: str = ""
    problems: list[str] = field(default_factory=list)

    def params(self, **changes: str) -> dict[str, str]:
        params = {
            "device": self.device,
            "kind": self.kind,
            "from": self.start_text,
            "to": self.end_text,
            "q": self.q,
            "signature": self.signature,
            **changes,
        }
        return {name: value for name, value in params.items() if value}

    def query(self, **changes: str) -> str:
        """The query string of the filters applied (bad parameters dropped)."""
        return urlencode(self.params(**changes))

    @property
    def active(self) -> bool:
        return bool(self.params())


def _parse_moment(
    raw: str, label: str, end: bool, problems: list[str]
) -> tuple[datetime | None, str]:
    """A date (whole day) or a datetime-local, in the site's time zone unless it says one.

    Returns the bound and its value for a datetime-local input. For "To" the bound is
    exclusive: the day after a date, the minute after a minute, the second after a second.
    """
    if not raw:
        return None, ""
    if len(raw) > 40:
        problems.append(f"Ignored “{label}”: not a date or time.")
        return None, ""
    try:
        if len(raw) == 10:
            moment = datetime.combine(date.fromisoformat(raw), time.min)
            step = timedelta(days=1)
        else:
            moment = datetime.fromisoformat(raw)
            with_seconds = re.search(r":\d\d:\d\d", raw) is not None
            step = timedelta(seconds=1) if with_seconds else timedelta(minutes=1)
    except ValueError:
        problems.append(
            f"Ignored “{label}”: not a date or time (use YYYY-MM-DD or YYYY-MM-DDTHH:MM)."
        )
        return None, ""
    try:
        if timezone.is_naive(moment):
            moment = timezone.make_aware(moment)
        bound = moment + step if end else moment
        bound.astimezone(UTC)  # the database compares in UTC: the bound must exist there too
        # A whole day "to" shows as its last minute: the same bound, as datetime-local has it.
        shown = timezone.localtime(bound - timedelta(minutes=1) if end and step.days else moment)
    except (OverflowError, ValueError):  # the first or last representable day
        problems.append(f"Ignored “{label}”: out of range.")
        return None, ""
    text = shown.strftime("%Y-%m-%dT%H:%M:%S" if step.seconds == 1 else "%Y-%m-%dT%H:%M")
    return bound, text


def _time_filters(params: QueryDict, filters: Filters) -> None:
    filters.start, filters.start_text = _parse_moment(
        params.get("from", "").strip(), "From", False, filters.problems
    )
    filters.end, filters.end_text = _parse_moment(
        params.get("to", "").strip(), "To", True, filters.problems
    )
    if filters.start and filters.end and filters.start >= filters.end:
        filters.problems.append("“From” is after “To”: nothing can match.")


def _in_time(rows: QuerySet, filters: Filters) -> QuerySet:
    if filters.start:
        rows = rows.filter(received_at__gte=filters.start)
    if filters.end:
        rows = rows.filter(received_at__lt=filters.end)
    return rows


def filter_rejections(
    building: Building, params: QueryDict, device_ids: Iterable[uuid.UUID] | None = None
) -> tuple[QuerySet[RejectedPayload], Filters]:
    """This building's rejections narrowed by device, kind, from, to, q and signature.

    Invalid values are ignored and reported in ``Filters.problems``, never raised.
    """
    filters = Filters()
    rows = RejectedPayload.objects.filter(building=building)

    device = params.get("device", "").strip()
    if device == BUILDING_FILTER:
        filters.device = device
        rows = rows.filter(topic__startswith="buildings/")
    elif device:
        if device_ids is None:
            device_ids = Device.objects.filter(building=building).values_list("id", flat=True)
        try:
            device_id = uuid.UUID(device)
        except ValueError:
            device_id = None
        if device_id is None or device_id not in set(device_ids):
            filters.problems.append("Ignored “Device”: not a device of this building.")
        else:
            filters.device = str(device_id)
            rows = rows.filter(device_id=device_id)

    kind = params.get("kind", "").strip()
    if kind:
        if kind in REJECTED_KINDS:
            filters.kind = kind
            rows = rows.filter(kind=kind)
        else:
            filters.problems.append("Ignored “Topic kind”: not a rejected topic kind.")

    _time_filters(params, filters)
    rows = _in_time(rows, filters)

    q = params.get("q", "").strip()
    if q:
        if len(q) > MAX_QUERY_TEXT:
            filters.problems.append(f"Ignored “Message”: longer than {MAX_QUERY_TEXT} characters.")
        elif "\x00" in q:  # PostgreSQL cannot compare it
            filters.problems.append("Ignored “Message”: contains a NUL character.")
        else:
            filters.q = q
            rows = rows.filter(message__icontains=q)

    sig = params.get("signature", "").strip()
    if sig:
        if _SIGNATURE.fullmatch(sig):
            filters.signature = sig
            rows = rows.filter(signature=sig)
        else:
            filters.problems.append("Ignored “Group”: not a group of errors.")

    return rows.order_by("-received_at", "-id"), filters


# --- groups -----------------------------------------------------------------------------------


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def reach(devices: int, building_hits: int, count: int) -> str:
    """'10 devices · 50 times': who sends this mistake, and how often."""
    who = []
    if building_hits:
        who.append("the building")
    if devices or not building_hits:
        who.append(_plural(devices, "device", "devices"))
    return f"{' and '.join(who)} · {_plural(count, 'time', 'times')}"


def groups(rows: QuerySet[RejectedPayload], filters: Filters) -> tuple[list[dict], int]:
    """The filtered rejections grouped by mistake, most recently seen first, and how many."""
    aggregated = (
        rows.order_by()
        .values("signature")
        .annotate(
            count=Count("id"),
            first_seen=Min("received_at"),
            last_seen=Max("received_at"),
            devices=Count("device", distinct=True),
            building_hits=Count("id", filter=Q(topic__startswith="buildings/")),
            kind=Min("kind"),
            message=Min("message"),
        )
        .order_by("-last_seen", "signature")
    )
    total = aggregated.count()
    shown = list(aggregated[:SHOWN_GROUPS])
    names: dict[str, list[str]] = {g["signature"]: [] for g in shown}
    named = (
        rows.order_by()
        .filter(signature__in=list(names), device__isnull=False)
        .values_list("signature", "device_id", "device__name")
        .distinct()
        .order_by("device__name")  # the same few names on every reload
    )
    for sig, _device, name in named.iterator():
        if len(names[sig]) < NAMES_PER_GROUP:
            names[sig].append(name)
    result = []
    for group in shown:
        device_names = sorted(names[group["signature"]], key=str.casefold)
        result.append(
            {
                **group,
                "kind_label": rejections.kind_label(group["kind"]),
                "masked": rejections.mask(group["message"]),
                "reach": reach(group["devices"], group["building_hits"], group["count"]),
                "device_names": device_names,
                "more_devices": max(group["devices"] - len(device_names), 0),
                "query": filters.query(signature=group["signature"]),
                "selected": group["signature"] == filters.signature,
            }
        )
    return result, total


# --- the page ---------------------------------------------------------------------------------


def _entry(row: RejectedPayload, building: Building) -> dict[str, Any]:
    return rejections.entry(
        topic=row.topic,
        kind=row.kind,
        message=row.message,
        context=row.context,
        data=row.data,
        received_at=row.received_at,
        device_id=row.device_id,
        device_name=row.device.name if row.device is not None else None,
        building_name=building.name,
    )


def _malformed(building: Building, filters: Filters) -> tuple[list[dict], int]:
    rows = _in_time(MalformedPayload.objects.filter(building=building), filters)
    shown = []
    for row in rows.order_by("-received_at", "-id")[:SHOWN_MALFORMED]:
        raw = row.raw
        shown.append(
            {
                "topic": row.topic,
                "kind": row.kind,
                "reason": row.reason,
                "raw": raw if len(raw) <= MALFORMED_PREVIEW else raw[:MALFORMED_PREVIEW] + "…",
                "received_at": row.received_at,
            }
        )
    return shown, rows.count()


@login_required
def rejected(request: HttpRequest, building_id: uuid.UUID) -> HttpResponse:
    """The building's rejected payloads: grouped, filtered, newest first and live."""
    building, _ = building_for(request, building_id, Role.SUPPORT, SUPPORT_ONLY)
    devices = list(Device.objects.filter(building=building).order_by("name", "id"))
    rows, filters = filter_rejections(building, request.GET, [d.id for d in devices])
    group_list, group_total = groups(rows, filters)
    page = Paginator(rows.select_related("device"), PER_PAGE).get_page(request.GET.get("page"))
    malformed, malformed_total = _malformed(building, filters)
    query = filters.query()
    return render(
        request,
        "dashboard/inspector.html",
        {
            "building": building,
            "devices": devices,
            "building_filter": BUILDING_FILTER,
            "kinds": REJECTED_KIND_CHOICES,
            "filters": filters,
            "query": query,
            "page_query": f"{query}&" if query else "",
            "query_without_group": filters.query(signature=""),
            "groups": group_list,
            "group_total": group_total,
            "page": page,
            "entries": [_entry(row, building) for row in page.object_list],
            # New rejections are pushed unfiltered: only the unfiltered first page takes them.
            "live_list": not filters.active and page.number == 1,
            "malformed": malformed,
            "malformed_total": malformed_total,
            "stale_after": settings.STALE_AFTER_SECONDS,
            "bridge_status": ConnectionStatus(state="unknown"),
        },
    )


# --- export -----------------------------------------------------------------------------------


def _export_record(row: RejectedPayload) -> dict[str, Any]:
    return {
        "received_at": row.received_at.astimezone(UTC).isoformat(),
        "topic": row.topic,
        "kind": row.kind,
        "device_id": str(row.device_id) if row.device_id else None,
        "device_name": row.device.name if row.device is not None else None,
        "message": row.message,
        "context": row.context,
        "data": row.data,
    }


def _json_line(record: dict[str, Any], first: bool) -> str:
    return ("\n" if first else ",\n") + json.dumps(record)


# Spreadsheets run a cell starting with one of these as a formula (CSV injection): anything
# from MQTT may be crafted to. A leading apostrophe is what spreadsheet users expect: it makes
# the cell plain text and is not shown. Scripts reading the file see it; that is the trade-off.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> str:
    """A CSV cell: compact JSON for structures, text otherwise, formula starts neutralised."""
    if value is None:
        return ""
    if isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


class _Line:
    """A file-like object whose write() returns the line, for csv.writer."""

    def write(self, value: str) -> str:
        return value


_CSV = csv.writer(_Line())


def _csv_line(record: dict[str, Any], first: bool) -> str:
    return _CSV.writerow([csv_cell(record[name]) for name in EXPORT_FIELDS])


@dataclass(frozen=True)
class ExportFormat:
    head: str
    line: Callable[[dict[str, Any], bool], str]
    tail: str
    content_type: str


FORMATS: dict[str, ExportFormat] = {
    "json": ExportFormat("[", _json_line, "\n]\n", "application/json"),
    "csv": ExportFormat(_CSV.writerow(EXPORT_FIELDS), _csv_line, "", "text/csv; charset=utf-8"),
}


def _chunks(out: ExportFormat, rows: QuerySet[RejectedPayload]) -> Iterator[str]:
    yield out.head
    for i, row in enumerate(rows.iterator(chunk_size=EXPORT_CHUNK)):
        yield out.line(_export_record(row), i == 0)
    yield out.tail


async def _chunks_async(out: ExportFormat, rows: QuerySet[RejectedPayload]) -> AsyncIterator[str]:
    yield out.head
    first = True
    async for row in rows.aiterator(chunk_size=EXPORT_CHUNK):
        yield out.line(_export_record(row), first)
        first = False
    yield out.tail


@login_required
def export(request: HttpRequest, building_id: uuid.UUID, fmt: str) -> StreamingHttpResponse:
    """The rejections matching the page's filters, oldest first, as JSON or CSV, streamed."""
    if fmt not in FORMATS:
        raise Http404("Export as json or csv.")
    building, _ = building_for(request, building_id, Role.SUPPORT, SUPPORT_ONLY)
    rows, _ = filter_rejections(building, request.GET)
    rows = rows.select_related("device").order_by("received_at", "id")
    out = FORMATS[fmt]
    # Served by daphne, Django would read a synchronous iterator to the end before sending
    # (and warn); an asynchronous one streams there. The test client and WSGI take this one.
    chunks: Iterator[str] | AsyncIterator[str] = (
        _chunks_async(out, rows) if isinstance(request, ASGIRequest) else _chunks(out, rows)
    )
    response = StreamingHttpResponse(chunks, content_type=out.content_type)
    response["Content-Disposition"] = f'attachment; filename="rejected-{building.id}.{fmt}"'
    return response


# --- check a payload --------------------------------------------------------------------------


class CheckForm(forms.Form):
    kind = forms.ChoiceField(label="Topic kind", choices=PUBLISHABLE_KINDS)
    payload = forms.CharField(
        label="Payload",
        strip=False,
        widget=forms.Textarea(attrs={"rows": 14, "cols": 80, "spellcheck": "false"}),
        help_text=f"JSON as the integrator publishes it, at most {MAX_CHECKED_BYTES // 1024} KB.",
    )

    def clean_payload(self) -> str:
        payload = self.cleaned_data["payload"]
        size = len(payload.encode("utf-8", errors="surrogatepass"))
        if size > MAX_CHECKED_BYTES:
            raise forms.ValidationError(
                f"The payload is {size:,} bytes; the broker takes at most "
                f"{MAX_CHECKED_BYTES:,} bytes ({MAX_CHECKED_BYTES // 1024} KB). "
                "Nothing that large can be published."
            )
        return payload


def check_payload(kind: str, text: str) -> dict[str, Any]:
    """What the dashboard's schemas say of a payload: valid, unreadable, or the cloud's errors."""
    raw = text.encode("utf-8", errors="surrogatepass")
    result = payloads.parse(Kind(kind), raw)
    if isinstance(result, payloads.Payload):
        return {"valid": True}
    if not result.errors:
        not_json = result.reason.startswith("not JSON")
        reason = result.reason.removeprefix("not JSON: ") if not_json else result.reason
        return {"valid": False, "unreadable": reason, "not_json": not_json}
    errors = []
    for envelope in result.errors:
        message = envelope["error"]["message"]
        path = rejections.failing_path(message)
        errors.append(
            {
                "message": message,
                "position": path,
                "envelope_segments": rejections.pretty(
                    envelope, ["data", *path] if path is not None else None
                ),
            }
        )
    return {"valid": False, "errors": errors, "max_errors": payloads.MAX_ERRORS}


@login_required
def check(request: HttpRequest, building_id: uuid.UUID) -> HttpResponse:
    """Check a payload against the dashboard's schemas, as the cloud would; nothing is sent."""
    building, _ = building_for(request, building_id, Role.SUPPORT, SUPPORT_ONLY)
    result = None
    if request.method == "POST":
        form = CheckForm(request.POST)
        if form.is_valid():
            result = check_payload(form.cleaned_data["kind"], form.cleaned_data["payload"])
    else:
        form = CheckForm(initial={"kind": Kind.META.value})
    return render(
        request,
        "dashboard/inspector_check.html",
        {"building": building, "form": form, "result": result, "max_kb": MAX_CHECKED_BYTES // 1024},
    )
