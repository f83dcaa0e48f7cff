"""The activity log's filter."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time, timedelta
from typing import Any

from django import forms
from django.db.models import QuerySet
from django.http import QueryDict
from django.utils import timezone

from dashboard.filters.base import (
    Choice,
    DateInput,
    FilterForm,
    Text,
    day_or_none,
    uuid_or_none,
)
from dashboard.models import ActionAttempt, Building

USERNAME_LENGTH = ActionAttempt._meta.get_field("username").max_length or 150


def _local_midnight(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


class ActivityFilter(FilterForm):
    """This building's attempts narrowed by ``user``, ``target``, ``outcome``, ``from``, ``to``.

    Dates are whole days in the site's time zone, both ends included.
    """

    id_prefix = "activity"
    params = {"start": "from", "end": "to"}

    user = Text(label="User", widget=forms.Select)
    target = Text(label="Target", widget=forms.Select)
    outcome = Choice(
        label="Outcome",
        choices=[("", "Any outcome"), *ActionAttempt.OUTCOMES],
        error_messages={"invalid_choice": "not a known outcome."},
    )
    confirmation = Choice(
        label="Lamps",
        choices=[("", "Any confirmation"), *ActionAttempt.CONFIRMATIONS[1:]],
        error_messages={"invalid_choice": "not a known confirmation."},
    )
    start = Text(label="From", widget=DateInput)
    end = Text(label="To", widget=DateInput)

    def __init__(self, building: Building, params: QueryDict) -> None:
        self.building = building
        super().__init__(params)

    def clean_user(self) -> str:
        user = self.cleaned_data["user"]
        if len(user) > USERNAME_LENGTH:
            raise forms.ValidationError("too long to be a username.")
        if "\x00" in user:  # no username has one, and PostgreSQL cannot compare it
            raise forms.ValidationError("contains a NUL character.")
        return user

    def clean_target(self) -> uuid.UUID | None:
        target = self.cleaned_data["target"]
        if not target:
            return None
        target_id = uuid_or_none(target)
        if target_id is None:
            raise forms.ValidationError("not a valid target id.")
        return target_id

    def clean_start(self) -> date | None:
        return day_or_none(self.cleaned_data["start"])

    def clean_end(self) -> date | None:
        return day_or_none(self.cleaned_data["end"])

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("start"), data.get("end")
        if start and end and start > end:
            raise forms.ValidationError("“From” is after “To”: no attempt can match.")
        return data

    def _attempts(self) -> QuerySet[ActionAttempt]:
        return ActionAttempt.objects.filter(building=self.building)

    def attempts(self) -> QuerySet[ActionAttempt]:
        """The attempts the filters keep, newest first."""
        attempts = self._attempts()
        user, target, outcome, start, end = (
            self.applied[n] for n in ("user", "target", "outcome", "start", "end")
        )
        if user:
            attempts = attempts.filter(username=user)
        if target:
            attempts = attempts.filter(target_id=target)
        if outcome:
            attempts = attempts.filter(outcome=outcome)
        if self.applied.get("confirmation"):
            attempts = attempts.filter(confirmation=self.applied["confirmation"])
        if start:
            attempts = attempts.filter(created_at__gte=_local_midnight(start))
        if end:
            attempts = attempts.filter(created_at__lt=_local_midnight(end + timedelta(days=1)))
        return attempts.order_by("-created_at", "-id")

    def offer_choices(self) -> None:
        """The users and targets that appear in this building's log."""
        attempts = self._attempts().order_by()
        users = sorted(attempts.values_list("username", flat=True).distinct(), key=str.casefold)
        user, target = self.applied["user"], self.applied["target"]
        if user and user not in users:
            users.append(user)  # keep the form truthful about the filter applied
        names: dict[uuid.UUID, set[tuple[str, str]]] = {}
        for target_id, target_type, target_name in (
            attempts.filter(target_id__isnull=False)
            .values_list("target_id", "target_type", "target_name")
            .distinct()
        ):
            if target_id is not None:
                names.setdefault(target_id, set()).add((target_name, target_type))
        targets = []
        for target_id, labels in names.items():
            # A renamed target has several names over time: show them all under one id.
            shown = " / ".join(sorted(name or str(target_id) for name, _ in labels))
            kinds = ", ".join(sorted({kind for _, kind in labels if kind}))
            targets.append((str(target_id), f"{shown} ({kinds})" if kinds else shown))
        if target and target not in names:
            targets.append((str(target), str(target)))
        targets.sort(key=lambda choice: choice[1].casefold())
        self.offer("user", [("", "Anyone"), *((name, name) for name in users)])
        self.offer("target", [("", "Any target"), *targets])
