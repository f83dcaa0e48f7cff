"""Headcount resets: the contract's payload, the places of a building, and the nightly one.

An operator's "Reset count" and the nightly reset publish the same payload through the same
audited path as actions (an ``ActionAttempt`` per place, followed until the place's count
comes back as 0). The nightly one is written by the bridge that holds the building, as done
by the system; its rows' idempotency keys name the local night, so a restart, or another
worker, never resets the same night twice.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from dashboard import models
from dashboard.contract.topics import Kind, Scope, build_topic
from dashboard.live import confirmation
from dashboard.live.buildings import BuildingInventory

SYSTEM = "system"  # the username of what the system does by itself
# The contract's head_count payload (its examples name it "headcount"), the count set to 0.
RESET_PAYLOAD: dict[str, Any] = {"name": "headcount", "value": 0}
NIGHTLY_KEY = "nightly:"  # idempotency keys of the nightly reset: nightly:<local date>:<place>
# A nightly reset missed by more than this (the bridge was down) waits for the next night:
# resetting a count hours late would wipe a day's real count.
NIGHTLY_LATEST = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Place:
    """A building, space or area: something with a count to reset."""

    scope: Scope
    id: uuid.UUID
    name: str

    @property
    def topic(self) -> str:
        return build_topic(self.scope, self.id, Kind.HEAD_COUNT, publish=True)


def payload_text() -> str:
    """The exact bytes published, as stored on the audit row."""
    return json.dumps(RESET_PAYLOAD, separators=(",", ":"))


def label(target_name: str) -> str:
    """What the attempt's card says."""
    return f"Reset count of {target_name}"


def is_reset(payload: dict[str, Any]) -> bool:
    return confirmation.Command.of(payload).type == confirmation.RESET


def places(inventory: BuildingInventory) -> list[Place]:
    """Every place of the building with a count: the building, its spaces, its areas."""
    found = [Place(Scope.BUILDING, inventory.id, inventory.name)]
    found += [Place(Scope.SPACE, s.id, s.name) for s, _ in inventory.space_tree()]
    areas = sorted(inventory.areas.values(), key=lambda a: a.name.casefold())
    found += [Place(Scope.AREA, a.id, a.name) for a in areas]
    return found


def place_of(inventory: BuildingInventory, scope: str, entity_id: uuid.UUID) -> Place | None:
    """The building's place of that scope and id, or None when it has none."""
    if scope == Scope.BUILDING and entity_id == inventory.id:
        return Place(Scope.BUILDING, entity_id, inventory.name)
    if scope == Scope.SPACE and entity_id in inventory.spaces:
        return Place(Scope.SPACE, entity_id, inventory.spaces[entity_id].name)
    if scope == Scope.AREA and entity_id in inventory.areas:
        return Place(Scope.AREA, entity_id, inventory.areas[entity_id].name)
    return None


def confirm_target(place: Place) -> list[dict[str, str]]:
    """What confirms a reset: the place itself, once its count comes back as 0."""
    return [{"id": str(place.id), "name": place.name}]


# --- the nightly reset ------------------------------------------------------------------


def nightly_due(
    reset_at: time | None, zone: tzinfo, now: datetime, last_night: date | None
) -> date | None:
    """The local night whose reset is due at ``now`` (the date it is done on), or None.

    Judged on the building's wall clock, so it follows DST: on the night the clocks go
    forward past ``reset_at`` it is done as the clock jumps over it; on the night they go
    back and ``reset_at`` happens twice, only the first time (``last_night`` is that date).
    Never more than ``NIGHTLY_LATEST`` late; never twice for one local date.
    """
    if reset_at is None:
        return None
    local = now.astimezone(zone).replace(tzinfo=None)
    night = local.date() if local.time() >= reset_at else local.date() - timedelta(days=1)
    late = local - datetime.combine(night, reset_at)
    if late >= NIGHTLY_LATEST or night == last_night:
        return None
    return night


def nightly_settings(building_ids: list[uuid.UUID]) -> dict[uuid.UUID, time]:
    """The nightly reset time of those buildings that have one (local time)."""
    rows = models.Building.objects.filter(id__in=building_ids, nightly_reset_at__isnull=False)
    return {b: at for b, at in rows.values_list("id", "nightly_reset_at") if at is not None}


def last_night(building_id: uuid.UUID) -> date | None:
    """The last local night the building's counts were reset, from the audit log."""
    key = (
        models.ActionAttempt.objects.filter(
            building_id=building_id, username=SYSTEM, idempotency_key__startswith=NIGHTLY_KEY
        )
        .order_by("-created_at", "-id")
        .values_list("idempotency_key", flat=True)
        .first()
    )
    if not key:
        return None
    return date.fromisoformat(key.removeprefix(NIGHTLY_KEY).split(":")[0])


def write_nightly(
    building_id: uuid.UUID, found: list[Place], night: date, grace: float
) -> list[models.ActionAttempt] | None:
    """The night's audit rows, one per place, before anything is published; None when this
    night's were written already (by a bridge before a restart, or another worker)."""
    now = timezone.now()
    deadline = now + timedelta(seconds=grace)
    batch = uuid.uuid4()
    rows = [
        models.ActionAttempt(
            building_id=building_id,
            user=None,
            username=SYSTEM,
            target_type=place.scope.value,
            target_id=place.id,
            target_name=place.name,
            topic=place.topic,
            payload=payload_text(),
            idempotency_key=f"{NIGHTLY_KEY}{night.isoformat()}:{place.id.hex}",
            batch=batch,
            created_at=now,
            confirm_targets=confirm_target(place),
            confirm_deadline=deadline,
            confirmation=confirmation.Confirmation.PENDING,
            lamp_count=1,
            confirmation_detail={"noun": "place"},
        )
        for place in found
    ]
    try:
        with transaction.atomic():
            for row in rows:
                row.save()
    except IntegrityError:
        return None
    return rows


def confirm_of(attempt: models.ActionAttempt) -> dict[str, Any] | None:
    """What the bridge follows to confirm an attempt (its lamps, or a reset's place)."""
    if not attempt.confirm_targets or attempt.confirm_deadline is None:
        return None
    return {
        "targets": attempt.confirm_targets,
        "action_at": attempt.created_at.isoformat(),
        "deadline": attempt.confirm_deadline.isoformat(),
    }


def publish_request(attempt: models.ActionAttempt, timeout: float) -> dict[str, Any]:
    """What the bridge's ``publish_action`` takes for one reset row (as the view's request)."""
    request: dict[str, Any] = {
        "attempt": attempt.id,
        "label": label(attempt.target_name),
        "name": RESET_PAYLOAD["name"],
        "action_type": "",  # nothing comes back on an action topic for it: its count does
        "created": "",
        "topic": attempt.topic,
        "payload": attempt.payload,
        "timeout": timeout,
        "who": attempt.username,
        "space": str(attempt.target_id) if attempt.target_type == Scope.SPACE else "",
    }
    confirm = confirm_of(attempt)
    if confirm:
        request["confirm"] = confirm
    return request
