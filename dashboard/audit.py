"""The audit log of operator actions: one row per attempt, refused ones included, and the limits.

Every attempt is written before anything is published. Refusals are bounded per user and
building a minute (``ACTION_REFUSALS_LOGGED_PER_MINUTE``; the rest are counted on the last row
written), and the send rate per user is an atomic per-minute counter in the cache.
"""

from __future__ import annotations

import json
import logging
import math
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import F

from dashboard.contract.topics import Kind, Scope, build_topic
from dashboard.live import confirmation, fragments, metrics, resets
from dashboard.models import ActionAttempt

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    scope: Scope  # SPACE or DEVICE for actions; BUILDING, SPACE or AREA for a count reset
    id: uuid.UUID
    name: str


class Audit:
    """Writes the audit log of one submission."""

    def __init__(
        self,
        building_id: uuid.UUID,
        user: Any,
        targets: list[Target],
        whole_building: bool,
        label: str = "all spaces",
    ) -> None:
        self.building_id = building_id
        self.user = user
        self.targets = targets
        # Several rows for one submission (all spaces, or a retry's lamps), one key each.
        self.whole_building = whole_building
        self.label = label

    def _row(self, target: Target | None, **fields: Any) -> ActionAttempt:
        return ActionAttempt(
            building_id=self.building_id,
            user=self.user,
            username=self.user.get_username(),
            target_type=Scope.SPACE.value if target is None else target.scope.value,
            target_id=target.id if target else None,
            target_name=target.name if target else self.label,
            **fields,
        )

    async def refuse(self, reason: str) -> None:
        """Log a refusal; past the per-minute bound, only count it on the last row logged.

        Refused posts cost nothing to send, so a script must not grow the audit log
        without bound: ``ACTION_REFUSALS_LOGGED_PER_MINUTE`` rows per user and building
        and minute, the last of them saying how many more it stands for.
        """
        key = f"actions:refused:{self.user.pk}:{self.building_id.hex}:{_minute()}"
        logged = settings.ACTION_REFUSALS_LOGGED_PER_MINUTE
        count = await _count(key)
        if count > logged:
            if count == logged + 1:
                logger.warning(
                    "%s: more than %d refused actions on building %s this minute; "
                    "counting the rest on the last one logged",
                    self.user.get_username(),
                    logged,
                    self.building_id,
                )
            last = await cache.aget(f"{key}:last")
            if last is not None:
                await ActionAttempt.objects.filter(id=last).aupdate(suppressed=F("suppressed") + 1)
            return
        target = None if self.whole_building else self.targets[0]
        # The reason may quote what was posted; PostgreSQL's text columns refuse NUL.
        reason = reason.replace("\x00", "\ufffd")[:1000]
        row = self._row(target, outcome=ActionAttempt.REFUSED, reason=reason)
        await row.asave()
        metrics.ACTIONS.labels(ActionAttempt.REFUSED).inc()
        if count == logged:
            await cache.aset(f"{key}:last", row.id, WINDOW_KEPT)

    async def earlier(self, key: str) -> list[dict[str, Any]]:
        rows = ActionAttempt.objects.filter(
            building_id=self.building_id, idempotency_key__in=[key, f"{key}:0"]
        )
        first = await rows.afirst()
        if first is None:
            return []
        # The key comes from the client: only ever look inside this building.
        batch = ActionAttempt.objects.filter(
            building_id=self.building_id, idempotency_key__startswith=f"{key}:"
        )
        found = [first] if first.idempotency_key == key else [a async for a in batch]
        return [
            fragments.attempt_card(a.id, label_of(a), a.outcome, a.reason, a.confirmation_summary())
            for a in found
        ]

    async def rate_limited(self, per_minute: int) -> int:
        """Seconds until this user may send again, or 0 (and this submission is counted).

        Counted per user and clock minute with the cache's atomic add + incr (atomic on
        Redis, shared by every web process, and on locmem): a count of rows checked before
        inserting let parallel submissions all pass the check.
        """
        now = time.time()
        minute = int(now // 60)
        if await _count(f"actions:sent:{self.user.pk}:{minute}") <= per_minute:
            return 0
        return max(1, math.ceil((minute + 1) * 60 - now))

    async def attempts(
        self,
        planned: list[tuple[Target, dict[str, Any]]],
        key: str,
        lamps: dict[uuid.UUID, list[dict[str, str]]],
        deadline: datetime,
        retry_of: int | None = None,
        kind: Kind = Kind.ACTION,
    ) -> list[ActionAttempt] | None:
        """Write the pending attempts, one per target, before anything is published; each
        with the lamps that confirm it by ``deadline``.

        None when another request with the same idempotency key already wrote them.
        """
        batch = uuid.uuid4() if self.whole_building else None
        rows = [
            self._row(
                target,
                topic=build_topic(target.scope, target.id, kind, publish=True),
                payload=json.dumps(payload, separators=(",", ":")),
                idempotency_key=f"{key}:{n}" if self.whole_building else key,
                batch=batch,
                confirm_targets=lamps.get(target.id, []),
                confirm_deadline=deadline if lamps.get(target.id) else None,
                confirmation=confirmation.Confirmation.PENDING
                if lamps.get(target.id)
                else confirmation.Confirmation.NONE,
                lamp_count=len(lamps.get(target.id, [])),
                retry_of_id=retry_of,
                # A reset follows its place's count, not lamps: its card says so.
                confirmation_detail={"noun": "place"} if kind == Kind.HEAD_COUNT else {},
            )
            for n, (target, payload) in enumerate(planned)
        ]
        try:
            await sync_to_async(_save_all)(rows)
        except IntegrityError:
            return None
        return rows


def label_of(attempt: ActionAttempt) -> str:
    """What an attempt's card calls it: the action's name, or "Reset count of <place>"."""
    payload = json.loads(attempt.payload)
    return resets.label(attempt.target_name) if resets.is_reset(payload) else payload["name"]


WINDOW_KEPT = 120  # seconds a per-minute counter is kept: past its minute, and then some


def _minute() -> int:
    return int(time.time() // 60)


async def _count(key: str) -> int:
    """Add one to a per-minute counter in the cache, atomically; its new value."""
    # The sync incr: Redis's INCR, or locmem's under its lock. Django's async aincr is a
    # get then a set, which parallel requests interleave.
    return await sync_to_async(_count_now)(key)


def _count_now(key: str) -> int:
    cache.add(key, 0, WINDOW_KEPT)
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, WINDOW_KEPT)
        return 1


def _save_all(rows: list[ActionAttempt]) -> None:
    with transaction.atomic():
        for row in rows:
            row.save()
