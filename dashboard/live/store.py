"""Live state to and from the database (synchronous; the bridge calls it off the loop)."""

from __future__ import annotations

import dataclasses
import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DataError, transaction
from django.db.models import F, Q, TextField, Value
from django.db.models.functions import Concat
from django.utils import timezone

from dashboard import models
from dashboard.contract import rejections
from dashboard.contract.topics import Kind
from dashboard.live import columns, confirmation, metrics, rollups
from dashboard.live.state import (
    ActionRecord,
    Alarm,
    AlarmState,
    AttemptSeen,
    ConfirmationUpdate,
    HeadcountValue,
    MalformedMessage,
    MetaValue,
    Outcome,
    Rejection,
    ZeroMark,
)

OPEN_STATES = (AlarmState.OPEN, AlarmState.ACKNOWLEDGED)
SAMPLE_COLUMNS = ("device_id", "name", "value", "received_at")
# What a newer value of a device's meta name replaces, live or synced (current_values.py).
LATEST_META_FIELDS = ["value", "display_name", "unit", "source_timestamp", "received_at", "synced"]
LATEST_META_COLUMNS = ("device_id", "name", *LATEST_META_FIELDS)
SEEN_AFTER_FAILED = "published after all: it came back after being recorded failed"


def write_batch(batch: list[tuple[uuid.UUID, object]]) -> int:
    """Persist a batch of (building id, record) in one transaction; return rows written."""
    try:
        return _write(batch)
    except (DataError, ValueError) as exc:
        # PostgreSQL refuses NUL in text and jsonb; device data may hold one. Such a batch
        # is written again with NUL replaced, rather than retried (and refused) forever.
        if "NUL" not in str(exc) and "\\u0000" not in str(exc):
            raise
        return _write([(building_id, _without_nul(record)) for building_id, record in batch])


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_without_nul(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: _without_nul(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return dataclasses.replace(value, **changes)
    return value


# (building id, record) lists by the record's type; each writer takes the records of its type.
ByType = dict[type, list[tuple[uuid.UUID, Any]]]


def _write(batch: list[tuple[uuid.UUID, object]]) -> int:
    by_type: ByType = defaultdict(list)
    # A building deleted while its records were queued: they are dropped, not allowed to fail
    # every later batch (the writer retries a failed batch until it is written).
    buildings = set(
        models.Building.objects.filter(id__in={b for b, _ in batch}).values_list("id", flat=True)
    )
    for building_id, record in batch:
        if building_id in buildings:
            by_type[type(record)].append((building_id, record))
    known_devices = _existing_devices(by_type)
    written = 0
    with transaction.atomic():
        written += _write_meta(by_type[MetaValue], known_devices)
        written += _write_headcounts(by_type[HeadcountValue])
        written += _write_zero_marks(by_type[ZeroMark])
        written += _write_alarms(by_type[Alarm], known_devices)
        written += _write_simple(by_type, known_devices)
        written += _write_seen(by_type[AttemptSeen])
        written += _write_confirmations(by_type[ConfirmationUpdate])
    return written


def _write_confirmations(items: list[tuple[uuid.UUID, ConfirmationUpdate]]) -> int:
    for _, update in items:
        summary = update.summary
        models.ActionAttempt.objects.filter(id=update.attempt_id).update(
            confirmation=summary["state"],
            confirmed_count=summary["confirmed"],
            lamp_count=summary["total"],
            confirmation_detail={
                k: summary[k] for k in ("followed", "missing", "late", "noun") if k in summary
            },
        )
    return len(items)


def _write_seen(items: list[tuple[uuid.UUID, AttemptSeen]]) -> int:
    for _, seen in items:
        attempt = models.ActionAttempt.objects.filter(id=seen.attempt_id)
        # Recorded failed (no PUBACK in time), yet it came back: it went out. Say so,
        # keeping why it was thought failed, rather than overwrite the outcome silently.
        attempt.filter(outcome=Outcome.FAILED).update(
            reason=Concat(
                Value(SEEN_AFTER_FAILED + " ("), F("reason"), Value(")"), output_field=TextField()
            )
        )
        attempt.update(outcome=Outcome.SEEN, seen_at=seen.seen_at)
    metrics.ACTIONS.labels(Outcome.SEEN).inc(len(items))
    return len(items)


def _existing_devices(by_type: ByType) -> set[uuid.UUID]:
    # A device removed from the inventory while its records were queued is skipped,
    # not allowed to fail the whole batch.
    ids = {
        record.device_id
        for kind in (MetaValue, Alarm, Rejection)
        for _, record in by_type.get(kind, [])
        if record.device_id is not None
    }
    return set(models.Device.objects.filter(id__in=ids).values_list("id", flat=True))


def _write_meta(items: list[tuple[uuid.UUID, MetaValue]], devices: set[uuid.UUID]) -> int:
    values = [v for _, v in items if v.device_id in devices]
    # History: one row a value, the bulk of what the writer does.
    columns.write_rows(
        models.MetaSample,
        SAMPLE_COLUMNS,
        [(v.device_id, v.name, v.value, v.received_at) for v in values],
    )
    rollups.write([], [(v.device_id, v.name, v.value, v.received_at) for v in values])
    latest = {(v.device_id, v.name): v for v in values}
    columns.write_rows(
        models.LatestMeta,
        LATEST_META_COLUMNS,
        [
            (
                v.device_id,
                v.name,
                v.value,
                v.display_name[:200],
                v.unit[:50],
                v.source_timestamp[:40],
                v.received_at,
                False,  # a live value replaces a synced one, and says so
            )
            for v in latest.values()
        ],
        conflict=("device_id", "name"),
        updates=columns.replacing(LATEST_META_FIELDS),
    )
    return len(values) + len(latest)


def _write_headcounts(items: list[tuple[uuid.UUID, HeadcountValue]]) -> int:
    models.HeadcountSample.objects.bulk_create(
        models.HeadcountSample(
            building_id=b,
            scope=v.scope,
            entity_id=v.entity_id,
            kind=v.kind,
            value=v.value,
            received_at=v.received_at,
        )
        for b, v in items
    )
    rollups.write([(b, v.scope, v.entity_id, v.kind, v.value, v.received_at) for b, v in items], [])
    latest = {(v.entity_id, v.kind): (b, v) for b, v in items}
    models.LatestHeadcount.objects.bulk_create(
        [
            models.LatestHeadcount(
                building_id=b,
                scope=v.scope,
                entity_id=v.entity_id,
                kind=v.kind,
                value=v.value,
                received_at=v.received_at,
            )
            for b, v in latest.values()
        ],
        update_conflicts=True,
        unique_fields=["entity_id", "kind"],
        update_fields=["value", "received_at", "building", "scope"],
    )
    return len(items) + len(latest)


def _write_zero_marks(items: list[tuple[uuid.UUID, ZeroMark]]) -> int:
    """On each place's head_count row, written just before (rare: a count becoming 0)."""
    for _, mark in items:
        models.LatestHeadcount.objects.filter(
            entity_id=mark.entity_id, kind=Kind.HEAD_COUNT
        ).update(in_at_zero=mark.counters.headcount_in, out_at_zero=mark.counters.headcount_out)
    return len(items)


def _write_alarms(items: list[tuple[uuid.UUID, Alarm]], devices: set[uuid.UUID]) -> int:
    # The in-memory alarm carries its running count, so writing its latest state is idempotent.
    latest = {(b, a.device_id, a.type): a for b, a in items}
    for (building_id, device_id, alarm_type), alarm in latest.items():
        if device_id is not None and device_id not in devices:
            continue
        fields = {
            "level": alarm.level[:32],
            "priority": alarm.priority,
            "description": alarm.description,
            "notes": alarm.notes,
            "payload": alarm.payload,
            "count": alarm.count,
            "last_seen": alarm.last_seen,
        }
        updated = models.FaultAlarm.objects.filter(
            building_id=building_id,
            # None is the building's own alarm; django-stubs types the lookup without NULL.
            device_id=device_id,  # type: ignore[misc]
            type=alarm_type,
            state__in=OPEN_STATES,
        ).update(**fields)
        if not updated and not _cleared_since(building_id, device_id, alarm_type, alarm):
            models.FaultAlarm.objects.create(
                building_id=building_id,
                device_id=device_id,
                type=alarm_type[:100],
                first_seen=alarm.first_seen,
                **fields,
            )
    return len(latest)


def _cleared_since(
    building_id: uuid.UUID, device_id: uuid.UUID | None, alarm_type: str, alarm: Alarm
) -> bool:
    """Whether someone cleared this alarm after the occurrence the record describes.

    A record queued before a clear may be written after it: the clear, being newer, wins,
    rather than the old occurrence reopening the alarm with its old count.
    """
    device = Q(device__isnull=True) if device_id is None else Q(device_id=device_id)
    return models.FaultAlarm.objects.filter(
        device,
        building_id=building_id,
        type=alarm_type,
        state=AlarmState.CLEARED,
        cleared_at__gte=alarm.last_seen,
    ).exists()


def _write_simple(by_type: ByType, devices: set[uuid.UUID]) -> int:
    rejected = [
        models.RejectedPayload(
            building_id=b,
            device_id=r.device_id if r.device_id in devices else None,
            topic=r.topic,
            kind=r.kind,
            message=r.message,
            signature=rejections.signature(r.kind, r.message),
            context=r.context,
            data=r.data,
            received_at=r.received_at,
        )
        for b, r in by_type.get(Rejection, [])
    ]
    malformed = [
        models.MalformedPayload(
            building_id=b,
            topic=m.topic[:300],
            kind=m.kind,
            reason=m.reason,
            raw=m.raw,
            received_at=m.received_at,
        )
        for b, m in by_type.get(MalformedMessage, [])
    ]
    actions = [
        models.ActionSeen(
            building_id=b,
            topic=a.topic,
            name=a.name[:200],
            type=a.type[:50],
            target_type=a.target_type[:16],
            target_id=a.target_id,
            value=a.value,
            created=a.created[:40],
            received_at=a.received_at,
        )
        for b, a in by_type.get(ActionRecord, [])
    ]
    models.RejectedPayload.objects.bulk_create(rejected)
    models.MalformedPayload.objects.bulk_create(malformed)
    models.ActionSeen.objects.bulk_create(actions)
    return len(rejected) + len(malformed) + len(actions)


def prune_history(
    days: int,
    now: datetime | None = None,
    *,
    minute_days: int | None = None,
    hour_days: int | None = None,
) -> dict[str, int]:
    """Delete history older than ``days``, and each rollup tier past its own window
    (``ROLLUP_MINUTE_DAYS``, ``ROLLUP_HOUR_DAYS`` unless given); return rows removed per table."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=days)
    removed = {}
    tiers = (
        (minute_days or settings.ROLLUP_MINUTE_DAYS, (models.OccupancyMinute, models.MetaMinute)),
        (hour_days or settings.ROLLUP_HOUR_DAYS, (models.OccupancyHour, models.MetaHour)),
    )
    for window, tier in tiers:
        for rollup in tier:
            since = now - timedelta(days=window)
            removed[rollup.__name__], _ = rollup.objects.filter(bucket__lt=since).delete()
    # Day rows as long as hour rows: a local day is gone when it ended before the hours'
    # window began in every zone (a local day ends at most 12 hours after the UTC one).
    hours_since = now - timedelta(days=hour_days or settings.ROLLUP_HOUR_DAYS)
    old_days = models.OccupancyDay.objects.filter(day__lt=hours_since.date() - timedelta(days=1))
    removed["OccupancyDay"], _ = old_days.delete()
    for model in (
        models.MetaSample,
        models.HeadcountSample,
        models.RejectedPayload,
        models.MalformedPayload,
        models.ActionSeen,
    ):
        removed[model.__name__], _ = model.objects.filter(received_at__lt=cutoff).delete()
    closed = Q(state=AlarmState.CLEARED, last_seen__lt=cutoff)
    removed["FaultAlarm"], _ = models.FaultAlarm.objects.filter(closed).delete()
    return removed


def settle_attempts(settled: list[tuple[int, bool, str]]) -> None:
    """Record whether the broker acknowledged each attempt's publish, as (id, ok, reason):
    an operator's action on one space or many, or the nightly reset's; one update per
    outcome and reason, not per attempt."""
    failed: dict[str, list[int]] = defaultdict(list)
    for attempt_id, ok, reason in settled:
        if not ok:
            failed[reason[:1000]].append(attempt_id)
    acknowledged = [attempt_id for attempt_id, ok, _ in settled if ok]
    # Conditional: the bridge may already have marked them seen; never move one back.
    pending = models.ActionAttempt.objects.filter(outcome=Outcome.PENDING)
    if acknowledged:
        pending.filter(id__in=acknowledged).update(
            outcome=Outcome.ACKNOWLEDGED, acknowledged_at=timezone.now()
        )
        metrics.ACTIONS.labels(Outcome.ACKNOWLEDGED).inc(len(acknowledged))
    for reason, ids in failed.items():
        pending.filter(id__in=ids).update(outcome=Outcome.FAILED, reason=reason)
        # Nothing reached the lamps (a publish that timed out is still followed: it may
        # have gone out, and the bridge settles it).
        if "no acknowledgement" not in reason:
            models.ActionAttempt.objects.filter(
                id__in=ids, confirmation=confirmation.Confirmation.PENDING
            ).update(confirmation=confirmation.Confirmation.NONE)
        metrics.ACTIONS.labels(Outcome.FAILED).inc(len(ids))
