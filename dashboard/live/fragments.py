"""Contexts for the live fragments: one small template per tile, for page and push alike."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from datetime import datetime, tzinfo
from typing import Any

from django.conf import settings

from dashboard.contract import meta_definitions, rejections
from dashboard.live import confirmation, fragment_engine, integrity, tiles
from dashboard.live.buildings import UTC, BuildingInventory, Entity
from dashboard.live.fragment_engine import clock
from dashboard.live.state import (
    Alarm,
    ConnectionStatus,
    HeadcountValue,
    LiveState,
    MetaValue,
    Outcome,
)

SHOWN_ALARMS = 50
SHOWN_ACTIONS = 20
SHOWN_SUPPORT = 5
UNKNOWN = Entity(uuid.UUID(int=0), "unknown")


@functools.lru_cache(maxsize=65536)
def meta_dom_id(device: int, name: str) -> str:
    """The HTML id of a device's (``uuid.int``) value tile; kept, as asked for every value
    pushed. Meta names match [a-z0-9_~]; "~" would break htmx's "#id" selector."""
    return f"meta-{device:032x}-{name.replace('~', '--')}"


def display_label(name: str) -> str:
    """The cloud's display name of a meta name, or the name itself."""
    definition = meta_definitions.meta_definition(name)
    return definition.display_name if definition else name


def format_meta(name: str, value: Any) -> str:
    return meta_definitions.format_value(meta_definitions.meta_definition(name), value)


def meta_item(value: MetaValue, zone: tzinfo) -> dict[str, Any]:
    """A meta value as the templates show it: formatted with the cloud's definition, its time
    on the building's clock (``zone``)."""
    at_iso, at_text = _seconds(value.received_at, zone)
    return {
        "dom_id": meta_dom_id(value.device_id.int, value.name),
        "name": value.name,
        "label": value.display_name,
        "text": meta_definitions.format_value(
            meta_definitions.meta_definition(value.name), value.value
        ),
        "unit": value.unit,
        "at_iso": at_iso,
        "at_text": at_text,
        "synced": value.synced,
    }


# The last second _seconds formatted, with its zones: ((second, its zone, the building's), texts).
_last_second: tuple[tuple[float, tzinfo | None, tzinfo], tuple[str, str]] | None = None


def _seconds(at: datetime, zone: tzinfo) -> tuple[str, str]:
    """``at`` in whole seconds: ISO 8601, and the building's clock (``clock()``).

    Formatted here, not with template filters: a building page shows thousands, and a busy
    building pushes thousands a second, nearly all received in the same second as the one
    before: formatting it once was a fifth of a value tile's render. The zone is the
    building's, handed in: asking Django for the current one costs more than the rest.
    Whole seconds: pages show ages in seconds, and the digits below would be a sixth of a
    pushed value's bytes.
    """
    global _last_second
    key = (at.timestamp() // 1, at.tzinfo, zone)
    last = _last_second  # one read: render_tile runs in page views' threads too
    if last is not None and last[0] == key:
        return last[1]
    texts = at.isoformat(timespec="seconds"), at.astimezone(zone).time().isoformat("seconds")
    _last_second = key, texts
    return texts


def _meta(tile: tiles.Tile, state: LiveState, inventory: BuildingInventory) -> dict[str, Any]:
    return {"item": meta_item(state.meta[tile.entity][tile.name], inventory.zone)}


def _device(tile: tiles.Tile, state: LiveState, inventory: BuildingInventory) -> dict[str, Any]:
    device_id = tile.entity
    values = state.meta.get(device_id, {})
    return {
        "device": inventory.devices.get(device_id, UNKNOWN),
        "device_id": device_id,
        "items": [meta_item(values[name], inventory.zone) for name in sorted(values)],
    }


def headcount_card(entity: Entity, scope: str, state: LiveState, zone: tzinfo) -> dict[str, Any]:
    values = state.headcount(entity.id)
    count = values.get("head_count")
    occupancy = None
    if count is not None and entity.capacity:
        percent = round(100 * count.value / entity.capacity)
        band = "ok" if percent < 80 else "warn" if percent <= 100 else "bad"
        occupancy = {"percent": percent, "band": band}
    counted_in, counted_out = values.get("headcount_in"), values.get("headcount_out")
    warning = integrity.check_headcount(
        count.value if count is not None else None,
        counted_in.value if counted_in is not None else None,
        counted_out.value if counted_out is not None else None,
        entity.capacity,
        settings.HEADCOUNT_TOLERANCE,
        state.zero_counters.get(entity.id),
    )
    return {
        "entity": entity,
        "scope": scope,
        "warning": warning,
        "head_count": count,
        "headcount_in": counted_in,
        "headcount_out": counted_out,
        "occupancy": occupancy,
        # Formatted here, as meta_item's: Django's date filter was half of the card's render.
        "at_text": clock(count.received_at, zone) if count is not None else "",
        "at_iso": count.received_at.astimezone(zone).isoformat() if count is not None else "",
        "at_epoch": int(count.received_at.timestamp()) if count is not None else "",
    }


def lamps_card(
    space_id: uuid.UUID, state: LiveState, inventory: BuildingInventory
) -> dict[str, Any]:
    """A space's lamps from what they reported: how many, how many on, their average level;
    and the last action sent to it."""
    levels, on, lamps = [], 0, 0
    for device_id in inventory.devices_by_space.get(space_id, ()):
        values = state.meta.get(device_id)
        if not values or not any(name in values for name in confirmation.LAMP_META):
            continue
        lamps += 1
        dim = values.get("dim")
        onoff = values.get("onoff")
        level = dim.value if dim is not None and isinstance(dim.value, int | float) else None
        lit = confirmation.is_on(onoff.value) if onoff is not None else None
        if lit is None:
            lit = bool(level)
        if lit:
            on += 1
            if level is not None and not isinstance(level, bool):
                levels.append(level)
    last = state.last_actions.get(space_id)
    return {
        "lamps": {
            "count": lamps,
            "on": on,
            "average": round(sum(levels) / len(levels)) if levels else None,
        }
        if lamps
        else None,
        "last_action": {
            "who": last.username,
            "what": last.label,
            "at": last.at,
            "at_text": clock(last.at, inventory.zone),
            "at_iso": last.at.astimezone(inventory.zone).isoformat(),
            "outcome": OUTCOME_TEXT.get(last.outcome, last.outcome),
            "confirmation": confirmation.describe(last.confirmation),
        }
        if last is not None
        else None,
    }


def _headcount(tile: tiles.Tile, state: LiveState, inventory: BuildingInventory) -> dict[str, Any]:
    entity_id, zone = tile.entity, inventory.zone
    if entity_id == inventory.id:
        return headcount_card(Entity(inventory.id, inventory.name), "building", state, zone)
    if entity_id in inventory.spaces:
        card = headcount_card(inventory.spaces[entity_id], "space", state, zone)
        card.update(lamps_card(entity_id, state, inventory))
        return card
    return headcount_card(inventory.areas.get(entity_id, UNKNOWN), "area", state, zone)


# Levels are free text in the contract; these words mark the ones to show as urgent.
SEVERITY = {
    **dict.fromkeys(("critical", "fatal", "emergency", "alert", "error", "high"), "high"),
    **dict.fromkeys(("warning", "warn", "medium", "major"), "medium"),
}


def severity(level: str) -> str:
    """high, medium or low: the colour band of an alarm level (always shown with its text)."""
    return SEVERITY.get(level.lower(), "low")


def alarm_row(alarm: Any, source: str, zone: tzinfo) -> dict[str, Any]:
    """An alarm as a row of a list: itself (live state or the stored alarm), where it comes
    from, its colour band and when last seen on the building's clock. The alarms page adds
    its history to the same row."""
    return {
        "alarm": alarm,
        "source": source,
        "severity": severity(alarm.level),
        "at_text": clock(alarm.last_seen, zone),
    }


def _live_alarm_row(alarm: Alarm, inventory: BuildingInventory) -> dict[str, Any]:
    source = inventory.devices.get(alarm.device_id, UNKNOWN).name if alarm.device_id else None
    return alarm_row(alarm, source or inventory.name, inventory.zone)


def _alarms(tile: tiles.Tile, state: LiveState, inventory: BuildingInventory) -> dict[str, Any]:
    alarms = state.open_alarms()
    return {
        "alarms": [_live_alarm_row(alarm, inventory) for alarm in alarms[:SHOWN_ALARMS]],
        "total": len(alarms),
        "unacknowledged": state.unacknowledged(),
        "building_id": inventory.id,
        "zone": inventory.zone,
    }


def _banner(tile: tiles.Tile, state: LiveState, inventory: BuildingInventory) -> dict[str, Any]:
    return {"row": _live_alarm_row(state.banner, inventory)} if state.banner else {"row": None}


def _rejected_new(
    tile: tiles.Tile, state: LiveState, inventory: BuildingInventory
) -> dict[str, Any]:
    # Rendered once per window for every open inspector, so taking them here is safe.
    taken = list(state.new_rejections)
    state.new_rejections.clear()
    return {
        "entries": [
            rejections.entry(
                topic=r.topic,
                kind=r.kind,
                message=r.message,
                context=r.context,
                data=r.data,
                # On the building's clock: the fragment shows the time as given.
                received_at=r.received_at.astimezone(inventory.zone),
                device_id=r.device_id,
                device_name=inventory.devices[r.device_id].name
                if r.device_id in inventory.devices
                else None,
                building_name=inventory.name,
            )
            for r in taken
        ],
        "zone": inventory.zone,
    }


def _actions(tile: tiles.Tile, state: LiveState, inventory: BuildingInventory) -> dict[str, Any]:
    names = {**{k: v.name for k, v in inventory.spaces.items()}}
    names.update({k: v.name for k, v in inventory.devices.items()})
    return {
        "actions": [
            {
                "action": action,
                "target": names.get(action.target_id, str(action.target_id)),
                "created_text": _local(action.created, inventory.zone),
            }
            for action in list(state.actions)[:SHOWN_ACTIONS]
        ]
    }


def _local(text: str, zone: tzinfo) -> str:
    """An ISO 8601 time from a payload on the building's clock; any other text as it came."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


def _status(tile: tiles.Tile, state: LiveState, inventory: BuildingInventory) -> dict[str, Any]:
    return {"status": state.status, "counters": state.counters, "zone": inventory.zone}


def _rejections(tile: tiles.Tile, state: LiveState, inventory: BuildingInventory) -> dict[str, Any]:
    return {
        "rejections": list(state.rejections)[:SHOWN_SUPPORT],
        "count": state.counters["rejected"],
        "building_id": inventory.id,
        "zone": inventory.zone,
    }


def _malformed(tile: tiles.Tile, state: LiveState, inventory: BuildingInventory) -> dict[str, Any]:
    return {
        "malformed": list(state.malformed)[:SHOWN_SUPPORT],
        "count": state.counters["malformed"],
    }


def summary_card(
    building: Entity,
    head_count: HeadcountValue | None,
    open_alarms: int,
    status: ConnectionStatus | None,
    unacknowledged: int = 0,
    zone: tzinfo | None = None,
) -> dict[str, Any]:
    """A building's line on the overview: headcount, open alarms, broker connection; times
    on the building's clock (``zone``, UTC without one)."""
    return {
        "zone": zone or UTC,
        "building": building,
        "head_count": head_count,
        "open_alarms": open_alarms,
        "unacknowledged": unacknowledged,
        "status": status,
    }


def _summary(tile: tiles.Tile, state: LiveState, inventory: BuildingInventory) -> dict[str, Any]:
    return summary_card(
        Entity(inventory.id, inventory.name),
        state.headcount(inventory.id).get("head_count"),
        len(state.alarms),
        state.status,
        state.unacknowledged(),
        inventory.zone,
    )


def _summary_name(
    tile: tiles.Tile, state: LiveState, inventory: BuildingInventory
) -> dict[str, Any]:
    return {"building": Entity(inventory.id, inventory.name)}


OUTCOME_TEXT: dict[str, str] = {
    Outcome.PENDING: "sending…",
    Outcome.REFUSED: "refused",
    Outcome.FAILED: "failed",
    Outcome.ACKNOWLEDGED: "sent: the broker acknowledged it",
    Outcome.SEEN: "seen: the cloud reported it back",
}


def attempt_card(
    attempt_id: int,
    label: str,
    outcome: str,
    reason: str,
    summary: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One action attempt's outcome as the operator sees it, in the form and when pushed;
    ``summary``: its confirmation (live/confirmation.py), whether its lamps followed."""
    return {
        "attempt": {
            "id": attempt_id,
            "label": label,
            "outcome": outcome,
            "text": OUTCOME_TEXT.get(outcome, outcome),
            "reason": reason,
            "confirmation": confirmation.describe(summary),
        }
    }


def batch_card(
    batch_id: uuid.UUID, spaces: list[tuple[str, str]], total: int, *, inline: bool = False
) -> dict[str, Any]:
    """An action sent to several spaces, in total (``confirmation.across_spaces``)."""
    return {
        "batch": {"id": batch_id.hex, **confirmation.across_spaces(spaces, total)},
        "inline": inline,
    }


def _batch(tile: tiles.Tile, state: LiveState, inventory: BuildingInventory) -> dict[str, Any]:
    total = state.batches.get(tile.entity)
    if total is None:  # forgotten (live/state.py's bound): the Activity page has it
        return batch_card(tile.entity, [], 0)
    spaces = [(inventory.space_label(space), found) for space, found in total.spaces.values()]
    return batch_card(tile.entity, spaces, total.size)


def _attempt(tile: tiles.Tile, state: LiveState, inventory: BuildingInventory) -> dict[str, Any]:
    status = state.attempts[tile.attempt]
    return attempt_card(status.id, status.label, status.outcome, status.reason, status.confirmation)


Context = Callable[[tiles.Tile, LiveState, BuildingInventory], dict[str, Any]]

CONTEXTS: dict[str, Context] = {
    "meta": _meta,
    "device": _device,
    "headcount": _headcount,
    "alarms": _alarms,
    "actions": _actions,
    "status": _status,
    "rejections": _rejections,
    "malformed": _malformed,
    "summary": _summary,
    "summary_name": _summary_name,
    "attempt": _attempt,
    "batch": _batch,
    "banner": _banner,
    "rejected_new": _rejected_new,
}


def render_tile(tile: tiles.Tile, state: LiveState, inventory: BuildingInventory) -> str:
    """The tile's HTML, rendered once for every page of the building."""
    kind = tile.kind
    return fragment_engine.render(
        tiles.KINDS[kind].template, CONTEXTS[kind](tile, state, inventory)
    )
