"""Fault alarms of a building: the list, and the people's side of the workflow.

The bridge writes alarms as they arrive, de-duplicated per (device or building, type) while
open or acknowledged. People move them on: open → acknowledged → cleared (or open → cleared),
each step recorded on the alarm (who, when) and in its history (``AlarmEvent``, with an
optional note). Operators and support may act; every role on the building may look.

Each transition is a conditional update inside one transaction, so two people clicking at
once record one event, not two. After the commit the building's bridge hears of it
(``layer.alarms_changed``) and updates every open page.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any
from urllib.parse import urlsplit

from asgiref.sync import sync_to_async
from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from dashboard import page_data
from dashboard.access import abuilding_for, building_for
from dashboard.filters import AlarmFilter
from dashboard.live import layer
from dashboard.live.fragments import alarm_row
from dashboard.models import AlarmEvent, FaultAlarm, Role

logger = logging.getLogger(__name__)

PER_PAGE = 100
MAX_NOTE = 2000
MAX_BULK = 500  # more than a page of the list; a bigger request is not from the form
ACTING_ROLES = {Role.OPERATOR, Role.SUPPORT}

# The transitions people make: the event's kind is also the alarm's new state.
FROM_STATES = {
    AlarmEvent.ACKNOWLEDGED: (FaultAlarm.OPEN,),
    AlarmEvent.CLEARED: (FaultAlarm.OPEN, FaultAlarm.ACKNOWLEDGED),
}
VERBS = {AlarmEvent.ACKNOWLEDGED: "Acknowledged", AlarmEvent.CLEARED: "Cleared"}


# --- the list ----------------------------------------------------------------------------


@dataclass
class Handled:
    """Who acknowledged or cleared an alarm, when, and their note."""

    username: str
    at: Any
    note: str = ""


def _handled(alarm: FaultAlarm, kind: str, events: list[AlarmEvent]) -> Handled | None:
    # The latest event of the kind says it best (it keeps the name of a deleted user);
    # the alarm's own fields cover a change made without one (in the admin, say).
    for event in reversed(events):
        if event.kind == kind:
            return Handled(event.username, event.at, event.note)
    user, at = getattr(alarm, f"{kind}_by"), getattr(alarm, f"{kind}_at")
    if at is None:
        return None
    return Handled(user.get_username() if user else "someone", at)


def _row(alarm: FaultAlarm, zone: tzinfo) -> dict[str, Any]:
    events = list(alarm.events.all())
    return {
        **alarm_row(alarm, alarm.device.name if alarm.device else "Building", zone),
        "events": events,
        "acknowledged": _handled(alarm, AlarmEvent.ACKNOWLEDGED, events),
        "cleared": _handled(alarm, AlarmEvent.CLEARED, events),
        "can_acknowledge": alarm.state in FROM_STATES[AlarmEvent.ACKNOWLEDGED],
        "can_clear": alarm.state in FROM_STATES[AlarmEvent.CLEARED],
    }


@login_required
def alarm_list(request: HttpRequest, building_id: uuid.UUID) -> HttpResponse:
    """The building's fault alarms, newest first, filterable, with their history."""
    building, roles = building_for(request, building_id)
    filters = AlarmFilter(building, request.GET)
    filters.offer_choices()
    alarms = (
        filters.alarms()
        .select_related("device", "acknowledged_by", "cleared_by")
        .prefetch_related("events")
    )
    page = Paginator(alarms, PER_PAGE).get_page(request.GET.get("page"))
    rows = [_row(alarm, building.zone) for alarm in page.object_list]
    can_act = bool(roles & ACTING_ROLES)
    return render(
        request,
        "dashboard/alarms.html",
        {
            "building": building,
            "filters": filters,
            **page_data.pager(page, filters.query),
            "rows": rows,
            "can_act": can_act,
            "any_open": can_act and any(row["can_acknowledge"] for row in rows),
            "next": request.get_full_path(),
            "max_note": MAX_NOTE,
        },
    )


# --- acknowledging and clearing ----------------------------------------------------------


class NoteForm(forms.Form):
    # Stripped; NUL characters refused (a database may not store them).
    note = forms.CharField(label="Note", max_length=MAX_NOTE, required=False)


@dataclass
class Outcome:
    """What one submission did: the alarms moved on, and those left as they were."""

    moved: list[FaultAlarm] = field(default_factory=list)
    unchanged: list[FaultAlarm] = field(default_factory=list)
    missing: int = 0  # ids that are not alarms of this building

    def changes(self, state: str) -> list[dict[str, Any]]:
        """The bridge's message: which (device or building, type) is now in which state."""
        return [
            {
                "device": str(alarm.device_id) if alarm.device_id else None,
                "type": alarm.type,
                "state": state,
            }
            for alarm in self.moved
        ]


def transition(
    building_id: uuid.UUID, alarm_ids: list[int], kind: str, user: Any, note: str
) -> Outcome:
    """Move the building's alarms to ``kind`` (acknowledged or cleared) where allowed.

    In one transaction: each alarm is updated only if it is still in a state the transition
    starts from (so a concurrent click finds nothing to do), stamped with the user and
    time, and given an ``AlarmEvent``.
    """
    allowed = FROM_STATES[kind]
    now = timezone.now()
    outcome = Outcome()
    with transaction.atomic():
        found = list(
            FaultAlarm.objects.select_for_update()
            .filter(building_id=building_id, pk__in=alarm_ids)
            .only("id", "device_id", "type", "state")
            .order_by("id")
        )
        outcome.missing = len(set(alarm_ids)) - len(found)
        for alarm in found:
            moved = FaultAlarm.objects.filter(pk=alarm.pk, state__in=allowed).update(
                state=kind, **{f"{kind}_by": user, f"{kind}_at": now}
            )
            if moved:
                alarm.state = kind
                outcome.moved.append(alarm)
            else:
                outcome.unchanged.append(alarm)
        AlarmEvent.objects.bulk_create(
            AlarmEvent(
                alarm_id=alarm.pk,
                kind=kind,
                user=user,
                username=user.get_username(),
                note=note,
                at=now,
            )
            for alarm in outcome.moved
        )
    return outcome


def back_to(request: HttpRequest, building_id: uuid.UUID) -> str:
    """Where to go after a submission: the form's ``next`` if it is a path on this site."""
    target = request.POST.get("next", "")
    parts = urlsplit(target)
    if (
        target.startswith("/")
        and not parts.scheme
        and not parts.netloc
        and url_has_allowed_host_and_scheme(
            target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        )
    ):
        return target
    return reverse("alarms", args=[building_id])


def _see_other(url: str) -> HttpResponseRedirect:
    response = HttpResponseRedirect(url)
    response.status_code = 303  # after a POST, the list is fetched with GET
    return response


def _plural(n: int) -> str:
    return f"{n} alarm" if n == 1 else f"{n} alarms"


async def _act(
    request: HttpRequest, building_id: uuid.UUID, alarm_id: Any, kind: str
) -> HttpResponse:
    """One submission of the workflow: one alarm, or (``alarm_id`` None) the bulk selection."""
    user = await request.auser()
    await abuilding_for(
        request,
        building_id,
        needs=ACTING_ROLES,
        refusal="Only operators and support may acknowledge or clear alarms.",
    )
    single = alarm_id is not None
    alarm_ids: list[int] = []
    bad = 0
    if single:
        one = _alarm_id(alarm_id)
        if (
            one is None
            or not await FaultAlarm.objects.filter(building_id=building_id, pk=one).aexists()
        ):
            raise Http404("No such alarm in this building.")
        alarm_ids = [one]
    back = back_to(request, building_id)

    form = NoteForm(request.POST)
    if not form.is_valid():
        for error in form.errors.get("note", []):
            messages.error(request, f"Nothing changed: the note is not valid. {error}")
        return _see_other(back)
    note = form.cleaned_data["note"]

    if not single:
        alarm_ids, bad = _selection(request)
        if not alarm_ids and not bad:
            messages.warning(request, "Nothing changed: select at least one alarm to acknowledge.")
            return _see_other(back)
        if len(alarm_ids) > MAX_BULK:
            messages.error(request, f"Nothing changed: select at most {MAX_BULK} alarms at once.")
            return _see_other(back)

    outcome = await sync_to_async(transition)(building_id, alarm_ids, kind, user, note)
    _report(request, kind, outcome, bad, single)
    if outcome.moved:
        try:
            await layer.alarms_changed(building_id, outcome.changes(kind))
        except Exception:  # the change is committed: say so, and let the pages catch up
            logger.exception("could not tell the bridge of building %s about alarms", building_id)
            messages.warning(
                request, "Saved, but live pages may show the old state until they reload."
            )
    return _see_other(back)


def _selection(request: HttpRequest) -> tuple[list[int], int]:
    """The bulk form's selected alarm ids (each once), and how many were not ids at all."""
    ids: dict[int, None] = {}
    bad = 0
    for raw in request.POST.getlist("alarm"):
        alarm_id = _alarm_id(raw)
        if alarm_id is None:
            bad += 1
        else:
            ids[alarm_id] = None
    return list(ids), bad


def _alarm_id(raw: Any) -> int | None:
    """An alarm id as the database can look it up (a huge number would overflow it)."""
    try:
        value = int(raw)
    except (TypeError, ValueError):
        return None
    return value if 0 < value < 2**63 else None


def _report(request: HttpRequest, kind: str, outcome: Outcome, bad: int, single: bool) -> None:
    if outcome.moved:
        messages.success(request, f"{VERBS[kind]} {_plural(len(outcome.moved))}.")
    if outcome.unchanged:
        if single:
            state = outcome.unchanged[0].state
            messages.info(request, f"Nothing to do: that alarm is already {state}.")
        else:
            n = len(outcome.unchanged)
            messages.info(
                request,
                f"{_plural(n)} {'was' if n == 1 else 'were'} already acknowledged or cleared.",
            )
    missing = outcome.missing + bad
    if missing:
        messages.warning(
            request,
            f"Ignored {missing} selected {'entry' if missing == 1 else 'entries'}: "
            "not an alarm of this building.",
        )


@login_required
@require_POST
async def acknowledge(request: HttpRequest, building_id: uuid.UUID, alarm_id: int) -> HttpResponse:
    """Acknowledge one open alarm, with an optional note."""
    return await _act(request, building_id, alarm_id, AlarmEvent.ACKNOWLEDGED)


@login_required
@require_POST
async def clear(request: HttpRequest, building_id: uuid.UUID, alarm_id: int) -> HttpResponse:
    """Clear one open or acknowledged alarm, with an optional note."""
    return await _act(request, building_id, alarm_id, AlarmEvent.CLEARED)


@login_required
@require_POST
async def acknowledge_many(request: HttpRequest, building_id: uuid.UUID) -> HttpResponse:
    """Acknowledge the open alarms selected on the list (``alarm`` = ids), one note for all."""
    return await _act(request, building_id, None, AlarmEvent.ACKNOWLEDGED)
