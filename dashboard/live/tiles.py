"""Tiles: the live fragments of a building's page, each one small template.

A tile key names what changed; the fan-out coalesces keys and renders each once
per window with ``dashboard/fragments/<kind>.html``, the same template the page
uses for its first render.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import NamedTuple

NOBODY = uuid.UUID(int=0)  # the entity of a tile about the whole building's list of something


class Tile(NamedTuple):
    """What changed: a tuple, as the fan-out hashes thousands of them a second."""

    kind: str  # a key of KINDS
    entity: uuid.UUID = NOBODY  # the device of "meta"/"device", the entity of "headcount"
    name: str = ""  # the meta name of "meta"
    attempt: int = 0  # the action attempt of "attempt"


EVERYONE = "all"
SUPPORT = "support"
SUMMARY = "summary"  # the building's line on the overview page
AUDIENCES = (EVERYONE, SUPPORT, SUMMARY)


@dataclass(frozen=True)
class TileKind:
    template: str
    audience: str = EVERYONE
    early: bool = True  # may be rendered ahead of the flush (its context has no side effect)


# Data, not code: which template renders a tile and who may receive it.
KINDS: dict[str, TileKind] = {
    "meta": TileKind("dashboard/fragments/meta_value.html"),
    "device": TileKind("dashboard/fragments/device_meta.html"),
    "headcount": TileKind("dashboard/fragments/headcount.html"),
    "alarms": TileKind("dashboard/fragments/alarms.html"),
    "actions": TileKind("dashboard/fragments/actions.html"),
    "status": TileKind("dashboard/fragments/status.html"),
    "rejections": TileKind("dashboard/fragments/rejections.html", SUPPORT),
    "malformed": TileKind("dashboard/fragments/malformed.html", SUPPORT),
    "summary": TileKind("dashboard/fragments/summary.html", SUMMARY),
    "summary_name": TileKind("dashboard/fragments/summary_name.html", SUMMARY),
    "attempt": TileKind("dashboard/fragments/attempt.html"),
    "batch": TileKind("dashboard/fragments/batch.html"),  # an action's total over its spaces
    "banner": TileKind("dashboard/fragments/alarm_banner.html"),
    # Its context takes the new rejections, so it is rendered once, at the flush.
    "rejected_new": TileKind("dashboard/fragments/rejected_new.html", SUPPORT, early=False),
}

ALARMS: Tile = Tile("alarms")
ACTIONS: Tile = Tile("actions")
STATUS: Tile = Tile("status")
REJECTIONS: Tile = Tile("rejections")
MALFORMED: Tile = Tile("malformed")
SUMMARY_TILE: Tile = Tile("summary")
SUMMARY_NAME: Tile = Tile("summary_name")  # changes only when the building is renamed
BANNER: Tile = Tile("banner")  # pushed when it happens, never part of a snapshot
REJECTED_NEW: Tile = Tile("rejected_new")  # likewise: prepended to open inspectors


def meta(device_id: uuid.UUID, name: str) -> Tile:
    return Tile("meta", device_id, name)


def device(device_id: uuid.UUID) -> Tile:
    return Tile("device", device_id)


def attempt(attempt_id: int) -> Tile:
    return Tile("attempt", attempt=attempt_id)


def batch(batch_id: uuid.UUID) -> Tile:
    return Tile("batch", batch_id)


def headcount(entity_id: uuid.UUID) -> Tile:
    return Tile("headcount", entity_id)
