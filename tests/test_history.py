"""History is written in batches, restored after a restart, and pruned past retention."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db import DataError
from django.utils import timezone

from dashboard.bridge.ingest import ingest
from dashboard.live.building_store import load_building
from dashboard.live.load import load_state
from dashboard.live.state import HeadcountValue, LiveState, MetaValue, Rejection
from dashboard.live.store import write_batch
from dashboard.models import (
    Building,
    Device,
    FaultAlarm,
    LatestMeta,
    MetaSample,
    RejectedPayload,
)
from tests import seed

pytestmark = pytest.mark.django_db


class Collect:
    def __init__(self) -> None:
        self.tiles: list[tuple] = []
        self.records: list[object] = []

    def changed(self, tile: tuple) -> None:
        self.tiles.append(tile)

    def record(self, record: object) -> None:
        self.records.append(record)


@pytest.fixture
def lamp() -> Device:
    building = Building.objects.create(name="Headquarters")
    return Device.objects.create(building=building, name="Lamp 1")


def test_what_the_bridge_wrote_is_the_state_a_restarted_bridge_starts_from(lamp):
    building_id = lamp.building_id
    state, sink = LiveState(building_id), Collect()
    inventory = load_building(building_id)
    now = timezone.now()
    alarm = dict(seed.DEVICE_FAULT_ALARM)
    for n in range(5):  # five occurrences of one alarm, one of them redelivered
        alarm["timestamp"] = f"2020-02-17T15:47:5{n}.000000Z"
        for _ in range(2 if n == 2 else 1):
            ingest(state, inventory, f"devices/{lamp.id}/fault_alarms", _json(alarm), now, sink)
    ingest(state, inventory, f"devices/{lamp.id}/meta", _json(seed.DEVICE_META), now, sink)

    write_batch([(building_id, r) for r in sink.records])
    write_batch([(building_id, r) for r in sink.records])  # a retried batch changes no count

    alarms = FaultAlarm.objects.get()
    assert (alarms.count, alarms.type, alarms.state) == (5, "high_temperature", "open")
    restored = load_state(building_id)
    assert restored.meta[lamp.id]["temperature"].value == 87.4
    assert restored.alarms[(lamp.id, "high_temperature")].count == 5


def test_prune_history_removes_only_what_is_older_than_retention(lamp):
    now = timezone.now()
    MetaSample.objects.create(
        device=lamp, name="als", value=1, received_at=now - timedelta(days=40)
    )
    MetaSample.objects.create(device=lamp, name="als", value=2, received_at=now - timedelta(days=1))
    call_command("prune_history", "--days", "30")
    assert list(MetaSample.objects.values_list("value", flat=True)) == [2]


def _json(data: object) -> bytes:
    return json.dumps(data).encode()


def test_unknown_device_topics_are_ignored_not_stored(lamp):
    state, sink = LiveState(lamp.building_id), Collect()
    inventory = load_building(lamp.building_id)
    outcome = ingest(
        state,
        inventory,
        f"devices/{uuid.uuid4()}/meta",
        _json(seed.DEVICE_META),
        timezone.now(),
        sink,
    )
    assert outcome == "unknown"
    assert sink.records == [] and state.meta == {}


def test_a_nul_character_from_a_device_does_not_stop_history(lamp):
    # PostgreSQL refuses NUL in text and jsonb; the batch is stored with it replaced.
    now = datetime.now(UTC)
    building = lamp.building_id
    written = write_batch(
        [
            (building, MetaValue(lamp.id, "display_name", "a\x00b", "Name\x00", "", "", now)),
            (
                building,
                Rejection(
                    f"devices/{lamp.id}/meta/rejected",
                    "rejected_meta",
                    lamp.id,
                    "bad\x00",
                    {"k\x00": "v\x00"},
                    ["\x00"],
                    now,
                ),
            ),
        ]
    )
    assert written >= 2
    stored = LatestMeta.objects.get(device=lamp, name="display_name")
    assert stored.value in ("a\x00b", "a\ufffdb")  # SQLite keeps it; PostgreSQL gets U+FFFD
    assert RejectedPayload.objects.get().message in ("bad\x00", "bad\ufffd")


def test_a_name_too_long_for_its_column_is_never_stored_cut_short(lamp):
    # The schema admits names of up to 100 characters; a longer one (a writer called some
    # other way) is refused by PostgreSQL, or kept whole by SQLite, which has no lengths:
    # never cut to another name, which could then meet a real one in the same upsert.
    now = datetime.now(UTC)
    name = "a" * 101
    try:
        write_batch([(lamp.building_id, MetaValue(lamp.id, name, 1.0, "", "", "", now))])
    except DataError:
        assert not MetaSample.objects.exists()
    else:
        assert MetaSample.objects.get().name == name


def test_records_of_a_building_deleted_while_queued_are_dropped_not_retried_forever(lamp):
    # Before, the batch failed on a foreign key every time, and no later history was written.
    now = datetime.now(UTC)
    gone = Building.objects.create(name="Sold")
    headcount = HeadcountValue("building", gone.id, "head_count", 4, now)
    gone_id = gone.id
    gone.delete()
    kept = MetaValue(lamp.id, "als", 5, "ALS", "lux", "", now)
    assert write_batch([(gone_id, headcount), (lamp.building_id, kept)]) >= 1
    assert list(MetaSample.objects.values_list("value", flat=True)) == [5]
