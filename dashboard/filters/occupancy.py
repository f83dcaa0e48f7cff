"""The occupancy report's filter: which days, which space, by day or by hour."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Any

from django import forms
from django.http import QueryDict
from django.utils import timezone

from dashboard.filters.base import Choice, DateInput, FilterForm, Text, day_or_none, space_of
from dashboard.models import Building
from dashboard.reports import Period, last_days

DEFAULT_DAYS = 7
MAX_DAYS = 366
BY_DAY, BY_HOUR = "day", "hour"


class OccupancyFilter(FilterForm):
    """``from`` and ``to`` (local days of the building, both included; default the last
    seven), ``space`` for the heatmap and chart, ``by`` for the CSV export.

    A range that cannot be shown (``from`` after ``to``, over a year) is reported and the
    default period shown instead.
    """

    id_prefix = "occupancy"
    params = {"start": "from", "end": "to"}
    defaults = {"by": BY_DAY}

    start = Text(label="From", widget=DateInput)
    end = Text(label="To", widget=DateInput)
    space = Text(label="Space", widget=forms.Select)
    by = Choice(
        label="CSV rows by",
        choices=[(BY_DAY, "Place and day"), (BY_HOUR, "Place and hour")],
        error_messages={"invalid_choice": "not day or hour."},
    )

    def __init__(self, building: Building, params: QueryDict) -> None:
        self.building = building
        self.today = timezone.localdate(timezone=building.zone)
        super().__init__(params)
        self.period = self._period()
        # The inputs show the days shown; links carry them, so an export is of what is seen.
        shown = self.data
        assert isinstance(shown, QueryDict)  # FilterForm's, mutable
        for name, day in (("start", self.period.first), ("end", self.period.last)):
            shown[self.add_prefix(name)] = self.query[self.add_prefix(name)] = day.isoformat()

    def clean_start(self) -> date | None:
        return day_or_none(self.cleaned_data["start"])

    def clean_end(self) -> date | None:
        return day_or_none(self.cleaned_data["end"])

    def clean_space(self) -> uuid.UUID | None:
        return space_of(self.building, self.cleaned_data["space"])

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("start"), data.get("end")
        if start and end and start > end:
            data.pop("start"), data.pop("end")
            raise forms.ValidationError("“From” is after “To”: showing the last 7 days instead.")
        if start and end and (end - start).days + 1 > MAX_DAYS:
            data.pop("start"), data.pop("end")
            raise forms.ValidationError(
                f"A report covers at most {MAX_DAYS} days: showing the last 7 days instead."
            )
        return data

    def _period(self) -> Period:
        zone = self.building.zone
        start, end = self.applied["start"], self.applied["end"]
        if start and end:
            return Period(start, end, zone)
        if start:  # a week from it (not past today, unless it starts later)
            return Period(start, max(start, min(self.today, start + timedelta(days=6))), zone)
        if end:
            return Period(end - timedelta(days=DEFAULT_DAYS - 1), end, zone)
        return last_days(self.today, DEFAULT_DAYS, zone)

    def offer_spaces(self, spaces: list[tuple[str, str]]) -> None:
        self.offer("space", [("", "The building only"), *spaces])
