"""The broker contract's example payloads, row for row, as test data."""

from __future__ import annotations

from typing import Any

from dashboard.contract.topics import Kind, Scope

DEVICE_META = [
    {
        "name": "temperature",
        "display_name": "Temperature",
        "value": 87.4,
        "unit_of_measure": "C",
        "timestamp": "2016-08-09T20:00:47.539000Z",
    },
    {
        "name": "als",
        "value": 87,
        "unit_of_measure": "K",
        "timestamp": "2016-08-09T20:00:47.539000Z",
    },
]
DEVICE_META_ITEM = {
    "name": "temperature",
    "value": 87.4,
    "timestamp": "2016-08-09T20:00:47.539000Z",
}
DEVICE_ACTION = {
    "name": "Dim Device",
    "type": "dim",
    "target_type": "device",
    "target_id": "8551e830-eab3-4de4-84d4-bd9ff6615b7f",
    "value": {"level": 80, "transition_time": 5},
    "created": "2016-08-09T20:00:47.539000Z",
}
SPACE_ACTION = {
    "name": "Turn Off the Office",
    "type": "off",
    "target_type": "space",
    "target_id": "6f00fb32-2b3d-44c8-90cf-e526c252f6d5",
    "value": {"transition_time": 5},
    "created": "2016-08-09T20:00:47.539000Z",
}
BUILDING_ACTION = {
    "name": "Dim Device",
    "type": "dim",
    "target_type": "device",
    "target_id": "deb13bee-b69c-4b1d-a60b-c77ab53e3eb3",
    "value": {"level": 80, "transition_time": 5},
    "created": "2016-08-09T20:00:47.539000Z",
}
DEVICE_FAULT_ALARM = {
    "id": "330de737-0f36-4b33-bc91-c4be5ddd4442",
    "timestamp": "2020-02-17T15:47:53.046570Z",
    "priority": 255,
    "level": "info",
    "type": "high_temperature",
    "device": "b87fd763-0292-469e-8237-fc82a9f50d8c",
    "notes": "Additional notes",
    "value": {"temp": 100},
    "description": "Temperature is above 90°F.",
}
BUILDING_FAULT_ALARM = {k: v for k, v in DEVICE_FAULT_ALARM.items() if k != "id"}
REJECTED = {
    "error": {
        "message": 'Invalid payload due to regex pattern not matching.  Position: [0]/name. Value: "Meta_New".',
        "context": {
            "type": "string",
            "title": "Name",
            "pattern": "^(~?)(?!.*__.*)[a-z][a-z0-9_]+$",
            "minLength": 1,
            "maxLength": 100,
        },
    },
    "data": [
        {"name": "Meta_New", "display_name": "Meta New", "unit_of_measure": "Meters", "value": 10}
    ],
}


def without_type(action: dict[str, Any]) -> dict[str, Any]:
    """The ``/actions/<type>`` shape: the action without its type."""
    return {k: v for k, v in action.items() if k != "type"}


def headcount(name: str, value: int) -> dict[str, Any]:
    return {"name": name, "value": value}


# (scope, kind, name-or-type segment, payload): one per row of the contract's tables.
EXAMPLES: list[tuple[Scope, Kind, str | None, Any]] = [
    (Scope.DEVICE, Kind.META, None, DEVICE_META),
    (Scope.DEVICE, Kind.META_ITEM, "temperature", DEVICE_META_ITEM),
    (Scope.DEVICE, Kind.ACTION, None, DEVICE_ACTION),
    (Scope.DEVICE, Kind.TYPED_ACTION, "dim", without_type(DEVICE_ACTION)),
    (Scope.DEVICE, Kind.FAULT_ALARM, None, DEVICE_FAULT_ALARM),
    (Scope.AREA, Kind.HEAD_COUNT, None, headcount("headcount", 2)),
    (Scope.AREA, Kind.HEADCOUNT_IN, None, headcount("headcount_in", 2)),
    (Scope.AREA, Kind.HEADCOUNT_OUT, None, headcount("headcount_out", 2)),
    (Scope.SPACE, Kind.ACTION, None, SPACE_ACTION),
    (Scope.SPACE, Kind.TYPED_ACTION, "off", without_type(SPACE_ACTION)),
    (Scope.SPACE, Kind.HEAD_COUNT, None, headcount("headcount", 5)),
    (Scope.SPACE, Kind.HEADCOUNT_IN, None, headcount("headcount_in", 5)),
    (Scope.SPACE, Kind.HEADCOUNT_OUT, None, headcount("headcount_out", 5)),
    (Scope.BUILDING, Kind.ACTION, None, BUILDING_ACTION),
    (Scope.BUILDING, Kind.TYPED_ACTION, "dim", without_type(BUILDING_ACTION)),
    (Scope.BUILDING, Kind.FAULT_ALARM, None, BUILDING_FAULT_ALARM),
    (Scope.BUILDING, Kind.HEAD_COUNT, None, headcount("headcount", 20)),
    (Scope.BUILDING, Kind.HEADCOUNT_IN, None, headcount("headcount_in", 20)),
    (Scope.BUILDING, Kind.HEADCOUNT_OUT, None, headcount("headcount_out", 20)),
    (Scope.DEVICE, Kind.REJECTED_META, None, REJECTED),
    (Scope.DEVICE, Kind.REJECTED_FAULT_ALARM, None, REJECTED),
    (Scope.BUILDING, Kind.REJECTED_FAULT_ALARM, None, REJECTED),
]
