"""The fault alarms' filter."""

from __future__ import annotations

import uuid

from django import forms
from django.db.models import Q, QuerySet
from django.http import QueryDict

from dashboard.filters.base import Choice, FilterForm, Text, space_of, uuid_or_none
from dashboard.live.buildings import BuildingInventory, space_inventory
from dashboard.models import Building, Device, FaultAlarm

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
        device_id = uuid_or_none(device)
        if device_id and Device.objects.filter(building=self.building, id=device_id).exists():
            return str(device_id)
        raise forms.ValidationError("not a device of this building.")

    def clean_space(self) -> uuid.UUID | None:
        return space_of(self.building, self.cleaned_data["space"])

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
            # The space's devices and those of every space inside it (a floor's rooms), each
            # device by its card's space or any other it is in.
            inside = self._spaces().within(space)
            devices = Device.objects.filter(Q(space_id__in=inside) | Q(spaces__in=inside))
            alarms = alarms.filter(device_id__in=devices.values("id"))
        return alarms.order_by("-last_seen", "-id")

    def _spaces(self) -> BuildingInventory:
        return space_inventory(
            self.building.id, self.building.spaces.values_list("id", "name", "parent_id")
        )

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
        # Each floor followed by its rooms, indented: choosing a floor includes them.
        spaces = [
            (str(s.id), "\u2003" * depth + s.name) for s, depth in self._spaces().space_tree()
        ]
        self.offer("level", [("", "Any level"), *((lv, lv) for lv in levels)])
        self.offer("device", devices)
        self.offer("space", [("", "Any space"), *spaces])
