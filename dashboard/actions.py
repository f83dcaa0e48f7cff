"""Operator actions: the form, the exact payload, the audit log, and publishing via the bridge.

Every attempt is written to ``ActionAttempt`` before anything is published, refused ones
included; the bridge that holds the building publishes it with QoS 1 and reports the PUBACK,
and later marks it seen when the cloud fans it out to the building's action topics.
"""

from __future__ import annotations

import json
import logging
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django import forms
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from dashboard import dispatch, page_data
from dashboard.access import require, roles_on
from dashboard.audit import Audit, Target
from dashboard.contract import payloads
from dashboard.contract.topics import Kind, Scope
from dashboard.live import fragments, resets
from dashboard.live.building_store import load_building
from dashboard.live.buildings import BuildingInventory
from dashboard.models import ActionAttempt, Role

logger = logging.getLogger(__name__)

ALL_SPACES = "all"
PICKED_SPACES = "spaces"  # the spaces chosen in a large building's picker (posted as "pick")
VERBS = {"off": "Turn off {target}", "on": "Turn on {target}", "dim": "Dim {target} to {level} %"}
NO_ACTION = "Send an action to {target}"
WORDS = {"verbs": VERBS, "none": NO_ACTION}  # live.js words the button as one chooses


class ActionForm(forms.Form):
    target_name: str  # set by form_for: who the form acts on, and its button's words
    button: str
    picker: dict[str, Any] | None = None  # page_data.space_picker, on the picker's form

    action = forms.ChoiceField(
        label="Action", choices=[("", "Choose…"), ("off", "Off"), ("on", "On"), ("dim", "Dim")]
    )
    level = forms.IntegerField(
        label="Level", min_value=0, max_value=100, required=False, help_text="0 to 100 %"
    )
    transition_time = forms.IntegerField(
        label="Transition time", min_value=0, max_value=3600, help_text="seconds"
    )
    # space:<id>, device:<id>, all, or spaces (the picker's, its spaces posted as "pick")
    target = forms.CharField(widget=forms.HiddenInput)
    idempotency_key = forms.CharField(widget=forms.HiddenInput, max_length=40)
    confirm = forms.BooleanField(widget=forms.HiddenInput, required=False)

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if data.get("action") == "dim" and data.get("level") is None and "level" not in self.errors:
            self.add_error("level", "Dim needs a level from 0 to 100 %.")
        return data


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


def picker_form(inventory: BuildingInventory, query: str, picked: list[str]) -> ActionForm:
    """A large building's one action form, with its space picker."""
    form = form_for(PICKED_SPACES, "the chosen spaces")
    form.picker = picker_for(inventory, query, picked)
    return form


def picker_for(inventory: BuildingInventory, query: str, picked: list[str]) -> dict[str, Any]:
    """The picker's spaces (page_data.space_picker) and where its search asks for more."""
    picker = page_data.space_picker(inventory, query, picked)
    picker["url"] = reverse("space_picker", args=[inventory.id])
    return picker


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


def targets_of(
    inventory: BuildingInventory, target: str, picked: list[str] | None = None
) -> list[Target] | None:
    """The spaces or device a form's target names, or None when it is not in the building;
    ``picked``: the space ids chosen in the picker, for its target (``PICKED_SPACES``)."""
    if target == ALL_SPACES:
        spaces = sorted(inventory.spaces.values(), key=lambda s: s.name)
        return [Target(Scope.SPACE, s.id, s.name) for s in spaces]
    if target == PICKED_SPACES:
        chosen: list[Target] = []
        for raw in picked or []:
            try:
                space_id = uuid.UUID(raw)
            except ValueError:
                return None
            if space_id not in inventory.spaces:
                return None
            if all(t.id != space_id for t in chosen):
                chosen.append(Target(Scope.SPACE, space_id, inventory.spaces[space_id].name))
        return chosen
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
    picked = request.POST.getlist("pick")
    targets = targets_of(inventory, raw_target, picked)
    roles = await sync_to_async(roles_on)(user, building_id)
    if targets is None:
        require(roles)  # which spaces and devices a building has is for its people only
        raise Http404("No such space or device in this building.")
    several = raw_target in (ALL_SPACES, PICKED_SPACES)  # a row per space, asked first
    name = _target_name(raw_target, targets)
    posted: Any = request.POST
    retry = None
    if "retry" in request.POST:  # "Retry the ones that did not follow" on an attempt's card
        require(roles)
        retry = await _retried(inventory, request.POST["retry"])
        if retry is None:
            raise Http404("No such action to retry in this building.")
        posted, targets = _retry_form(request.POST, raw_target, retry[0]), retry[1]
    form = form_for(raw_target, name, posted)
    if raw_target == PICKED_SPACES:
        form.picker = picker_for(inventory, "", picked)
    audit = Audit(
        inventory.id,
        user,
        targets,
        several or retry is not None,
        "the lamps that did not follow" if retry else name,
    )

    refused = await _refusal(audit, roles, form, "send actions")
    if refused:
        return await _answer(request, form, [], status=refused[0], error=refused[1])
    data = form.cleaned_data
    form.button = describe(data["action"], data["level"], name)
    if not targets:  # the picker's, sent with no space chosen
        await audit.refuse("invalid: no space chosen")
        return await _answer(request, form, [], status=422, error="Choose at least one space.")
    if several and not data["confirm"] and retry is None:
        lamps = await sync_to_async(dispatch.lamps_of)(inventory.id, targets)
        return await _answer(request, form, [], confirm=_question(data, targets, lamps))

    key = data["idempotency_key"]
    earlier = await audit.earlier(key)
    if earlier:  # a double click, or the same form sent twice: never publish twice
        return await _answer(request, _fresh(form), earlier)
    message = await _over_rate(audit)
    if message:
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
    lamps = await sync_to_async(dispatch.lamps_of)(inventory.id, targets)
    deadline = now + timedelta(
        seconds=data["transition_time"] + settings.ACTION_CONFIRM_GRACE_SECONDS
    )
    attempts = await audit.attempts(
        planned, key, lamps, deadline, retry_of=retry[0].id if retry else None
    )
    if attempts is None:  # a concurrent click with the same key got there first
        return await _answer(request, _fresh(form), await audit.earlier(key))
    size = len(attempts) if several and retry is None else 1
    results = await dispatch.publish_all(inventory.id, attempts, size)
    total = None
    if size > 1 and attempts[0].batch is not None:  # and in total, kept live by the bridge
        spaces = [
            (
                inventory.space_label(a.target_id),
                (r["attempt"]["confirmation"] or {}).get("state", ""),
            )
            for a, r in zip(attempts, results, strict=True)
        ]
        total = fragments.batch_card(attempts[0].batch, spaces, size)["batch"]
    return await _answer(request, _fresh(form), results, batch=total)


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


async def _refusal(
    audit: Audit, roles: set[str], form: forms.Form, what: str
) -> tuple[int, str] | None:
    """Who may and what was posted, checked first for every command; the refusal audited
    as (status, message), or None."""
    if Role.OPERATOR not in roles:
        await audit.refuse("not an operator of this building")
        require(roles)  # the form would name the target to someone who may not see it
        return 403, f"Only operators may {what}."
    if not form.is_valid():
        await audit.refuse("invalid: " + _errors(form))
        return 422, ""
    return None


async def _over_rate(audit: Audit) -> str:
    """The rate limit's message when this user sent too many this minute (audited), or ""."""
    wait = await audit.rate_limited(settings.ACTION_RATE_PER_MINUTE)
    if not wait:
        return ""
    await audit.refuse("rate limited")
    return (
        f"Rate limit: at most {settings.ACTION_RATE_PER_MINUTE} actions a minute. "
        f"Try again in {wait} s."
    )


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


def _target_name(raw_target: str, targets: list[Target]) -> str:
    """Who a form acts on, in its button's words."""
    if raw_target == ALL_SPACES:
        return "all spaces"
    if raw_target == PICKED_SPACES:
        return _count(len(targets), "space") if targets else "the chosen spaces"
    return targets[0].name


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _question(
    data: dict[str, Any], targets: list[Target], lamps: dict[uuid.UUID, list[dict[str, str]]]
) -> dict[str, Any]:
    """What the confirmation step asks: "Dim 3 spaces (14 lamps) to 40 %?"."""
    spaces = len(targets)
    lamp_count = sum(len(found) for found in lamps.values())
    counted = f"{_count(spaces, 'space')} ({_count(lamp_count, 'lamp')})"
    return {
        "spaces": spaces,
        "lamps": lamp_count,
        "counted": counted,
        "question": describe(data["action"], data["level"], counted) + "?",
    }


def _raw_target(request: HttpRequest) -> str:
    # The target field carries the form's prefix: <prefix>-target.
    for key in request.POST:
        if key.endswith("-target") or key == "target":
            return request.POST.get(key) or ""
    return ""


def _errors(form: forms.Form) -> str:
    return "; ".join(
        f"{field}: {' '.join(str(e) for e in errors)}" for field, errors in form.errors.items()
    )


def _fresh(form: ActionForm) -> ActionForm:
    """The same form with a new idempotency key: the next click is a new action."""
    fresh = form_for(form.initial["target"], form.target_name, None)
    fresh.initial.update({k: v for k, v in form.cleaned_data.items() if k != "idempotency_key"})
    fresh.initial["confirm"] = False
    fresh.button = form.button
    fresh.picker = form.picker
    return fresh


async def _answer(
    request: HttpRequest,
    form: ActionForm,
    results: list[dict[str, Any]],
    *,
    status: int = 200,
    error: str = "",
    confirm: dict[str, Any] | None = None,
    batch: dict[str, Any] | None = None,
) -> HttpResponse:
    context = {
        "batch": batch,
        "form": form,
        "results": results,
        "error": error,
        "confirm": confirm,
        "action_url": request.path,
        "building_url": request.path.removesuffix("actions/"),
    }
    return await _respond(request, "action", context, status)


async def _respond(
    request: HttpRequest, name: str, context: dict[str, Any], status: int
) -> HttpResponse:
    """The form alone for htmx (``<name>_form.html``), else a page around it."""
    # django-htmx's middleware sets request.htmx, which HttpRequest's type does not know.
    htmx = getattr(request, "htmx", False)
    template = f"dashboard/{name}_form.html" if htmx else f"dashboard/{name}_page.html"
    # Context processors (the user, messages) touch the database: render off the loop.
    return await sync_to_async(render)(request, template, context, status=status)


# --- resetting a place's count ------------------------------------------------------------


class ResetForm(forms.Form):
    """ "Reset count" on a place's card: its target, a key against double clicks, and the
    confirm step's answer."""

    place: resets.Place

    target = forms.CharField(widget=forms.HiddenInput)  # building:<id>, space:<id>, area:<id>
    idempotency_key = forms.CharField(widget=forms.HiddenInput, max_length=40)
    confirm = forms.BooleanField(widget=forms.HiddenInput, required=False)


def reset_form(place: resets.Place) -> ResetForm:
    form = ResetForm(
        initial={
            "target": f"{place.scope}:{place.id}",
            "idempotency_key": secrets.token_urlsafe(16),
        }
    )
    form.place = place
    return form


def reset_place(inventory: BuildingInventory, target: str) -> resets.Place | None:
    """The place a reset form's target names, or None when it is not in the building."""
    scope, _, raw = target.partition(":")
    try:
        entity_id = uuid.UUID(raw)
    except ValueError:
        return None
    return resets.place_of(inventory, scope, entity_id)


@login_required
@require_POST
async def reset_count(request: HttpRequest, building_id: uuid.UUID) -> HttpResponse:
    """Set a place's count to 0: asked first, then audited, rate limited and published
    like an action, and confirmed when the place's count comes back as 0."""
    user = await request.auser()
    inventory = await sync_to_async(load_building)(building_id)
    if inventory is None:
        raise Http404("No such building.")
    roles = await sync_to_async(roles_on)(user, building_id)
    place = reset_place(inventory, request.POST.get("target", ""))
    if place is None:
        require(roles)  # which places a building has is for its people only
        raise Http404("No such space, area or building.")
    form = ResetForm(request.POST)
    form.place = place
    target = Target(place.scope, place.id, place.name)
    audit = Audit(inventory.id, user, [target], False, place.name)

    refused = await _refusal(audit, roles, form, "reset a count")
    if refused:
        return await _answer_reset(request, form, [], status=refused[0], error=refused[1])
    if not form.cleaned_data["confirm"]:
        return await _answer_reset(request, form, [], confirm=True)
    key = form.cleaned_data["idempotency_key"]
    earlier = await audit.earlier(key)
    if earlier:  # a double click on "Yes, reset": never publish twice
        return await _answer_reset(request, reset_form(place), earlier)
    message = await _over_rate(audit)
    if message:
        return await _answer_reset(request, form, [], status=429, error=message)
    problems = payloads.validate(Kind.HEAD_COUNT, resets.RESET_PAYLOAD)
    if problems:  # the contract has the last word
        await audit.refuse("invalid: " + problems[0]["error"]["message"])
        return await _answer_reset(
            request, form, [], status=422, error=problems[0]["error"]["message"]
        )
    deadline = timezone.now() + timedelta(seconds=settings.ACTION_CONFIRM_GRACE_SECONDS)
    attempts = await audit.attempts(
        [(target, resets.RESET_PAYLOAD)],
        key,
        {place.id: resets.confirm_target(place)},
        deadline,
        kind=Kind.HEAD_COUNT,
    )
    if attempts is None:  # a concurrent click with the same key got there first
        return await _answer_reset(request, reset_form(place), await audit.earlier(key))
    results = await dispatch.publish_all(inventory.id, attempts)
    return await _answer_reset(request, reset_form(place), results)


async def _answer_reset(
    request: HttpRequest,
    form: ResetForm,
    results: list[dict[str, Any]],
    *,
    status: int = 200,
    error: str = "",
    confirm: bool = False,
) -> HttpResponse:
    context = {
        "form": form,
        "place": form.place,
        "results": results,
        "error": error,
        "confirm": confirm,
        "reset_url": request.path,
        "building_url": request.path.removesuffix("reset/"),
    }
    return await _respond(request, "reset", context, status)
