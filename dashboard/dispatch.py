"""Handing audited attempts to the bridge: which lamps confirm them, the requests, the outcomes.

One request carries every attempt of an action, up to ``PER_REQUEST`` of them, and a deadline
the bridge honours (it publishes nothing after it); the view waits 2 s longer, so a "failed"
here is true. ``lamps_of`` chooses the devices whose
reports confirm an action: a space's member lamps, or a device that is one.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db.models import Q

from dashboard.audit import Target, label_of
from dashboard.contract.topics import Scope
from dashboard.live import confirmation, fragments, layer, resets, store
from dashboard.models import ActionAttempt, Device, LatestMeta

logger = logging.getLogger(__name__)


def lamps_of(
    building_id: uuid.UUID, targets: list[Target]
) -> dict[uuid.UUID, list[dict[str, str]]]:
    """Per target, the lamps whose reports confirm an action on it ([{id, name}]).

    A space's lamps are its member devices that reported dim or onoff or whose product type
    says lamp; sensors are not counted. A device target is itself, when it is a lamp.
    """
    devices = Device.objects.filter(building_id=building_id)
    spaces = [t.id for t in targets if t.scope == Scope.SPACE]
    ids = [t.id for t in targets if t.scope == Scope.DEVICE]
    rows = devices.filter(Q(spaces__in=spaces) | Q(space_id__in=spaces) | Q(id__in=ids))
    found = {d.id: d for d in rows.distinct().prefetch_related("spaces")}
    reported: dict[uuid.UUID, set[str]] = {}
    for device_id, meta in LatestMeta.objects.filter(
        device_id__in=list(found), name__in=confirmation.LAMP_META
    ).values_list("device_id", "name"):
        reported.setdefault(device_id, set()).add(meta)
    lamps = {
        d.id: d
        for d in found.values()
        if confirmation.is_lamp(d.product_type, reported.get(d.id, ()))
    }
    # Each space's lamps, indexed once: looked for per space, an action on 500 spaces took
    # 11 s here (every lamp's spaces scanned for each space).
    in_space: dict[uuid.UUID, dict[uuid.UUID, Device]] = {}
    for d in lamps.values():
        for space_id in {d.space_id, *(s.id for s in d.spaces.all())}:
            if space_id is not None:
                in_space.setdefault(space_id, {})[d.id] = d
    result: dict[uuid.UUID, list[dict[str, str]]] = {}
    for target in targets:
        if target.scope == Scope.DEVICE:
            chosen = [lamps[target.id]] if target.id in lamps else []
        else:
            chosen = list(in_space.get(target.id, {}).values())
        result[target.id] = [
            {"id": str(d.id), "name": d.name} for d in sorted(chosen, key=lambda d: d.name)
        ]
    return result


# Attempts handed to the bridge in one request. Each request is one message on the bridge's
# channel, which holds 100 (the channel layer's default capacity) shared by every page: an
# action on many spaces goes as one request, not one per space (one per space, 20 at a time,
# three big actions at once could still fill it, and what a full channel drops is lost
# silently). 250 spaces make a request of about 215 KiB (msgpack; 3 lamps a space, 360 KiB at
# 10), its answer 27 KiB; a bigger action goes as several, one after the other, so its spaces
# are published in order and each request waits at most the timeout.
PER_REQUEST = 250


async def publish_all(
    building_id: uuid.UUID, attempts: list[ActionAttempt], batch_size: int = 1
) -> list[dict[str, Any]]:
    """Have the building's bridge publish these attempts, ``PER_REQUEST`` to a request; their
    outcomes stored on the audit rows, and their cards, in order.

    Once the bridge did not answer a request, the rest are not sent: each of their attempts
    fails with the same reason, at once rather than after a timeout each.
    """
    cards: list[dict[str, Any]] = []
    failed = ""
    for start in range(0, len(attempts), PER_REQUEST):
        chunk = attempts[start : start + PER_REQUEST]
        results: list[dict[str, Any]] = []
        if not failed:
            try:
                results = await _request(building_id, chunk, batch_size)
            except layer.NoBridge as exc:
                failed = f"{exc} (is the bridge running?)"
            except Exception as exc:  # the channel layer failed: none may stay pending
                logger.exception("could not hand %d actions to the bridge", len(chunk))
                failed = f"could not reach the bridge: {type(exc).__name__}"
        if failed:
            results = [{"ok": False, "reason": failed} for _ in chunk]
        cards += await _settled(chunk, results)
    return cards


async def _request(
    building_id: uuid.UUID, chunk: list[ActionAttempt], batch_size: int
) -> list[dict[str, Any]]:
    """One request's results, an attempt the bridge's answer does not name failed."""
    timeout = settings.ACTION_PUBACK_TIMEOUT_SECONDS
    # The bridge must be done (published and acknowledged) by the deadline, and drops what is
    # still unpublished after it; this view waits 2 s longer, so its "failed" is true.
    request: dict[str, Any] = {
        "attempts": [_item(attempt, timeout) for attempt in chunk],
        "timeout": timeout,
        "deadline": time.time() + timeout,
    }
    if chunk[0].batch is not None and batch_size > 1:
        request["batch"] = {"id": chunk[0].batch.hex, "spaces": batch_size}
    answer = await layer.request_publish(building_id, request, timeout + 2)
    by_attempt = {r.get("attempt"): r for r in answer.get("results", [])}
    unnamed = {"ok": False, "reason": "the bridge's answer did not include it"}
    return [by_attempt.get(attempt.id, unnamed) for attempt in chunk]


def _item(attempt: ActionAttempt, timeout: float) -> dict[str, Any]:
    """What the bridge's ``publish_action`` takes for one attempt."""
    payload = json.loads(attempt.payload)
    if resets.is_reset(payload):
        return resets.publish_request(attempt, timeout)
    item = {
        "attempt": attempt.id,
        "label": payload["name"],
        "name": payload["name"],
        "action_type": payload["type"],
        "created": payload["created"],
        "topic": attempt.topic,
        "payload": attempt.payload,
        "timeout": timeout,
        "who": attempt.username,  # the space's card shows its last action, and by whom
        "space": str(attempt.target_id) if attempt.target_type == "space" else "",
    }
    confirm = resets.confirm_of(attempt)
    if confirm:
        item["confirm"] = confirm
    return item


async def _settled(
    chunk: list[ActionAttempt], results: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Store each attempt's outcome; their cards."""
    settled = [(a.id, bool(r["ok"]), str(r["reason"])) for a, r in zip(chunk, results, strict=True)]
    await sync_to_async(store.settle_attempts)(settled)
    rows = ActionAttempt.objects.filter(id__in=[a.id for a in chunk])
    stored = {row.id: row async for row in rows}
    cards = []
    for attempt, result in zip(chunk, results, strict=True):
        row = stored[attempt.id]
        # The bridge stores "seen" with its next history write; it may already know it.
        outcome = ActionAttempt.SEEN if result.get("seen") else row.outcome
        summary = result.get("confirmation")
        if summary is None and result["ok"]:
            summary = row.confirmation_summary()
        cards.append(fragments.attempt_card(row.id, label_of(row), outcome, row.reason, summary))
    return cards
