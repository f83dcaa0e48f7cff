"""Operator actions: the form, the exact payload, the audit log, and publishing via the bridge.

Every attempt is written to ``ActionAttempt`` before anything is published, refused ones
included; the bridge that holds the building publishes it with QoS 1 and reports the PUBACK,
and later marks it seen when the cloud fans it out to the building's action topics.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django import forms
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_POST

from dashboard.access import require, roles_on
from dashboard.contract import payloads
from dashboard.contract.topics import Kind, Scope, build_topic
from dashboard.live import confirmation, fragments, layer, metrics
from dashboard.live.building_store import load_building
from dashboard.live.buildings import BuildingInventory
from dashboard.models import ActionAttempt, Device, LatestMeta, Role

logger = logging.getLogger(__name__)

ALL_SPACES = "all"
VERBS = {"off": "Turn off {target}", "on": "Turn on {target}", "dim": "Dim {target} to {level} %"}
NO_ACTION = "Send an action to {target}"
WORDS = {"verbs": VERBS, "none": NO_ACTION}  # live.js words the button as one chooses


class ActionForm(forms.Form):
    target_name: str  # set by form_for: who the form acts on, and its button's words
    button: str

    action = forms.ChoiceField(
        label="Action", choices=[("", "Choose…"), ("off", "Off"), ("on", "On"), ("dim", "Dim")]
    )
    level = forms.IntegerField(
        label="Level", min_value=0, max_value=100, required=False, help_text="0 to 100 %"
    )
    transition_time = forms.IntegerField(
        label="Transition time", min_value=0, max_value=3600, help_text="seconds"
    )
    target = forms.CharField(widget=forms.HiddenInput)  # space:<id>, device:<id> or all
    idempotency_key = forms.CharField(widget=forms.HiddenInput, max_length=40)
    confirm = forms.BooleanField(widget=forms.HiddenInput, required=False)

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if data.get("action") == "dim" and data.get("level") is None and "level" not in self.errors:
            self.add_error("level", "Dim needs a level from 0 to 100 %.")
        return data


@dataclass(frozen=True)
class Target:
    scope: Scope  # SPACE or DEVICE
    id: uuid.UUID
    name: str


def form_for(target: str, name: str, data: Any = None) -> ActionForm:
    """An action form for one target (``space:<id>``, ``device:<id>`` or ``all``)."""
    prefix = target.replace(":", "-")
    form = ActionForm(
        data,
        prefix=prefix,
        initial={
            "target": target,
            "transition_time": settings.ACTION_TRANSITION_SECONDS,
            "idempotency_key": secrets.token_urlsafe(16),
        },
    )
    form.target_name = name
    form.button = describe("", None, name)
    return form


def describe(action: str, level: int | None, target: str) -> str:
    """What the submit button says, and the action's ``name`` in the payload."""
    if action not in VERBS:
        return NO_ACTION.format(target=target)
    return VERBS[action].format(target=target, level=level)


def build_payload(
    action: str, level: int | None, transition: int, target: Target, now: datetime
) -> dict[str, Any]:
    """The seed's action shape: Off carries only the transition time, Dim also the level."""
    value: dict[str, Any] = {"transition_time": transition}
    if action == "dim":
        value = {"level": level, "transition_time": transition}
    return {
        "name": describe(action, level, target.name),
        "type": action,
        "target_type": "space" if target.scope == Scope.SPACE else "device",
        "target_id": str(target.id),
        "value": value,
        "created": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }


def targets_of(inventory: BuildingInventory, target: str) -> list[Target] | None:
    """The spaces or device a form's target names, or None when it is not in the building."""
    if target == ALL_SPACES:
        spaces = sorted(inventory.spaces.values(), key=lambda s: s.name)
        return [Target(Scope.SPACE, s.id, s.name) for s in spaces]
    kind, _, raw = target.partition(":")
    try:
        entity_id = uuid.UUID(raw)
    except ValueError:
        return None
    if kind == "space" and entity_id in inventory.spaces:
        return [Target(Scope.SPACE, entity_id, inventory.spaces[entity_id].name)]
    if kind == "device" and entity_id in inventory.devices:
        return [Target(Scope.DEVICE, entity_id, inventory.devices[entity_id].name)]
    return None


# --- the view ----------------------------------------------------------------------------


@login_required
@require_POST
async def send_action(request: HttpRequest, building_id: uuid.UUID) -> HttpResponse:
    """Validate, audit and publish one action (or one per space); answer with the form."""
    user = await request.auser()
    inventory = await sync_to_async(load_building)(building_id)
    if inventory is None:
        raise Http404("No such building.")
    raw_target = _raw_target(request)
    targets = targets_of(inventory, raw_target)
    roles = await sync_to_async(roles_on)(user, building_id)
    if targets is None:
        require(roles)  # which spaces and devices a building has is for its people only
        raise Http404("No such space or device in this building.")
    name = "all spaces" if raw_target == ALL_SPACES else targets[0].name
    posted: Any = request.POST
    retry = None
    if "retry" in request.POST:  # "Retry the ones that did not follow" on an attempt's card
        require(roles)
        retry = await _retried(inventory, request.POST["retry"])
        if retry is None:
            raise Http404("No such action to retry in this building.")
        posted, targets = _retry_form(request.POST, raw_target, retry[0]), retry[1]
    form = form_for(raw_target, name, posted)
    audit = Audit(
        inventory.id,
        user,
        targets,
        raw_target == ALL_SPACES or retry is not None,
        "the lamps that did not follow" if retry else "all spaces",
    )

    if Role.OPERATOR not in roles:
        await audit.refuse("not an operator of this building")
        require(roles)  # the form would name the target to someone who may not see it
        return await _answer(
            request, form, [], status=403, error="Only operators may send actions."
        )
    if not form.is_valid():
        await audit.refuse("invalid: " + _errors(form))
        return await _answer(request, form, [], status=422)
    data = form.cleaned_data
    form.button = describe(data["action"], data["level"], name)
    if raw_target == ALL_SPACES and not data["confirm"]:
        return await _answer(request, form, [], confirm=len(targets))

    key = data["idempotency_key"]
    earlier = await audit.earlier(key)
    if earlier:  # a double click, or the same form sent twice: never publish twice
        return await _answer(request, _fresh(form), earlier)
    wait = await audit.rate_limited(settings.ACTION_RATE_PER_MINUTE)
    if wait:
        await audit.refuse("rate limited")
        message = (
            f"Rate limit: at most {settings.ACTION_RATE_PER_MINUTE} actions a minute. "
            f"Try again in {wait} s."
        )
        return await _answer(request, form, [], status=429, error=message)

    now = timezone.now()
    planned = []
    for space in targets:
        payload = build_payload(data["action"], data["level"], data["transition_time"], space, now)
        problems = payloads.validate(Kind.ACTION, payload)
        if problems:  # the form should make this impossible; the contract has the last word
            await audit.refuse("invalid: " + problems[0]["error"]["message"])
            return await _answer(
                request, form, [], status=422, error=problems[0]["error"]["message"]
            )
        planned.append((space, payload))
    lamps = await sync_to_async(lamps_of)(inventory.id, targets)
    deadline = now + timedelta(
        seconds=data["transition_time"] + settings.ACTION_CONFIRM_GRACE_SECONDS
    )
    attempts = await audit.attempts(
        planned, key, lamps, deadline, retry_of=retry[0].id if retry else None
    )
    if attempts is None:  # a concurrent click with the same key got there first
        return await _answer(request, _fresh(form), await audit.earlier(key))
    results = await asyncio.gather(*(_publish(inventory.id, a) for a in attempts))
    return await _answer(request, _fresh(form), list(results))


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


async def _retried(
    inventory: BuildingInventory, raw: str
) -> tuple[ActionAttempt, list[Target]] | None:
    """The attempt to retry and its lamps that did not follow, still in the building."""
    try:
        attempt_id = int(raw)
    except ValueError:
        return None
    # Only ever an attempt of this building: the id comes from the client.
    attempt = await ActionAttempt.objects.filter(id=attempt_id, building_id=inventory.id).afirst()
    if attempt is None or not attempt.payload:
        return None
    missing = (attempt.confirmation_detail or {}).get("missing", [])
    targets = []
    for lamp in missing:
        device_id = uuid.UUID(lamp["id"])
        if device_id in inventory.devices:
            targets.append(Target(Scope.DEVICE, device_id, inventory.devices[device_id].name))
    return (attempt, targets) if targets else None


def _retry_form(posted: Any, raw_target: str, attempt: ActionAttempt) -> dict[str, Any]:
    """The form a retry stands for: the retried action's command, this form's key."""
    prefix = raw_target.replace(":", "-")
    payload = json.loads(attempt.payload)
    value = payload.get("value") or {}
    data = {k: posted.get(k) for k in posted}
    data.update(
        {
            f"{prefix}-action": payload["type"],
            f"{prefix}-level": value.get("level", ""),
            f"{prefix}-transition_time": value.get("transition_time", 0),
            f"{prefix}-confirm": "on",  # the lamps are named on the card it is clicked on
        }
    )
    return data


def _raw_target(request: HttpRequest) -> str:
    # The target field carries the form's prefix: <prefix>-target.
    for key in request.POST:
        if key.endswith("-target") or key == "target":
            return request.POST.get(key) or ""
    return ""


def _errors(form: ActionForm) -> str:
    return "; ".join(
        f"{field}: {' '.join(str(e) for e in errors)}" for field, errors in form.errors.items()
    )


def _fresh(form: ActionForm) -> ActionForm:
    """The same form with a new idempotency key: the next click is a new action."""
    fresh = form_for(form.initial["target"], form.target_name, None)
    fresh.initial.update({k: v for k, v in form.cleaned_data.items() if k != "idempotency_key"})
    fresh.initial["confirm"] = False
    fresh.button = form.button
    return fresh


async def _publish(building_id: uuid.UUID, attempt: ActionAttempt) -> dict[str, Any]:
    payload = json.loads(attempt.payload)
    timeout = settings.ACTION_PUBACK_TIMEOUT_SECONDS
    # The bridge must be done (published and acknowledged) by the deadline, and drops the
    # request unpublished after it; this view waits 2 s longer, so its "failed" is true.
    deadline = time.time() + timeout
    request: dict[str, Any] = {
        "attempt": attempt.id,
        "label": payload["name"],
        "name": payload["name"],
        "action_type": payload["type"],
        "created": payload["created"],
        "topic": attempt.topic,
        "payload": attempt.payload,
        "timeout": timeout,
        "deadline": deadline,
        "who": attempt.username,  # the space's card shows its last action, and by whom
        "space": str(attempt.target_id) if attempt.target_type == "space" else "",
    }
    if attempt.confirm_targets and attempt.confirm_deadline is not None:
        request["confirm"] = {
            "targets": attempt.confirm_targets,
            "action_at": attempt.created_at.isoformat(),
            "deadline": attempt.confirm_deadline.isoformat(),
        }
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
    await sync_to_async(_settle)(attempt.id, ok, reason)
    attempt = await ActionAttempt.objects.aget(id=attempt.id)
    # The bridge stores "seen" with its next history write; it may already know it.
    outcome = ActionAttempt.SEEN if seen else attempt.outcome
    if summary is None and ok:
        summary = attempt.confirmation_summary()
    return fragments.attempt_card(attempt.id, payload["name"], outcome, attempt.reason, summary)


def _settle(attempt_id: int, ok: bool, reason: str) -> None:
    # Conditional: the bridge may already have marked it seen; never move it back.
    pending = ActionAttempt.objects.filter(id=attempt_id, outcome=ActionAttempt.PENDING)
    if ok:
        pending.update(outcome=ActionAttempt.ACKNOWLEDGED, acknowledged_at=timezone.now())
    else:
        pending.update(outcome=ActionAttempt.FAILED, reason=reason[:1000])
        # Nothing reached the lamps (a publish that timed out is still followed: it may
        # have gone out, and the bridge settles it).
        if "no acknowledgement" not in reason:
            ActionAttempt.objects.filter(
                id=attempt_id, confirmation=confirmation.Confirmation.PENDING
            ).update(confirmation=confirmation.Confirmation.NONE)
    metrics.ACTIONS.labels(ActionAttempt.ACKNOWLEDGED if ok else ActionAttempt.FAILED).inc()


async def _answer(
    request: HttpRequest,
    form: ActionForm,
    results: list[dict[str, Any]],
    *,
    status: int = 200,
    error: str = "",
    confirm: int = 0,
) -> HttpResponse:
    context = {
        "form": form,
        "results": results,
        "error": error,
        "confirm": confirm,
        "action_url": request.path,
        "building_url": request.path.removesuffix("actions/"),
    }
    # django-htmx's middleware sets request.htmx, which HttpRequest's type does not know.
    htmx = getattr(request, "htmx", False)
    template = "dashboard/action_form.html" if htmx else "dashboard/action_page.html"
    # Context processors (the user, messages) touch the database: render off the loop.
    return await sync_to_async(render)(request, template, context, status=status)


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
            target_type="space" if target is None or target.scope == Scope.SPACE else "device",
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
            fragments.attempt_card(
                a.id, json.loads(a.payload)["name"], a.outcome, a.reason, a.confirmation_summary()
            )
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
    ) -> list[ActionAttempt] | None:
        """Write the pending attempts, one per target, before anything is published; each
        with the lamps that confirm it by ``deadline``.

        None when another request with the same idempotency key already wrote them.
        """
        batch = uuid.uuid4() if self.whole_building else None
        rows = [
            self._row(
                target,
                topic=build_topic(target.scope, target.id, Kind.ACTION, publish=True),
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
            )
            for n, (target, payload) in enumerate(planned)
        ]
        try:
            await sync_to_async(_save_all)(rows)
        except IntegrityError:
            return None
        return rows


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
