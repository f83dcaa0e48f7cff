"""Pages: the overview, a building's dashboard and a device's detail.

Each page is rendered with the state already in it (from the database) and then kept
live over one WebSocket, whose first message is the bridge's current snapshot.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from dashboard import actions, activity, page_data
from dashboard.access import building_for, require, visible_buildings
from dashboard.live.building_store import load_building
from dashboard.live.buildings import BuildingInventory, Entity
from dashboard.live.load import load_state
from dashboard.live.state import ConnectionStatus
from dashboard.models import Role
from dashboard.routing import socket_url

# How long the building page shows an operator's last action on several spaces again.
LAST_BATCH_SHOWN = timedelta(hours=1)


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The buildings this user may see, each with its live summary line."""
    buildings = list(visible_buildings(request.user).order_by("name"))
    summaries = page_data.summaries(buildings)
    return render(
        request,
        "dashboard/home.html",
        {"summaries": summaries, "socket_url": socket_url("ws_overview")},
    )


def _inventory_for(request: HttpRequest, building_id: uuid.UUID) -> tuple[BuildingInventory, set]:
    building, roles = building_for(request, building_id)
    inventory = load_building(building.id)
    if inventory is None:  # deleted this very moment
        raise Http404("No such building.")
    return inventory, roles


def _page_state(building_id: uuid.UUID, devices: list[uuid.UUID]):
    state = load_state(building_id, devices)
    # Only the bridge knows its connection; the page's first snapshot fills it in.
    state.status = ConnectionStatus(state="unknown")
    return state


def _live_context(inventory: BuildingInventory, roles: set) -> dict:
    building_url = reverse("building", args=[inventory.id])
    return {
        "inventory": inventory,
        "building": Entity(inventory.id, inventory.name),
        "is_support": Role.SUPPORT in roles,
        "is_operator": Role.OPERATOR in roles,
        "stale_after": settings.STALE_AFTER_SECONDS,
        "building_url": building_url,
        "action_url": reverse("send_action", args=[inventory.id]),
        "reset_url": reverse("reset_count", args=[inventory.id]),
        "socket_url": socket_url("ws_building", building_id=inventory.id),
        "action_words": actions.WORDS,
        "zone": inventory.zone,
    }


@login_required
def building(request: HttpRequest, building_id: uuid.UUID) -> HttpResponse:
    """A building's live dashboard: headcounts, devices, alarms, actions, support tiles."""
    inventory, roles = _inventory_for(request, building_id)
    space_filter = request.GET.get("space", "")
    text_filter = request.GET.get("q", "").strip()
    devices = page_data.device_table(inventory, space_filter, text_filter, request.GET)
    # Each floor followed by its rooms, however deep: its cards, the filter's choices.
    tree = inventory.space_tree()
    spaces = [{"entity": space, "indent": "\u2003" * depth} for space, depth in tree]
    areas = sorted(inventory.areas.values(), key=lambda a: a.name)
    space_cards = page_data.cards(tree, request.GET, "spaces_page")
    space_cards["groups"] = page_data.space_groups(space_cards["rows"])
    controls = []
    picker = None
    if Role.OPERATOR in roles and len(spaces) > page_data.PICKER_ABOVE:
        # Many spaces: one form whose picker finds them by name, rather than a form each.
        picked = request.GET.getlist("pick")
        picker = actions.picker_form(inventory, request.GET.get("pick_q", ""), picked)
        controls = [actions.form_for(actions.ALL_SPACES, "all spaces")]
    elif Role.OPERATOR in roles:
        controls = [actions.form_for(f"space:{s.id}", s.name) for s, _ in space_cards["rows"]]
        if len(spaces) > 1:
            controls.append(actions.form_for(actions.ALL_SPACES, "all spaces"))
    return render(
        request,
        "dashboard/building.html",
        {
            **_live_context(inventory, roles),
            "state": _page_state(building_id, [row["device"].id for row in devices["rows"]]),
            "spaces": spaces,
            "space_cards": space_cards,
            "area_cards": page_data.cards(areas, request.GET, "areas_page"),
            "controls": controls,
            "picker": picker,
            # Sent to several spaces within the hour: its total, live, also after a reload.
            "last_batch": activity.last_batch(
                inventory.id, request.user.get_username(), LAST_BATCH_SHOWN
            )
            if controls
            else None,
            "devices": devices,
            "device_total": len(inventory.devices),
            "space_filter": space_filter,
            "text_filter": text_filter,
            "trend": page_data.headcount_trend(inventory),
        },
    )


@login_required
def space_picker(request: HttpRequest, building_id: uuid.UUID) -> HttpResponse:
    """The picker's spaces matching its search (``pick_q``), the chosen ones (``pick``) kept:
    what its search field asks for as one types."""
    inventory, roles = _inventory_for(request, building_id)
    require(roles, Role.OPERATOR, "Only operators pick spaces to act on.")
    picker = actions.picker_for(
        inventory, request.GET.get("pick_q", ""), request.GET.getlist("pick")
    )
    return render(request, "dashboard/space_picker_list.html", {"picker": picker})


@login_required
def device(request: HttpRequest, building_id: uuid.UUID, device_id: uuid.UUID) -> HttpResponse:
    """One device: every meta value, live, and its recent history."""
    inventory, roles = _inventory_for(request, building_id)
    entity = inventory.devices.get(device_id)
    if entity is None:
        raise Http404("No such device in this building.")
    spaces = [inventory.spaces[s] for s in inventory.spaces_of(entity) if s in inventory.spaces]
    charts = page_data.meta_charts(device_id, inventory.zone)
    return render(
        request,
        "dashboard/device.html",
        {
            **_live_context(inventory, roles),
            "state": _page_state(building_id, [device_id]),
            "device": entity,
            "spaces": spaces,
            "history": page_data.meta_history(device_id),
            "charts": charts,
            "chart_ranges": page_data.CHART_RANGES,
            "timelines": page_data.state_timelines(
                device_id, {chart["name"] for chart in charts["charts"]}
            ),
            "control": actions.form_for(f"device:{device_id}", entity.name)
            if Role.OPERATOR in roles
            else None,
        },
    )
