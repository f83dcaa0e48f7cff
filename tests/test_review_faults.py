"""Faults found by review: each story fails on the code before its fix."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.contrib.auth import get_user_model
from django.test import AsyncClient
from django.utils import timezone

from dashboard import alarms
from dashboard.bridge.ingest import ingest
from dashboard.contract.topics import Scope
from dashboard.live.state import AttemptSeen, LiveState
from dashboard.live.store import load_building, write_batch
from dashboard.models import ActionAttempt, Building, Device, FaultAlarm
from tests import seed
from tests.bridging import subscribed

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


# --- 5: an action's audit tells the truth in every order of events ---------------------------


def _attempt(building: Building, outcome: str, reason: str = "") -> ActionAttempt:
    return ActionAttempt.objects.create(
        building=building,
        username="olivia",
        target_type="space",
        topic="spaces/x/actions",
        payload="{}",
        outcome=outcome,
        reason=reason,
    )


def test_a_seen_action_recorded_failed_is_recorded_as_published_after_all(lamp):
    attempt = _attempt(lamp.building, ActionAttempt.FAILED, "no bridge answered within 7 s")
    write_batch([(lamp.building_id, AttemptSeen(attempt.id, timezone.now()))])
    attempt.refresh_from_db()
    assert attempt.outcome == ActionAttempt.SEEN
    assert attempt.reason == (
        "published after all: it came back after being recorded failed "
        "(no bridge answered within 7 s)"
    )


@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
async def test_a_request_that_reaches_the_bridge_after_its_deadline_is_not_published(
    hq, people, running_bridge, subscriber, settings, monkeypatch
):
    settings.ACTION_PUBACK_TIMEOUT_SECONDS = 0.2
    bridge = await running_bridge()
    await subscribed(bridge, hq[Scope.BUILDING])
    watcher = await sync_to_async(subscriber)("spaces/+/actions")
    channels = get_channel_layer()
    deliver = channels.group_send
    late: list[asyncio.Task] = []

    async def slow_group_send(group: str, message: dict) -> None:
        # A channel layer that delivers the request after the view has given up on it.
        if message["type"] == "action.publish":
            late.append(asyncio.create_task(_later(3.0, deliver(group, message))))
        else:
            await deliver(group, message)

    monkeypatch.setattr(channels, "group_send", slow_group_send)
    client = AsyncClient(HTTP_HX_REQUEST="true")
    await client.aforce_login(people.operator)
    space = hq[Scope.SPACE]
    response = await client.post(
        f"/buildings/{hq[Scope.BUILDING]}/actions/",
        {
            f"space-{space}-target": f"space:{space}",
            f"space-{space}-idempotency_key": "late-one",
            f"space-{space}-transition_time": 5,
            f"space-{space}-action": "off",
        },
    )
    assert "no bridge answered" in response.content.decode()
    await asyncio.gather(*late)
    await asyncio.sleep(0.5)
    assert watcher.messages == []
    attempt = await ActionAttempt.objects.aget()
    assert attempt.outcome == ActionAttempt.FAILED


async def _later(delay: float, work: Any) -> None:
    await asyncio.sleep(delay)
    await work
