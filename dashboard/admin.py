from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db.models import QuerySet
from django.http import HttpRequest

from dashboard.models import (
    ActionAttempt,
    ActionSeen,
    AlarmEvent,
    Area,
    Building,
    Device,
    FaultAlarm,
    MalformedPayload,
    RejectedPayload,
    Role,
    Space,
)


class RoleInline(admin.TabularInline):
    model = Role
    extra = 1
    autocomplete_fields = ["user"]


BUILDING_FIELDS: list[Any] = [
    "id",
    "name",
    "timezone",
    "opening_days",
    "opening_time",
    "closing_time",
    "report_recipients",
    "nightly_reset_at",
]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


class BuildingForm(forms.ModelForm):
    """Opening days as ticks, opening before closing, and one valid address a line."""

    opening_days = forms.TypedMultipleChoiceField(
        choices=list(enumerate(WEEKDAYS)),
        coerce=int,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Occupancy reports average over these days' opening hours only.",
    )

    class Meta:
        model = Building
        fields = BUILDING_FIELDS

    def clean_report_recipients(self) -> str:
        lines = [line.strip() for line in self.cleaned_data["report_recipients"].splitlines()]
        addresses = [line for line in lines if line]
        for address in addresses:
            try:
                validate_email(address)
            except ValidationError:
                raise ValidationError(f"{address!r} is not an e-mail address.") from None
        return "\n".join(addresses)

    def clean_opening_days(self) -> list[int]:
        return sorted(set(self.cleaned_data["opening_days"]))

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        opens, closes = data.get("opening_time"), data.get("closing_time")
        if opens is not None and closes is not None and closes <= opens:
            self.add_error("closing_time", "Closing time must be after opening time.")
        return data


@admin.register(Building)
class BuildingAdmin(admin.ModelAdmin):
    # The time zone is checked by the model's validator: an unknown name is refused on save.
    form = BuildingForm
    list_display = ["name", "timezone", "nightly_reset_at", "id"]
    fields = BUILDING_FIELDS
    search_fields = ["name", "id"]
    inlines = [RoleInline]


@admin.register(Space)
class SpaceAdmin(admin.ModelAdmin):
    list_display = ["name", "building", "parent", "capacity", "id"]
    list_filter = ["building"]
    search_fields = ["name", "id"]
    autocomplete_fields = ["parent"]


@admin.register(Area)
class AreaAdmin(admin.ModelAdmin):
    list_display = ["name", "building", "space", "capacity", "id"]
    list_filter = ["building"]
    search_fields = ["name", "id"]


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = ["name", "building", "space", "in_spaces", "product_type", "id"]
    list_filter = ["building", "product_type"]
    search_fields = ["name", "id", "product_type"]
    autocomplete_fields = ["space", "spaces"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Device]:
        return super().get_queryset(request).prefetch_related("spaces")

    @admin.display(description="Spaces")
    def in_spaces(self, device: Device) -> str:
        return ", ".join(space.name for space in device.spaces.all())


@admin.register(Role)
class RoleAdmin(admin.ModelAdmin):
    list_display = ["user", "building", "role"]
    list_filter = ["role", "building"]
    search_fields = ["user__username", "building__name"]


class AlarmEventInline(admin.TabularInline):
    """An alarm's history, as people wrote it on the alarms page: shown, never edited."""

    model = AlarmEvent
    readonly_fields = ("at", "kind", "username", "note")
    fields = readonly_fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: FaultAlarm | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: FaultAlarm | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: FaultAlarm | None = None) -> bool:
        return False


@admin.register(FaultAlarm)
class FaultAlarmAdmin(admin.ModelAdmin):
    list_display = [
        "type",
        "level",
        "priority",
        "building",
        "device",
        "state",
        "count",
        "last_seen",
    ]
    list_filter = ["state", "level", "building"]
    search_fields = ["type", "description"]
    inlines = [AlarmEventInline]


@admin.register(RejectedPayload)
class RejectedPayloadAdmin(admin.ModelAdmin):
    list_display = ["received_at", "building", "device", "kind", "message"]
    list_filter = ["kind", "building"]
    search_fields = ["message", "topic"]


@admin.register(MalformedPayload)
class MalformedPayloadAdmin(admin.ModelAdmin):
    list_display = ["received_at", "building", "kind", "reason"]
    list_filter = ["kind", "building"]
    search_fields = ["reason", "topic"]


@admin.register(ActionSeen)
class ActionSeenAdmin(admin.ModelAdmin):
    list_display = ["received_at", "building", "name", "type", "target_type", "target_id"]
    list_filter = ["type", "building"]
    search_fields = ["name", "topic"]


@admin.register(ActionAttempt)
class ActionAttemptAdmin(admin.ModelAdmin):
    """The audit log of operators' actions: readable by staff, never edited here."""

    list_display = [
        "created_at",
        "username",
        "building",
        "target",
        "outcome",
        "lamps",
        "reason",
    ]
    list_filter = ["outcome", "confirmation", "building", "target_type"]
    search_fields = ["username", "target_name", "topic", "reason", "payload"]
    date_hierarchy = "created_at"
    list_select_related = ["building"]

    @admin.display(description="Lamps", ordering="confirmation")
    def lamps(self, attempt: ActionAttempt) -> str:
        """Whether its lamps followed, and those that did not."""
        shown = attempt.confirmation_text()
        if shown is None:
            return "-"
        return "; ".join([shown["text"], *shown["missing"], *shown["late"]])

    @admin.display(description="Target", ordering="target_name")
    def target(self, attempt: ActionAttempt) -> str:
        return f"{attempt.target_name or attempt.target_id} ({attempt.target_type})"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ActionAttempt | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ActionAttempt | None = None) -> bool:
        return False
