"""Handing an audited attempt to the bridge: which lamps confirm it, the request, the outcome.

The request carries a deadline the bridge honours (it publishes nothing after it), and the
view waits 2 s longer, so a "failed" here is true. ``lamps_of`` chooses the devices whose
reports confirm an action: a space's member lamps, or a device that is one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db.models import Q

from dashboard.audit import Target
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
    result: dict[uuid.UUID, list[dict[str, str]]] = {}
    for target in targets:
        if target.scope == Scope.DEVICE:
            chosen = [lamps[target.id]] if target.id in lamps else []
        else:
            chosen = [
                d
                for d in lamps.values()
                if d.space_id == target.id or any(s.id == target.id for s in d.spaces.all())
            ]
        result[target.id] = [
            {"id": str(d.id), "name": d.name} for d in sorted(chosen, key=lambda d: d.name)
        ]
    return result


# Requests of one action in flight at once. The bridge's channel holds 100 messages (the
# channel layer's default capacity), shared by every page, and a full channel drops what is
# sent to its group: an action on 500 spaces sent all at once lost 400 of them ("no bridge
# answered"). The bridge answers each in milliseconds, so a few at a time costs little.
IN_FLIGHT = 20


async def publish_all(
    building_id: uuid.UUID, attempts: list[ActionAttempt], batch_size: int
) -> list[dict[str, Any]]:
    """``publish`` each attempt, IN_FLIGHT at a time; their cards, in order."""
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one(attempt: ActionAttempt) -> dict[str, Any]:
        async with gate:
            return await publish(building_id, attempt, batch_size)

    return list(await asyncio.gather(*(one(a) for a in attempts)))


async def publish(
    building_id: uuid.UUID, attempt: ActionAttempt, batch_size: int = 1
) -> dict[str, Any]:
    payload = json.loads(attempt.payload)
    timeout = settings.ACTION_PUBACK_TIMEOUT_SECONDS
    # The bridge must be done (published and acknowledged) by the deadline, and drops the
    # request unpublished after it; this view waits 2 s longer, so its "failed" is true.
    deadline = time.time() + timeout
    if resets.is_reset(payload):
        request = resets.publish_request(attempt, timeout)
    else:
        request = {
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
            request["confirm"] = confirm
    request["deadline"] = deadline
    if attempt.batch is not None and batch_size > 1:
        request["batch"] = {"id": attempt.batch.hex, "spaces": batch_size}
    summary = None
    try:
        result = await layer.request_publish(building_id, request, timeout + 2)
        ok, reason, seen = result["ok"], result["reason"], result.get("seen", False)
        summary = result.get("confirmation")
    except layer.NoBridge as exc:
        ok, reason, seen = False, f"{exc} (is the bridge running?)", False
    except Exception as exc:  # the channel layer failed: the attempt must not stay pending
        logger.exception("could not hand action %s to the bridge", attempt.id)
        ok, reason, seen = False, f"could not reach the bridge: {type(exc).__name__}", False
    await sync_to_async(settle)(attempt.id, ok, reason)
    attempt = await ActionAttempt.objects.aget(id=attempt.id)
    # The bridge stores "seen" with its next history write; it may already know it.
    outcome = ActionAttempt.SEEN if seen else attempt.outcome
    if summary is None and ok:
        summary = attempt.confirmation_summary()
    return fragments.attempt_card(attempt.id, request["label"], outcome, attempt.reason, summary)


def settle(attempt_id: int, ok: bool, reason: str) -> None:
    store.settle_attempt(attempt_id, ok, reason)
