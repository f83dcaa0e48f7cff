"""The rejected-payload inspector's filter."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django import forms
from django.db.models import QuerySet
from django.http import QueryDict
from django.utils import timezone

from dashboard.contract.topics import CATALOGUE, KIND_NAMES, Kind, TopicEntry
from dashboard.filters.base import (
    Choice,
    DateTimeLocalInput,
    FilterForm,
    SearchInput,
    Text,
    uuid_or_none,
)
from dashboard.models import Building, Device, MalformedPayload, RejectedPayload

MAX_QUERY_TEXT = 200
BUILDING_FILTER = "building"  # the device filter's value for the building's own topic
REJECTED_KINDS = (Kind.REJECTED_META, Kind.REJECTED_FAULT_ALARM)
_SIGNATURE = re.compile(r"[0-9a-f]{32}")


def kind_choices(wanted: Callable[[TopicEntry], bool]) -> list[tuple[str, str]]:
    """(kind, "Name (topic, topic)") for the catalogue rows ``wanted`` keeps, in its order."""
    topics: dict[Kind, list[str]] = {}
    for row in CATALOGUE:
        if wanted(row):
            topics.setdefault(row.kind, []).append(row.pattern.replace("(:id)", "<id>"))
    return [(kind.value, f"{KIND_NAMES[kind]} ({', '.join(t)})") for kind, t in topics.items()]


@dataclass(frozen=True)
class Moment:
    """A bound of the time filter, and how a datetime-local input and links show it."""

    bound: datetime
    text: str

    def __str__(self) -> str:
        return self.text


def _moment(raw: str, end: bool) -> Moment | None:
    """A date (whole day) or a datetime-local, in the building's time zone unless it says one
    (``building_for`` activated it).

    For "To" the bound is exclusive: the day after a date, the minute after a minute, the
    second after a second.
    """
    if not raw:
        return None
    if len(raw) > 40:
        raise forms.ValidationError("not a date or time.")
    try:
        if len(raw) == 10:
            moment = datetime.combine(date.fromisoformat(raw), time.min)
            step = timedelta(days=1)
        else:
            moment = datetime.fromisoformat(raw)
            with_seconds = re.search(r":\d\d:\d\d", raw) is not None
            step = timedelta(seconds=1) if with_seconds else timedelta(minutes=1)
    except ValueError:
        raise forms.ValidationError(
            "not a date or time (use YYYY-MM-DD or YYYY-MM-DDTHH:MM)."
        ) from None
    try:
        if timezone.is_naive(moment):
            moment = timezone.make_aware(moment)
        bound = moment + step if end else moment
        bound.astimezone(UTC)  # the database compares in UTC: the bound must exist there too
        # A whole day "to" shows as its last minute: the same bound, as datetime-local has it.
        shown = timezone.localtime(bound - timedelta(minutes=1) if end and step.days else moment)
    except (OverflowError, ValueError):  # the first or last representable day
        raise forms.ValidationError("out of range.") from None
    text = shown.strftime("%Y-%m-%dT%H:%M:%S" if step.seconds == 1 else "%Y-%m-%dT%H:%M")
    return Moment(bound, text)


class RejectionFilter(FilterForm):
    """This building's rejections narrowed by device, kind, from, to, q and signature."""

    id_prefix = "inspector"
    params = {"start": "from", "end": "to"}
    names = {"q": "Message"}

    device = Text(label="Device", widget=forms.Select)
    kind = Choice(
        label="Topic kind",
        choices=[("", "Any topic kind"), *kind_choices(lambda row: row.kind in REJECTED_KINDS)],
        error_messages={"invalid_choice": "not a rejected topic kind."},
    )
    start = Text(label="From", widget=DateTimeLocalInput(attrs={"step": "1"}))
    end = Text(label="To", widget=DateTimeLocalInput(attrs={"step": "1"}))
    q = Text(label="Message contains", widget=SearchInput(attrs={"maxlength": MAX_QUERY_TEXT}))
    signature = Text(label="Group", widget=forms.HiddenInput)

    def __init__(
        self,
        building: Building,
        params: QueryDict,
        device_ids: Iterable[uuid.UUID] | None = None,
    ) -> None:
        self.building = building
        self.device_ids = device_ids
        super().__init__(params)

    def clean_device(self) -> str:
        device = self.cleaned_data["device"]
        if not device or device == BUILDING_FILTER:
            return device
        if self.device_ids is None:
            self.device_ids = Device.objects.filter(building=self.building).values_list(
                "id", flat=True
            )
        device_id = uuid_or_none(device)
        if device_id is None or device_id not in set(self.device_ids):
            raise forms.ValidationError("not a device of this building.")
        return str(device_id)

    def clean_start(self) -> Moment | None:
        return _moment(self.cleaned_data["start"], end=False)

    def clean_end(self) -> Moment | None:
        return _moment(self.cleaned_data["end"], end=True)

    def clean_q(self) -> str:
        q = self.cleaned_data["q"]
        if len(q) > MAX_QUERY_TEXT:
            raise forms.ValidationError(f"longer than {MAX_QUERY_TEXT} characters.")
        if "\x00" in q:  # PostgreSQL cannot compare it
            raise forms.ValidationError("contains a NUL character.")
        return q

    def clean_signature(self) -> str:
        signature = self.cleaned_data["signature"]
        if signature and not _SIGNATURE.fullmatch(signature):
            raise forms.ValidationError("not a group of errors.")
        return signature

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("start"), data.get("end")
        if start and end and start.bound >= end.bound:
            raise forms.ValidationError("“From” is after “To”: nothing can match.")
        return data

    def in_time(self, rows: QuerySet[Any]) -> QuerySet[Any]:
        """``rows`` received within the time filter (rejections, or malformed payloads)."""
        if self.applied["start"]:
            rows = rows.filter(received_at__gte=self.applied["start"].bound)
        if self.applied["end"]:
            rows = rows.filter(received_at__lt=self.applied["end"].bound)
        return rows

    def rejections(self) -> QuerySet[RejectedPayload]:
        """The rejections the filters keep, newest first."""
        rows = self.in_time(RejectedPayload.objects.filter(building=self.building))
        device, kind, q, signature = (self.applied[n] for n in ("device", "kind", "q", "signature"))
        if device == BUILDING_FILTER:
            rows = rows.filter(topic__startswith="buildings/")
        elif device:
            rows = rows.filter(device_id=device)
        if kind:
            rows = rows.filter(kind=kind)
        if q:
            rows = rows.filter(message__icontains=q)
        if signature:
            rows = rows.filter(signature=signature)
        return rows.order_by("-received_at", "-id")

    def malformed(self) -> QuerySet[MalformedPayload]:
        return self.in_time(MalformedPayload.objects.filter(building=self.building))

    def offer_devices(self, devices: Iterable[Device]) -> None:
        self.offer(
            "device",
            [
                ("", "All devices and the building"),
                (BUILDING_FILTER, f"The building itself ({self.building.name})"),
                *((str(d.id), d.name) for d in devices),
            ],
        )
