"""Current values a cloud sync brings: shown at once, and never over a newer live value.

A device's ``meta`` from the Gooee Cloud API becomes its latest value (``LatestMeta``, marked
``synced``) when the dashboard has none for that name or an older one; a value without a
timestamp only fills a gap. Spaces' ``head_count``/``headcount_in``/``headcount_out`` become
their latest headcounts by the same rule. Live MQTT values are written over them as they come.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from django.utils import timezone

from dashboard.contract import meta_definitions
from dashboard.contract.topics import Scope
from dashboard.live import store
from dashboard.live.inventory_file import CurrentValue, InventoryFile
from dashboard.models import LatestHeadcount, LatestMeta

MAX_VALUE_CHARS = 4096  # a meta value is a number, a flag or a short text; more is not one
HEADCOUNT_KINDS = {
    "head_count": "head_count",
    "headcount": "head_count",
    "headcount_in": "headcount_in",
    "headcount_out": "headcount_out",
}


def source_time(timestamp: str, now: datetime) -> datetime | None:
    """The value's time from its ISO 8601 timestamp (never later than now), or None."""
    try:
        moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return min(moment, now)


def _wins(new: datetime | None, old: datetime | None) -> bool:
    # A value without a time fills a gap only; a dated one must be newer than ours.
    return old is None or (new is not None and new > old)


def _storable(value: CurrentValue) -> bool:
    try:
        return len(json.dumps(value.value)) <= MAX_VALUE_CHARS and "\x00" not in value.name
    except (TypeError, ValueError):
        return False


def write(inventory: InventoryFile) -> int:
    """Take the file's current values that are newer than ours; how many were taken."""
    now = timezone.now()
    taken = 0
    device_values = {
        d.id: [v for v in d.values if _storable(v)]
        for b in inventory.buildings
        for d in b.devices
        if d.values
    }
    existing = {
        (device_id, name): at
        for device_id, name, at in LatestMeta.objects.filter(
            device_id__in=list(device_values)
        ).values_list("device_id", "name", "received_at")
    }
    rows = []
    for device_id, values in device_values.items():
        for v in values:
            at = source_time(v.timestamp, now) if v.timestamp else None
            if not _wins(at, existing.get((device_id, v.name))):
                continue
            definition = meta_definitions.meta_definition(v.name)
            rows.append(
                LatestMeta(
                    device_id=device_id,
                    name=v.name[:100],
                    value=v.value,
                    display_name=(definition.display_name if definition else v.name)[:200],
                    unit=((definition.unit if definition else None) or "")[:50],
                    source_timestamp=v.timestamp[:40],
                    received_at=at or now,
                    synced=True,
                )
            )
    LatestMeta.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["device", "name"],
        update_fields=store.LATEST_META_FIELDS,
        batch_size=500,
    )
    taken += len(rows)
    taken += _write_headcounts(inventory, now)
    return taken


def _write_headcounts(inventory: InventoryFile, now: datetime) -> int:
    wanted: dict[tuple[uuid.UUID, str], tuple[uuid.UUID, int, datetime | None]] = {}
    for b in inventory.buildings:
        for s in b.spaces:
            for v in s.values:
                kind = HEADCOUNT_KINDS.get(v.name)
                # bool is an int in Python, and never a count.
                if kind is None or not isinstance(v.value, int) or isinstance(v.value, bool):
                    continue
                if not 0 <= v.value <= 2**53:
                    continue
                at = source_time(v.timestamp, now) if v.timestamp else None
                wanted[(s.id, kind)] = (b.id, v.value, at)
    existing = {
        (entity_id, kind): at
        for entity_id, kind, at in LatestHeadcount.objects.filter(
            entity_id__in=[entity for entity, _ in wanted]
        ).values_list("entity_id", "kind", "received_at")
    }
    rows = [
        LatestHeadcount(
            building_id=building_id,
            scope=Scope.SPACE,
            entity_id=entity_id,
            kind=kind,
            value=value,
            received_at=at or now,
        )
        for (entity_id, kind), (building_id, value, at) in wanted.items()
        if _wins(at, existing.get((entity_id, kind)))
    ]
    LatestHeadcount.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["entity_id", "kind"],
        update_fields=["value", "received_at"],
    )
    return len(rows)
