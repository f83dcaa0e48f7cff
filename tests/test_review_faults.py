"""Faults found by review: each story fails on the code before its fix."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from dashboard import alarms
from dashboard.bridge.ingest import ingest
from dashboard.live.state import LiveState
from dashboard.live.store import load_building, write_batch
from dashboard.models import Building, Device, FaultAlarm
from tests import seed

pytestmark = pytest.mark.django_db


class Collect:
    def __init__(self) -> None:
        self.records: list[object] = []

    def changed(self, tile: tuple) -> None:
        pass

    def record(self, record: object) -> None:
        self.records.append(record)


@pytest.fixture
def lamp() -> Device:
    building = Building.objects.create(name="Headquarters")
    return Device.objects.create(building=building, name="Lamp 1")


def test_a_cleared_alarm_stays_cleared_when_an_older_record_is_written_after_the_clear(lamp):
    building_id = lamp.building_id
    state, sink = LiveState(building_id), Collect()
    inventory = load_building(building_id)
    then = timezone.now() - timedelta(seconds=5)
    for n in range(3):
        alarm = {**seed.DEVICE_FAULT_ALARM, "timestamp": f"2020-02-17T15:47:5{n}.000000Z"}
        topic = f"devices/{lamp.id}/fault_alarms"
        ingest(state, inventory, topic, json.dumps(alarm).encode(), then, sink)
    write_batch([(building_id, sink.records[0])])
    stored = FaultAlarm.objects.get()
    user = get_user_model().objects.create_user("sam")
    alarms.transition(building_id, [stored.pk], FaultAlarm.CLEARED, user, "fixed")

    # The third occurrence was queued before the clear and reaches the database after it.
    write_batch([(building_id, sink.records[-1])])

    assert list(FaultAlarm.objects.values_list("state", flat=True)) == ["cleared"]


def test_an_occurrence_after_the_clear_opens_a_new_alarm(lamp):
    building_id = lamp.building_id
    state, sink = LiveState(building_id), Collect()
    inventory = load_building(building_id)
    topic = f"devices/{lamp.id}/fault_alarms"
    ingest(
        state,
        inventory,
        topic,
        json.dumps(seed.DEVICE_FAULT_ALARM).encode(),
        timezone.now() - timedelta(seconds=5),
        sink,
    )
    write_batch([(building_id, sink.records[0])])
    user = get_user_model().objects.create_user("sam")
    alarms.transition(building_id, [FaultAlarm.objects.get().pk], FaultAlarm.CLEARED, user, "")
    state.alarms.clear()  # what the bridge does when told of the clear
    again = {**seed.DEVICE_FAULT_ALARM, "timestamp": "2030-01-01T00:00:00.000000Z"}
    ingest(state, inventory, topic, json.dumps(again).encode(), timezone.now(), sink)
    write_batch([(building_id, sink.records[-1])])

    assert sorted(FaultAlarm.objects.values_list("state", "count")) == [
        ("cleared", 1),
        ("open", 1),
    ]
