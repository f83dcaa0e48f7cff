"""Building inventory, roles, and what the bridge keeps of the broker's traffic."""

from __future__ import annotations

import datetime
import uuid
import zoneinfo
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from dashboard.contract.topics import Scope
from dashboard.live import confirmation
from dashboard.live.confirmation import Confirmation
from dashboard.live.state import AlarmState, Outcome

# The enums' values are what the database stores; these choices keep the order and labels the
# migrations recorded, so changing the enums' home changed no schema.
SCOPES = [
    (s.value, s.value.capitalize()) for s in (Scope.BUILDING, Scope.SPACE, Scope.AREA, Scope.DEVICE)
]


def validate_time_zone(value: str) -> None:
    """An IANA time zone name this machine knows, e.g. ``Europe/London``."""
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"{value!r} is not a known time zone (e.g. Europe/London)") from None


def default_opening_days() -> list[int]:
    """Monday to Friday."""
    return [0, 1, 2, 3, 4]


class Building(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=True)
    name = models.CharField(max_length=200)
    # Every "today", chart axis, date filter and time shown for this building is in this zone;
    # storage stays UTC.
    timezone = models.CharField(
        max_length=64,
        default="UTC",
        validators=[validate_time_zone],
        help_text="IANA time zone name, e.g. Europe/London; from the Gooee Cloud on a sync.",
    )
    # Bumped whenever a space, area or device changes, so the bridge notices cheaply.
    inventory_version = models.PositiveBigIntegerField(default=0, editable=False)
    # Occupancy reports average over these hours only (local time, weekdays 0 = Monday).
    opening_days = models.JSONField(
        default=default_opening_days,
        help_text="Weekdays the building is open, 0 = Monday … 6 = Sunday, e.g. [0, 1, 2, 3, 4].",
    )
    opening_time = models.TimeField(default=datetime.time(8, 0))
    closing_time = models.TimeField(default=datetime.time(18, 0))
    report_recipients = models.TextField(
        blank=True, help_text="E-mail addresses for the occupancy digest, one per line."
    )
    # Off when empty: every place's count is reset to 0 at this local time each night.
    nightly_reset_at = models.TimeField(
        null=True, blank=True, help_text="Local time of the nightly headcount reset; empty = off."
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        """The building's time zone (UTC if its name is not known here, never an error)."""
        return zone_named(self.timezone)


def zone_named(name: str) -> zoneinfo.ZoneInfo:
    """The time zone of this name; UTC when there is none such (an unchecked row, say)."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo("UTC")


class Space(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=True)
    building = models.ForeignKey(Building, on_delete=models.CASCADE, related_name="spaces")
    # Spaces nest (a floor holding rooms); a parent is always a space of the same building.
    parent = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="children"
    )
    name = models.CharField(max_length=200)
    capacity = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Area(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=True)
    building = models.ForeignKey(Building, on_delete=models.CASCADE, related_name="areas")
    space = models.ForeignKey(
        Space, on_delete=models.SET_NULL, null=True, blank=True, related_name="areas"
    )
    name = models.CharField(max_length=200)
    capacity = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Device(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=True)
    building = models.ForeignKey(Building, on_delete=models.CASCADE, related_name="devices")
    # The device's first space: where its card sits and what a space action reaches.
    space = models.ForeignKey(
        Space, on_delete=models.SET_NULL, null=True, blank=True, related_name="devices"
    )
    # Every space it is in (the Gooee Cloud lets a device be in several), ``space`` included.
    spaces = models.ManyToManyField(Space, blank=True, related_name="member_devices")
    name = models.CharField(max_length=200)
    product_type = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Role(models.Model):
    """A user's role on one building; a user may hold several."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    SUPPORT = "support"
    CHOICES = [
        (VIEWER, "Viewer: sees the dashboard"),
        (OPERATOR, "Operator: viewer + sends actions"),
        (SUPPORT, "Support: viewer + inspects rejected and raw payloads"),
    ]

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="building_roles"
    )
    building = models.ForeignKey(Building, on_delete=models.CASCADE, related_name="roles")
    role = models.CharField(max_length=16, choices=CHOICES)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "building", "role"], name="unique_role")
        ]

    def __str__(self) -> str:
        return f"{self.user} is {self.role} of {self.building}"


class LatestMeta(models.Model):
    """The latest value of one meta name of one device."""

    # Indexed by the (device, name) constraint, which starts with it.
    device = models.ForeignKey(
        Device, on_delete=models.CASCADE, related_name="latest_meta", db_index=False
    )
    name = models.CharField(max_length=100)
    value = models.JSONField(null=True)
    display_name = models.CharField(max_length=200, blank=True)
    unit = models.CharField(max_length=50, blank=True)
    source_timestamp = models.CharField(max_length=40, blank=True)
    received_at = models.DateTimeField()
    # Read from the Gooee Cloud API by a sync, not received over MQTT; a live value replaces it.
    synced = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["device", "name"], name="unique_latest_meta")
        ]

    def __str__(self) -> str:
        return f"{self.device_id} {self.name}={self.value!r}"


class LatestHeadcount(models.Model):
    """The latest head_count, headcount_in or headcount_out of a building, space or area."""

    building = models.ForeignKey(Building, on_delete=models.CASCADE, related_name="headcounts")
    scope = models.CharField(max_length=10, choices=SCOPES)
    entity_id = models.UUIDField()
    kind = models.CharField(max_length=16)
    value = models.BigIntegerField()
    received_at = models.DateTimeField()
    # On a head_count row: the in and out counters when the count last became 0, which the
    # count is judged against from then on (dashboard/live/integrity.py).
    in_at_zero = models.BigIntegerField(null=True, blank=True)
    out_at_zero = models.BigIntegerField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["entity_id", "kind"], name="unique_latest_headcount")
        ]

    def __str__(self) -> str:
        return f"{self.scope} {self.entity_id} {self.kind}={self.value}"


class MetaSample(models.Model):
    """History of device meta values, written in batches."""

    # No index of its own: the (device, name, received_at) index below starts with it, and
    # every sample the history writer stores pays for each index (docs/benchmarks.md).
    device = models.ForeignKey(
        Device, on_delete=models.CASCADE, related_name="meta_samples", db_index=False
    )
    name = models.CharField(max_length=100)
    value = models.JSONField(null=True)
    received_at = models.DateTimeField(db_index=True)

    class Meta:
        indexes = [models.Index(fields=["device", "name", "received_at"])]

    def __str__(self) -> str:
        return f"{self.device_id} {self.name}={self.value!r} at {self.received_at}"


class HeadcountSample(models.Model):
    """History of headcounts, written in batches."""

    building = models.ForeignKey(Building, on_delete=models.CASCADE)
    scope = models.CharField(max_length=10, choices=SCOPES)
    entity_id = models.UUIDField()
    kind = models.CharField(max_length=16)
    value = models.BigIntegerField()
    received_at = models.DateTimeField(db_index=True)

    class Meta:
        indexes = [models.Index(fields=["entity_id", "kind", "received_at"])]

    def __str__(self) -> str:
        return f"{self.scope} {self.entity_id} {self.kind}={self.value} at {self.received_at}"


class OccupancyRollup(models.Model):
    """Headcounts of one place over one bucket (a minute or an hour, UTC start).

    Sums and counts, not means, so that batches written apart (a restart mid-minute) merge
    exactly; the in/out columns keep the bucket's last reading so the next batch's increment
    starts where this one stopped.
    """

    building = models.ForeignKey(Building, on_delete=models.CASCADE)
    scope = models.CharField(max_length=10, choices=SCOPES)
    entity_id = models.UUIDField()
    bucket = models.DateTimeField()
    count_min = models.BigIntegerField(null=True)
    count_max = models.BigIntegerField(null=True)
    count_sum = models.BigIntegerField(default=0)
    count_n = models.PositiveIntegerField(default=0)
    count_last = models.BigIntegerField(null=True)
    count_max_at = models.DateTimeField(null=True)  # when count_max was first seen
    in_increment = models.BigIntegerField(default=0)
    out_increment = models.BigIntegerField(default=0)
    in_last = models.BigIntegerField(null=True)
    out_last = models.BigIntegerField(null=True)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.scope} {self.entity_id} at {self.bucket}: max {self.count_max}"

    @property
    def count_mean(self) -> float | None:
        return self.count_sum / self.count_n if self.count_n else None


class OccupancyMinute(OccupancyRollup):
    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["entity_id", "bucket"], name="unique_occupancy_minute")
        ]
        indexes = [models.Index(fields=["building", "bucket"])]


# Every column the occupancy report reads, after the (entity, bucket) key: its grouped queries
# read a month of a place's hours from this index alone, in order, instead of fetching 720
# rows a place from all over the table (dashboard.reports).
REPORT_COLUMNS = [
    "entity_id",
    "bucket",
    "count_max",
    "count_min",
    "count_sum",
    "count_n",
    "count_max_at",
]


class OccupancyHour(OccupancyRollup):
    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["entity_id", "bucket"], name="unique_occupancy_hour")
        ]
        indexes = [
            models.Index(fields=["building", "bucket"]),
            models.Index(fields=REPORT_COLUMNS, name="occupancy_hour_report"),
        ]


class OccupancyDay(models.Model):
    """What the occupancy report needs of one place's local day (the building's zone), made
    from that day's hour rows (dashboard.live.occupancy_days): a month of 500 places is 15,000
    of these, against 360,000 hour rows.

    It depends on the building's zone (which day an hour falls on) and opening hours (which
    hours the average counts), so it is rebuilt when either changes; not on any capacity,
    so utilisation and time over capacity are worked out when read.
    """

    building = models.ForeignKey(Building, on_delete=models.CASCADE)
    entity_id = models.UUIDField()
    day = models.DateField()  # local
    peak = models.BigIntegerField(null=True)  # the day's largest count
    peak_at = models.DateTimeField(null=True)  # when the day's peak was first reached
    # The hourly means (count_sum / count_n) of the opening hours with readings: their sum and
    # how many. A period's average is its days' sums over their counts.
    open_sum = models.FloatField(default=0)
    open_hours = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["entity_id", "day"], name="unique_occupancy_day")
        ]
        indexes = [
            models.Index(fields=["building", "day"]),
            # Every column the report reads, after the key: read from the index alone.
            models.Index(
                fields=["entity_id", "day", "peak", "peak_at", "open_sum", "open_hours"],
                name="occupancy_day_report",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.entity_id} on {self.day}: peak {self.peak}"


class MetaRollup(models.Model):
    """A numeric device meta over one bucket (a minute or an hour, UTC start)."""

    # Indexed by each table's (device, name, bucket) constraint, which starts with it.
    device = models.ForeignKey(Device, on_delete=models.CASCADE, db_index=False)
    name = models.CharField(max_length=100)
    bucket = models.DateTimeField()
    value_min = models.FloatField()
    value_max = models.FloatField()
    value_sum = models.FloatField()
    value_n = models.PositiveIntegerField()
    value_last = models.FloatField()

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.device_id} {self.name} at {self.bucket}: {self.value_min}..{self.value_max}"

    @property
    def value_mean(self) -> float:
        return self.value_sum / self.value_n


class MetaMinute(MetaRollup):
    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["device", "name", "bucket"], name="unique_meta_minute")
        ]


class MetaHour(MetaRollup):
    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["device", "name", "bucket"], name="unique_meta_hour")
        ]


class FaultAlarm(models.Model):
    """An alarm, de-duplicated per (device or building, type) while open."""

    # The web modules' short names for the states.
    OPEN = AlarmState.OPEN
    ACKNOWLEDGED = AlarmState.ACKNOWLEDGED
    CLEARED = AlarmState.CLEARED
    STATES = [(state.value, state.value.capitalize()) for state in AlarmState]

    building = models.ForeignKey(Building, on_delete=models.CASCADE, related_name="alarms")
    device = models.ForeignKey(
        Device, on_delete=models.CASCADE, null=True, blank=True, related_name="alarms"
    )
    type = models.CharField(max_length=100)
    level = models.CharField(max_length=32)
    priority = models.PositiveSmallIntegerField()
    description = models.TextField(blank=True)
    notes = models.TextField(blank=True)
    payload = models.JSONField()
    state = models.CharField(max_length=16, choices=STATES, default=OPEN)
    count = models.PositiveIntegerField(default=1)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    cleared_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    cleared_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-last_seen"]
        indexes = [models.Index(fields=["building", "state"])]

    def __str__(self) -> str:
        return f"{self.level} {self.type} ({self.state}, x{self.count})"


class AlarmEvent(models.Model):
    """An alarm's history: who acknowledged or cleared it, when, and why."""

    # An event's kind is the value of the state it moved the alarm to.
    ACKNOWLEDGED = AlarmState.ACKNOWLEDGED.value
    CLEARED = AlarmState.CLEARED.value
    KINDS = [(ACKNOWLEDGED, "Acknowledged"), (CLEARED, "Cleared")]

    alarm = models.ForeignKey(FaultAlarm, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=16, choices=KINDS)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    username = models.CharField(max_length=150)  # kept when the user is deleted
    note = models.TextField(blank=True)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.kind} by {self.username} at {self.at:%Y-%m-%d %H:%M}"


class RejectedPayload(models.Model):
    """A refusal the cloud published on a ``/rejected`` topic."""

    building = models.ForeignKey(Building, on_delete=models.CASCADE, related_name="rejections")
    device = models.ForeignKey(Device, on_delete=models.SET_NULL, null=True, blank=True)
    topic = models.CharField(max_length=300)
    kind = models.CharField(max_length=32)
    message = models.TextField()
    # dashboard.contract.rejections.signature(kind, message): equal for the same mistake.
    signature = models.CharField(max_length=32, db_index=True, default="")
    context = models.JSONField(null=True)
    data = models.JSONField(null=True)
    received_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-received_at"]
        indexes = [models.Index(fields=["building", "signature"])]

    def __str__(self) -> str:
        return f"{self.topic}: {self.message[:80]}"


class MalformedPayload(models.Model):
    """A message the dashboard itself could not accept (not JSON, wrong shape, too big)."""

    building = models.ForeignKey(Building, on_delete=models.CASCADE, related_name="malformed")
    topic = models.CharField(max_length=300)
    kind = models.CharField(max_length=32)
    reason = models.TextField()
    raw = models.TextField()
    received_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.topic}: {self.reason[:80]}"


class ActionSeen(models.Model):
    """An action as it came back on a building's or space's action topic."""

    building = models.ForeignKey(Building, on_delete=models.CASCADE, related_name="actions_seen")
    topic = models.CharField(max_length=300)
    name = models.CharField(max_length=200)
    type = models.CharField(max_length=50)
    target_type = models.CharField(max_length=16)
    target_id = models.UUIDField()
    value = models.JSONField(null=True)
    created = models.CharField(max_length=40)
    received_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.type} {self.target_type} {self.target_id}"


class ActionAttempt(models.Model):
    """The audit log: every action an operator tried, written before anything is published."""

    # The web modules' short names for the outcomes (see live.state.Outcome).
    PENDING = Outcome.PENDING
    REFUSED = Outcome.REFUSED
    FAILED = Outcome.FAILED
    ACKNOWLEDGED = Outcome.ACKNOWLEDGED
    SEEN = Outcome.SEEN
    OUTCOMES = [(outcome.value, outcome.value) for outcome in Outcome]
    CONFIRMATIONS = [(c.value, confirmation.TEXT.get(c, c.value) or "—") for c in Confirmation]

    building = models.ForeignKey(Building, on_delete=models.CASCADE, related_name="attempts")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    username = models.CharField(max_length=150)  # kept when the user is deleted
    target_type = models.CharField(max_length=16)  # space or device
    target_id = models.UUIDField(null=True)
    target_name = models.CharField(max_length=200, blank=True)
    topic = models.CharField(max_length=300, blank=True)
    payload = models.TextField(blank=True)  # the exact bytes published, as text
    # Unique per building, as it is looked up: a form's key only ever means its own building.
    # NULL (refused rows have no key), as NULLs never collide under the constraint.
    idempotency_key = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    batch = models.UUIDField(null=True, blank=True)  # one building-wide action, many spaces
    outcome = models.CharField(max_length=16, choices=OUTCOMES, default=PENDING, db_index=True)
    reason = models.TextField(blank=True)
    # Refused only: further refusals of the same user and building in that minute, counted
    # here instead of each written as a row (ACTION_REFUSALS_LOGGED_PER_MINUTE).
    suppressed = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    seen_at = models.DateTimeField(null=True, blank=True)
    # Confirmed outcome: do the target lamps report what was asked (live/confirmation.py)?
    # The lamps followed ([{id, name}]), written with the row; by the deadline (the transition
    # time plus ACTION_CONFIRM_GRACE_SECONDS) the bridge settles it.
    confirm_targets = models.JSONField(default=list, blank=True)
    confirm_deadline = models.DateTimeField(null=True, blank=True)
    confirmation = models.CharField(
        max_length=16, choices=CONFIRMATIONS, default="", blank=True, db_index=True
    )
    confirmed_count = models.PositiveIntegerField(default=0)
    lamp_count = models.PositiveIntegerField(default=0)
    # followed (device ids), missing ([{id, name, last}]) and late ([{id, name, late}])
    confirmation_detail = models.JSONField(default=dict, blank=True)
    # A retry of the lamps of another attempt that did not follow.
    retry_of = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="retries"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "created_at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["building", "idempotency_key"], name="unique_idempotency_key_per_building"
            )
        ]

    def __str__(self) -> str:
        return f"{self.username}: {self.target_name or self.target_id} {self.outcome}"

    def confirmation_summary(self) -> dict[str, Any]:
        """Its confirmation as stored, in the shape the bridge pushes (``Pending.summary()``)."""
        return confirmation.summary_of(
            self.confirmation, self.confirmed_count, self.lamp_count, self.confirmation_detail or {}
        )

    def confirmation_text(self) -> dict[str, Any] | None:
        """Its confirmation as people read it: text, lamps that did not follow, late ones."""
        return confirmation.describe(self.confirmation_summary())
