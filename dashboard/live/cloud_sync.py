"""Sync buildings from the Gooee Cloud API into the database: one transaction per building.

``cloud.client`` reads, ``cloud.mapping`` turns the answers into an inventory-file building, and
``inventory.apply_inventory`` writes it as an imported file would be written; a building is
synced whole or not at all. Used by ``manage.py sync_inventory`` and by a running bridge.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction

from dashboard.cloud.client import CloudApiError, CloudClient, NotFound
from dashboard.cloud.mapping import MappingError, map_building
from dashboard.live.inventory import ImportReport, apply_inventory
from dashboard.live.inventory_file import InventoryError, parse_inventory
from dashboard.models import Area, Building

logger = logging.getLogger(__name__)


class SyncError(Exception):
    """A building could not be synced; one line, never the token."""


@dataclass
class SyncResult:
    building_id: uuid.UUID
    name: str = ""
    report: ImportReport | None = None
    notes: list[str] = field(default_factory=list)

    dry_run: bool = False

    def lines(self) -> list[str]:
        head = f"{self.name} ({self.building_id})"
        if self.dry_run:
            head += " [dry run, nothing written]"
        body = self.report.lines() if self.report is not None else []
        return [f"{head}: {'; '.join(body)}", *(f"  note: {n}" for n in self.notes)]


def client_from_settings(**options: Any) -> CloudClient:
    """A client for the configured API, or SyncError saying which setting is missing.

    ``options`` go to ``CloudClient`` (timeouts, retries, its ``sleep``).
    """
    if not settings.GOOEE_API_TOKEN:
        raise SyncError("GOOEE_API_TOKEN: not set (nor a password in MQTT_URL to use instead)")
    return CloudClient(
        settings.GOOEE_API_URL,
        settings.GOOEE_API_TOKEN,
        scheme=settings.GOOEE_API_AUTH_SCHEME,
        **options,
    )


def cloud_building_ids(client: CloudClient) -> list[uuid.UUID]:
    """Every building the token can see."""
    try:
        found = client.list("/buildings")
    except CloudApiError as exc:
        raise SyncError(str(exc)) from None
    ids = []
    for index, item in enumerate(found):
        try:
            ids.append(uuid.UUID(str(item["id"])))
        except (TypeError, KeyError, ValueError):
            raise SyncError(f"buildings[{index}].id: not an id (a UUID)") from None
    return ids


def _kept_areas(building_id: uuid.UUID, space_ids: set[str]) -> list[dict[str, Any]]:
    """The areas already here, as the file format lists them (for an API without areas)."""
    return [
        {
            "id": str(pk),
            "name": name,
            "space": str(space_id) if space_id and str(space_id) in space_ids else None,
            "capacity": capacity,
        }
        for pk, name, space_id, capacity in Area.objects.filter(
            building_id=building_id
        ).values_list("pk", "name", "space_id", "capacity")
    ]


def fetch(client: CloudClient, building_id: uuid.UUID) -> tuple[dict[str, Any], list[str]]:
    """The building as an inventory-file building, and notes on what was dropped or kept."""
    query = {"building": str(building_id)}
    try:
        building = client.get(f"/buildings/{building_id}")
    except NotFound as exc:
        raise SyncError(f"building {building_id}: not in the Gooee Cloud ({exc})") from None
    except CloudApiError as exc:
        raise SyncError(f"building {building_id}: {exc}") from None
    try:
        spaces = client.list("/spaces", query)
        devices = client.list("/devices", query)
        try:
            areas: list[Any] | None = client.list("/areas", query)
        except NotFound:
            areas = None
        mapped = map_building(building, spaces, areas, devices)
    except (CloudApiError, MappingError) as exc:
        raise SyncError(f"building {building_id}: {exc}") from None
    if str(uuid.UUID(mapped.building["id"])) != str(building_id):
        raise SyncError(
            f"building {building_id}: the API answered with building {mapped.building['id']}"
        )
    notes = list(mapped.notes)
    if areas is None:
        space_ids = {s["id"] for s in mapped.building["spaces"]}
        mapped.building["areas"] = _kept_areas(building_id, space_ids)
        notes.append(
            f"the API has no areas endpoint (404): kept the {len(mapped.building['areas'])} "
            "areas already here"
        )
    return mapped.building, notes


class _DryRun(Exception):
    """Rolls a dry run's transaction back once its report is made."""


def sync_building(
    client: CloudClient, building_id: uuid.UUID, *, prune: bool = False, dry_run: bool = False
) -> SyncResult:
    """Read one building from the API and write it whole (or, dry, say what would change)."""
    data, notes = fetch(client, building_id)
    result = SyncResult(building_id, data["name"], notes=notes, dry_run=dry_run)
    try:
        inventory = parse_inventory(json.dumps({"buildings": [data]}))
        with transaction.atomic():
            result.report = apply_inventory(inventory, prune=prune)
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
    except InventoryError as exc:
        raise SyncError(f"building {building_id}: {exc.messages[0]}") from None
    return result


def buildings_here() -> list[uuid.UUID]:
    """The buildings already in the database: what a sync without arguments follows."""
    return list(Building.objects.values_list("id", flat=True))


def resync_building(building_id: uuid.UUID) -> SyncResult:
    """What a running bridge does every ``GOOEE_SYNC_MINUTES``: sync one building, pruning.

    The dashboard follows the cloud: a device removed there goes here too (with its history).
    """
    with client_from_settings() as client:
        return sync_building(client, building_id, prune=True)
