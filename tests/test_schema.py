"""The database schema: migrations match the models, and the history tables stay indexed.

The history writer stores every value a device sends, and each index costs it a B-tree
insert per row; an index that another one's first column already serves is left out
(docs/benchmarks.md, "Writer"). These tests keep the lookups it would have served fast.
"""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.db import connection

from dashboard.models import Device, LatestMeta, MetaHour, MetaMinute, MetaSample

pytestmark = pytest.mark.django_db


def test_the_models_need_no_migration_that_is_not_written():
    out = io.StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)  # SystemExit(1) if any


@pytest.mark.parametrize("model", [MetaSample, LatestMeta, MetaMinute, MetaHour])
def test_a_devices_history_is_found_through_an_index_not_a_table_scan(model):
    """What a device's page and a deleted device's cascade ask of each history table."""
    if connection.vendor != "sqlite":
        pytest.skip("the plan is read with SQLite's EXPLAIN QUERY PLAN")
    query = model.objects.filter(device=Device(pk=1)).values("pk").query
    sql, params = query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
        plan = " ".join(str(row[-1]) for row in cursor.fetchall())
    assert plan.startswith("SEARCH") and "INDEX" in plan, plan  # not "SCAN dashboard_..."
