"""The list pages' filters as Django forms: fault alarms, the activity log, rejected payloads.

A filter form reads the query string and never refuses it: a bad value is ignored and said so
("Ignored “Level”: …"), the others apply. The form then shows the filters applied (its
dropdowns render from its choices), and ``query`` holds them for pagers and export links
(``{% querystring form.query page=… %}``): bad parameters dropped, defaults left out.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, ClassVar

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS
from django.core.validators import ProhibitNullCharactersValidator
from django.db.models import QuerySet
from django.http import QueryDict
from django.utils import timezone

from dashboard.contract.topics import CATALOGUE, KIND_NAMES, Kind, TopicEntry
from dashboard.models import (
    ActionAttempt,
    Building,
    Device,
    FaultAlarm,
    MalformedPayload,
    RejectedPayload,
    Space,
)

# --- the shared machinery -----------------------------------------------------------------


class Text(forms.CharField):
    """Stripped text, optional; a NUL is left to the form to refuse in its own words."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(required=False, **kwargs)
        self.validators = [
            v for v in self.validators if not isinstance(v, ProhibitNullCharactersValidator)
        ]


class Choice(forms.ChoiceField):
    """One of fixed choices, optional, stripped first."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(required=False, **kwargs)

    def to_python(self, value: Any) -> str:
        return super().to_python(value).strip()


class DateInput(forms.DateInput):
    input_type = "date"


class DateTimeLocalInput(forms.DateTimeInput):
    input_type = "datetime-local"


class SearchInput(forms.TextInput):
    input_type = "search"


def _uuid(raw: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None


class FilterForm(forms.Form):
    """Filters read from a query string: ``problems`` says what was ignored, ``query`` what applies.

    Subclasses set ``id_prefix`` (the inputs' ids), may map fields to parameter names in
    ``params`` (``from`` cannot be a field's name), name a field in problems other than by its
    label in ``names``, and give values left out of ``query`` in ``defaults``.
    """

    id_prefix: ClassVar[str] = "filter"
    params: ClassVar[dict[str, str]] = {}
    names: ClassVar[dict[str, str]] = {}
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, params: QueryDict) -> None:
        super().__init__(params, auto_id=f"{self.id_prefix}-%s", label_suffix="")
        self.problems: list[str] = []
        for name, errors in self.errors.items():
            if name != NON_FIELD_ERRORS:
                label = self.names.get(name, self.fields[name].label)
                self.problems.append(f"Ignored “{label}”: {errors[0]}")
        self.problems += [str(error) for error in self.non_field_errors()]
        # Each filter's value as applied: None when not given or ignored, else the default.
        self.applied: dict[str, Any] = {
            name: self.cleaned_data.get(name) or self.defaults.get(name) for name in self.fields
        }
        shown = QueryDict(mutable=True)
        self.query = QueryDict(mutable=True)
        for name, value in self.applied.items():
            if value is not None:
                shown[self.add_prefix(name)] = str(value)
                if value != self.defaults.get(name):
                    self.query[self.add_prefix(name)] = str(value)
        self.data = shown  # the inputs show what applies, not what was asked

    def add_prefix(self, field_name: str) -> str:
        return self.params.get(field_name, field_name)

    def offer(self, name: str, choices: Iterable[tuple[str, str]]) -> None:
        """Give a dropdown its choices (only pages show them: exports need not look them up)."""
        widget = self.fields[name].widget
        assert isinstance(widget, forms.Select)
        widget.choices = list(choices)


# --- fault alarms -------------------------------------------------------------------------

# The State filter: the default shows what still needs attention.
ACTIVE = "active"
ANY = "any"
STATE_CHOICES = [
    (ACTIVE, "Open or acknowledged"),
    (FaultAlarm.OPEN, "Open"),
    (FaultAlarm.ACKNOWLEDGED, "Acknowledged"),
    (FaultAlarm.CLEARED, "Cleared"),
    (ANY, "Any state"),
]
STATES_SHOWN: dict[str, tuple[str, ...] | None] = {
    ACTIVE: (FaultAlarm.OPEN, FaultAlarm.ACKNOWLEDGED),
    FaultAlarm.OPEN: (FaultAlarm.OPEN,),
    FaultAlarm.ACKNOWLEDGED: (FaultAlarm.ACKNOWLEDGED,),
    FaultAlarm.CLEARED: (FaultAlarm.CLEARED,),
    ANY: None,
}
# The Device filter's value for alarms of the building itself (they have no device).
BUILDING_ITSELF = "building"


class AlarmFilter(FilterForm):
    """This building's alarms narrowed by ``level``, ``state``, ``device`` and ``space``.

    Without ``state`` only open and acknowledged alarms are shown.
    """

    id_prefix = "alarm"
    defaults = {"state": ACTIVE}

    level = Text(label="Level", widget=forms.Select)
    state = Choice(
        label="State",
        choices=STATE_CHOICES,
        error_messages={"invalid_choice": "not a known state."},
    )
    device = Text(label="Device", widget=forms.Select)
    space = Text(label="Space", widget=forms.Select)

    def __init__(self, building: Building, params: QueryDict) -> None:
        self.building = building
        super().__init__(params)

    def _alarms(self) -> QuerySet[FaultAlarm]:
        return FaultAlarm.objects.filter(building=self.building)

    def clean_level(self) -> str:
        level = self.cleaned_data["level"]
        # No level holds NUL, and PostgreSQL cannot compare one.
        if level and ("\x00" in level or not self._alarms().filter(level=level).exists()):
            raise forms.ValidationError("no alarm of this building has that level.")
        return level

    def clean_device(self) -> str:
        device = self.cleaned_data["device"]
        if not device or device == BUILDING_ITSELF:
            return device
        device_id = _uuid(device)
        if device_id and Device.objects.filter(building=self.building, id=device_id).exists():
            return str(device_id)
        raise forms.ValidationError("not a device of this building.")

    def clean_space(self) -> uuid.UUID | None:
        space = self.cleaned_data["space"]
        if not space:
            return None
        space_id = _uuid(space)
        if space_id and Space.objects.filter(building=self.building, id=space_id).exists():
            return space_id
        raise forms.ValidationError("not a space of this building.")

    def alarms(self) -> QuerySet[FaultAlarm]:
        """The alarms the filters keep, most recently seen first."""
        alarms = self._alarms()
        level, state, device, space = (
            self.applied[n] for n in ("level", "state", "device", "space")
        )
        if level:
            alarms = alarms.filter(level=level)
        shown = STATES_SHOWN[state]
        if shown is not None:
            alarms = alarms.filter(state__in=shown)
        if device == BUILDING_ITSELF:
            alarms = alarms.filter(device__isnull=True)
        elif device:
            alarms = alarms.filter(device_id=device)
        if space:
            alarms = alarms.filter(device__space_id=space)
        return alarms.order_by("-last_seen", "-id")

    def offer_choices(self) -> None:
        """The levels and devices that appear in this building's alarms, and its spaces."""
        alarms = self._alarms().order_by()
        levels = sorted(set(alarms.values_list("level", flat=True)), key=str.casefold)
        device = self.applied["device"]
        devices: list[tuple[str, str]] = [("", "Any device")]
        if alarms.filter(device__isnull=True).exists() or device == BUILDING_ITSELF:
            devices.append((BUILDING_ITSELF, "Building (no device)"))
        with_alarms = Device.objects.filter(building=self.building, alarms__isnull=False)
        if device and device != BUILDING_ITSELF:
            with_alarms = with_alarms | Device.objects.filter(id=device)
        devices += [
            (str(device_id), name)
            for device_id, name in with_alarms.distinct().order_by("name").values_list("id", "name")
        ]
        spaces = self.building.spaces.order_by("name").values_list("id", "name")
        self.offer("level", [("", "Any level"), *((lv, lv) for lv in levels)])
        self.offer("device", devices)
        self.offer("space", [("", "Any space"), *((str(i), name) for i, name in spaces)])


# --- the activity log ---------------------------------------------------------------------

USERNAME_LENGTH = ActionAttempt._meta.get_field("username").max_length or 150


def _day(raw: str) -> date | None:
    if not raw:
        return None
    try:
        value = date.fromisoformat(raw)
    except ValueError:
        raise forms.ValidationError("not a date (use YYYY-MM-DD).") from None
    # The first and last representable days cannot be shifted by a time zone or a day.
    if value in (date.min, date.max):
        raise forms.ValidationError("date out of range.")
    return value


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
        target_id = _uuid(target)
        if target_id is None:
            raise forms.ValidationError("not a valid target id.")
        return target_id

    def clean_start(self) -> date | None:
        return _day(self.cleaned_data["start"])

    def clean_end(self) -> date | None:
        return _day(self.cleaned_data["end"])

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


# --- rejected payloads --------------------------------------------------------------------

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
    """A date (whole day) or a datetime-local, in the site's time zone unless it says one.

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
        device_id = _uuid(device)
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
