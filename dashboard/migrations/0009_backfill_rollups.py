"""Backfill the occupancy and meta rollups from the raw samples already stored.

The samples go through the history writer's own rollup functions, in chunks in the order they
were written, so the rows are those the writer would have made had it rolled them up live.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

from dashboard.live import rollups

CHUNK = 5_000


def backfill(apps: Any, schema_editor: Any) -> None:
    tables = rollups.Tables(
        apps.get_model("dashboard", "OccupancyMinute"),
        apps.get_model("dashboard", "OccupancyHour"),
        apps.get_model("dashboard", "MetaMinute"),
        apps.get_model("dashboard", "MetaHour"),
    )
    headcounts = apps.get_model("dashboard", "HeadcountSample")._default_manager
    meta = apps.get_model("dashboard", "MetaSample")._default_manager
    backfill_from(headcounts, meta, tables)


def backfill_from(headcounts: Any, meta: Any, tables: rollups.Tables) -> None:
    """Roll up every stored sample, CHUNK rows at a time (never all in memory).

    The tables start empty (a migration applied again would otherwise count twice).
    """
    for table in (
        tables.occupancy_minute,
        tables.occupancy_hour,
        tables.meta_minute,
        tables.meta_hour,
    ):
        table._default_manager.all().delete()
    columns = ("building_id", "scope", "entity_id", "kind", "value", "received_at")
    for chunk in _chunks(headcounts, columns):
        rollups.write(chunk, [], tables)
    for chunk in _chunks(meta, ("device_id", "name", "value", "received_at")):
        rollups.write([], chunk, tables)


def _chunks(manager: Any, columns: tuple[str, ...]) -> Any:
    last = 0
    while True:
        rows = list(manager.filter(id__gt=last).order_by("id").values_list("id", *columns)[:CHUNK])
        if not rows:
            return
        last = rows[-1][0]
        yield [row[1:] for row in rows]


class Migration(migrations.Migration):
    dependencies = [
        ("dashboard", "0008_occupancy_rollups"),
    ]

    operations = [migrations.RunPython(backfill, migrations.RunPython.noop, elidable=True)]
