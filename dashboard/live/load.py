"""What pages and a starting bridge read back: a building's live state, its pending confirmations.

Synchronous; the bridge calls it off the loop. ``store`` writes what this reads.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection

from django.utils import timezone

from dashboard import models
from dashboard.live import confirmation
from dashboard.live.integrity import CountersAtZero
from dashboard.live.state import (
    ActionRecord,
    Alarm,
    AlarmState,
    BatchTotal,
    HeadcountValue,
    LastAction,
    LiveState,
    MalformedMessage,
    MetaValue,
    Outcome,
    Rejection,
)
from dashboard.live.store import OPEN_STATES


def load_state(building_id: uuid.UUID, devices: Collection[uuid.UUID] | None = None) -> LiveState:
    """The building's live state as last written: what a page or a restarted bridge starts from.

    With ``devices``, only those devices' meta values: the ones a page shows.
    """
    state = LiveState(building_id)
    latest = models.LatestMeta.objects.filter(device__building_id=building_id)
    if devices is not None:
        latest = latest.filter(device_id__in=list(devices))
    # Tuples, not model instances: a large building has thousands of values.
    meta_rows = latest.values_list(
        "device_id",
        "name",
        "value",
        "display_name",
        "unit",
        "source_timestamp",
        "received_at",
        "synced",
    )
    for meta_row in meta_rows:
        state.meta.setdefault(meta_row[0], {})[meta_row[1]] = MetaValue(*meta_row)
    headcounts = models.LatestHeadcount.objects.filter(building_id=building_id).values_list(
        "scope", "entity_id", "kind", "value", "received_at", "in_at_zero", "out_at_zero"
    )
    for scope, entity_id, kind, value, at, in_at_zero, out_at_zero in headcounts:
        state.headcounts[(entity_id, kind)] = HeadcountValue(scope, entity_id, kind, value, at)
        if in_at_zero is not None or out_at_zero is not None:
            state.zero_counters[entity_id] = CountersAtZero(in_at_zero, out_at_zero)
    for row in models.FaultAlarm.objects.filter(building_id=building_id, state__in=OPEN_STATES):
        alarm = Alarm(
            device_id=row.device_id,
            type=row.type,
            level=row.level,
            priority=row.priority,
            description=row.description,
            notes=row.notes,
            payload=row.payload,
            count=row.count,
            first_seen=row.first_seen,
            last_seen=row.last_seen,
            state=AlarmState(row.state),
        )
        state.alarms[alarm.key] = alarm
    recent = state.rejections.maxlen
    for rejected in models.RejectedPayload.objects.filter(building_id=building_id)[:recent]:
        state.rejections.append(
            Rejection(
                rejected.topic,
                rejected.kind,
                rejected.device_id,
                rejected.message,
                rejected.context,
                rejected.data,
                rejected.received_at,
            )
        )
    for bad in models.MalformedPayload.objects.filter(building_id=building_id)[:recent]:
        state.malformed.append(
            MalformedMessage(bad.topic, bad.kind, bad.reason, bad.raw, bad.received_at)
        )
    _load_last_actions(state)
    for seen in models.ActionSeen.objects.filter(building_id=building_id)[:recent]:
        state.actions.append(
            ActionRecord(
                seen.topic,
                seen.name,
                seen.type,
                seen.target_type,
                seen.target_id,
                seen.value,
                seen.created,
                seen.received_at,
            )
        )
    return state


def _load_last_actions(state: LiveState) -> None:
    """The last action sent to each space (refused ones are not sent), newest first."""
    sent = models.ActionAttempt.objects.filter(
        building_id=state.building_id, target_type="space", target_id__isnull=False
    ).exclude(outcome=Outcome.REFUSED)
    # One space's last action each: newest per target, from the recent ones.
    for row in sent.order_by("-created_at", "-id")[:500]:
        if row.target_id is None or row.target_id in state.last_actions:
            continue
        summary = row.confirmation_summary() if row.confirmation else None
        label = json.loads(row.payload).get("name", "") if row.payload else ""
        state.last_actions[row.target_id] = LastAction(
            row.id, row.username, label, row.created_at, row.outcome, summary
        )


def load_confirmations(building_id: uuid.UUID) -> list[confirmation.Pending]:
    """The building's confirmations a bridge taking it over follows on: not settled yet, or
    settled within the window where a late lamp still updates them."""
    since = timezone.now() - confirmation.LATE_WINDOW
    rows = models.ActionAttempt.objects.filter(
        building_id=building_id,
        confirm_deadline__gte=since,
        confirmation__in=[
            confirmation.Confirmation.PENDING,
            confirmation.Confirmation.PARTLY,
            confirmation.Confirmation.NOT_CONFIRMED,
        ],
    )
    found = []
    for row in rows:
        if row.confirm_deadline is None:  # the filter excludes it; the type does not know
            continue
        detail = row.confirmation_detail or {}
        pending = confirmation.from_row(
            row.id,
            json.loads(row.payload),
            row.created_at,
            row.confirm_deadline,
            row.confirm_targets,
            detail,
        )
        if row.confirmation != confirmation.Confirmation.PENDING:
            pending.state = confirmation.Confirmation(row.confirmation)
            pending.missing = list(detail.get("missing", []))
            pending.late = list(detail.get("late", []))
        found.append(pending)
    return found


def load_batches(building_id: uuid.UUID) -> dict[uuid.UUID, BatchTotal]:
    """Totals of the building's actions sent to several spaces whose confirmations a bridge
    taking it over follows on (as ``load_confirmations``): every space of each, those settled
    before the takeover too, so the total it pushes counts them all."""
    since = timezone.now() - confirmation.LATE_WINDOW
    attempts = models.ActionAttempt.objects.filter(building_id=building_id)
    followed = attempts.filter(batch__isnull=False, confirm_deadline__gte=since)
    rows = (
        attempts.filter(batch__in=followed.values("batch"), target_type="space")
        .exclude(outcome=Outcome.REFUSED)
        .order_by("id")
        .values_list("id", "batch", "target_id", "confirmation")
    )
    totals: dict[uuid.UUID, BatchTotal] = {}
    for attempt_id, batch, space_id, state in rows:
        if batch is None:  # the filter excludes it; the type does not know
            continue
        totals.setdefault(batch, BatchTotal(0)).spaces[attempt_id] = (space_id, state)
    for total in totals.values():
        total.size = len(total.spaces)
    return {batch: total for batch, total in totals.items() if total.size > 1}
