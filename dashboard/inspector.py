"""The rejected-payload inspector: what the cloud refused from a building, for support staff.

Three views, all for the building's support role: the inspector page (rejections grouped by
mistake, the filtered list kept live, and what the dashboard itself found malformed), the
export of the filtered rejections as JSON or CSV, and a form that checks a payload against
the dashboard's schemas without publishing it. Everything shown came from MQTT and may be
hostile: templates rely on autoescaping, the CSV neutralises formula cells.
"""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Count, Max, Min, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render

from dashboard import exports, page_data
from dashboard.access import building_for
from dashboard.contract import payloads, rejections
from dashboard.contract.topics import Kind
from dashboard.filters import RejectionFilter, kind_choices
from dashboard.live.state import ConnectionStatus
from dashboard.models import Building, Device, RejectedPayload, Role
from dashboard.routing import socket_url

PER_PAGE = 50  # entries on a page; the first page is also the live list's start
SHOWN_GROUPS = 50
NAMES_PER_GROUP = 10
SHOWN_MALFORMED = 50
MALFORMED_PREVIEW = 300  # characters of a malformed message's raw bytes
MAX_CHECKED_BYTES = payloads.MAX_PAYLOAD_BYTES  # what the bridge accepts: 256 KiB

SUPPORT_ONLY = "Only the building's support staff inspect rejected payloads."

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


# What clients may publish, for the check form.
PUBLISHABLE_KINDS = kind_choices(lambda row: row.pub)


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


def groups(rows: QuerySet[RejectedPayload], filters: RejectionFilter) -> tuple[list[dict], int]:
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
                "selected": group["signature"] == filters.applied["signature"],
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
        received_at=row.received_at.astimezone(building.zone),  # shown as given
        device_id=row.device_id,
        device_name=row.device.name if row.device is not None else None,
        building_name=building.name,
    )


def _malformed(filters: RejectionFilter) -> tuple[list[dict], int]:
    rows = filters.malformed()
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
    filters = RejectionFilter(building, request.GET, [d.id for d in devices])
    filters.offer_devices(devices)
    rows = filters.rejections()
    group_list, group_total = groups(rows, filters)
    page = Paginator(rows.select_related("device"), PER_PAGE).get_page(request.GET.get("page"))
    malformed, malformed_total = _malformed(filters)
    return render(
        request,
        "dashboard/inspector.html",
        {
            "building": building,
            "filters": filters,
            "groups": group_list,
            "group_total": group_total,
            **page_data.pager(page, filters.query),
            "entries": [_entry(row, building) for row in page.object_list],
            # New rejections are pushed unfiltered: only the unfiltered first page takes them.
            "live_list": not filters.query and page.number == 1,
            "malformed": malformed,
            "malformed_total": malformed_total,
            "stale_after": settings.STALE_AFTER_SECONDS,
            "socket_url": socket_url("ws_building", building_id=building.id),
            "bridge_status": ConnectionStatus(state="unknown"),
            "zone": building.zone,
        },
    )


# --- export -----------------------------------------------------------------------------------


def _export_record(row: RejectedPayload) -> dict[str, Any]:
    return {
        "received_at": row.received_at,
        "topic": row.topic,
        "kind": row.kind,
        "device_id": str(row.device_id) if row.device_id else None,
        "device_name": row.device.name if row.device is not None else None,
        "message": row.message,
        "context": row.context,
        "data": row.data,
    }


FORMATS = {out.extension: out for out in (exports.JSON, exports.csv_format(EXPORT_FIELDS))}


@login_required
def export(request: HttpRequest, building_id: uuid.UUID, fmt: str) -> StreamingHttpResponse:
    """The rejections matching the page's filters, oldest first, as JSON or CSV, streamed."""
    if fmt not in FORMATS:
        raise Http404("Export as json or csv.")
    building, _ = building_for(request, building_id, Role.SUPPORT, SUPPORT_ONLY)
    rows = RejectionFilter(building, request.GET).rejections()
    rows = rows.select_related("device").order_by("received_at", "id")
    return exports.stream(
        request, rows, _export_record, FORMATS[fmt], f"rejected-{building.id}", building.zone
    )


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
