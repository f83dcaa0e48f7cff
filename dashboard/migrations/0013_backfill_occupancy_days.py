"""Make the occupancy day rows from the hour rows already stored, building by building,
through the same statement the history writer runs after each batch."""

from __future__ import annotations

from typing import Any

from django.db import migrations

from dashboard.live import occupancy_days


def backfill(apps: Any, schema_editor: Any) -> None:
    tables = occupancy_days.Tables(
        apps.get_model("dashboard", "OccupancyHour"),
        apps.get_model("dashboard", "OccupancyDay"),
        apps.get_model("dashboard", "Building"),
    )
    for building_id in tables.building._default_manager.values_list("id", flat=True):
        occupancy_days.rebuild(building_id, tables)


class Migration(migrations.Migration):
    dependencies = [
        ("dashboard", "0012_occupancy_day"),
    ]

    operations = [migrations.RunPython(backfill, migrations.RunPython.noop, elidable=True)]
