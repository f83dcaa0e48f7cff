"""The demo's simulated building: people come and go over a day, devices report and obey."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from dashboard.bridge.broker_url import BrokerUrl, parse_broker_url
from dashboard.contract import payloads
from dashboard.contract.topics import Kind, parse_topic
from dashboard.demo.emulator import CloudEmulator, encode
from dashboard.demo.inventory import (
    INVENTORY_FILE,
    building_inventories,
    building_inventory,
    demo_inventory,
    is_sensor,
)
from dashboard.demo.simulator import DAY_STEPS, OVERFLOW, BuildingSimulator, Occupancy
from dashboard.live.buildings import BuildingInventory
from dashboard.live.inventory import apply_inventory
from dashboard.live.inventory_file import parse_inventory
from dashboard.models import Building, Device


@pytest.fixture
def harbour_house() -> BuildingInventory:
    return building_inventories(demo_inventory())[0]


def space_named(inventory: BuildingInventory, name: str) -> uuid.UUID:
    return next(s.id for s in inventory.spaces.values() if s.name == name)


# --- the demo building -----------------------------------------------------------------------


@pytest.mark.django_db
def test_the_committed_demo_building_is_the_generators_and_imports_cleanly() -> None:
    text = INVENTORY_FILE.read_text(encoding="utf-8")
    assert json.loads(text) == demo_inventory()

    report = apply_inventory(parse_inventory(text))

    assert report.lines() == ["created: 1 building, 6 spaces, 3 areas, 40 devices"]
    assert apply_inventory(parse_inventory(text)).lines() == ["nothing changed"]
    building = Building.objects.get()
    assert building.name == "Harbour House"
    assert not Device.objects.filter(space=None).exists()


@pytest.mark.parametrize("devices", [0, 1, 7, 40, 41, 250])
def test_generated_buildings_have_the_devices_asked_for_in_their_spaces(devices: int) -> None:
    data = building_inventory(devices, seed=11)

    inventory = parse_inventory(json.dumps(data))  # the import's own validation

    [building] = inventory.buildings
    assert len(building.devices) == devices
    spaces = {s.id for s in building.spaces}
    assert all(d.space_id in spaces for d in building.devices)
    assert all(a.space_id in spaces for a in building.areas)
    assert building_inventory(devices, seed=11) == data
    assert building_inventory(devices, seed=12)["buildings"][0]["id"] != str(building.id)


# --- a day of occupancy -----------------------------------------------------------------------


def test_occupancy_stays_consistent_through_two_simulated_days(harbour_house) -> None:
    occupancy = Occupancy(harbour_house, random.Random(3))
    capacity = {s.id: s.capacity for s in harbour_house.spaces.values()}
    area_capacity = {a.id: a.capacity for a in harbour_house.areas.values()}
    busiest = 0
    for _ in range(2 * DAY_STEPS):
        occupancy.step()
        readings = {r.id: r for r in occupancy.readings()}
        for r in readings.values():
            assert r.head_count == r.headcount_in - r.headcount_out >= 0
        spaces = [readings[sid] for sid in capacity]
        for space in spaces:
            assert space.head_count <= capacity[space.id] * OVERFLOW
        for area in harbour_house.areas.values():
            assert readings[area.id].head_count <= area_capacity[area.id]
            assert readings[area.id].head_count <= readings[area.space_id].head_count
        building = readings[harbour_house.id]
        assert building.headcount_in == sum(s.headcount_in for s in spaces)
        assert building.headcount_out == sum(s.headcount_out for s in spaces)
        assert building.head_count == sum(s.head_count for s in spaces)
        busiest = max(busiest, building.head_count)
        if occupancy.minute == 0:  # a new day: counters start again
            assert building.headcount_in == building.headcount_out == 0
        if occupancy.minute == DAY_STEPS - 1:  # 19:29: everyone went home
            assert building.head_count == 0
    assert busiest > sum(capacity.values()) / 3  # the working day fills the building


def test_the_same_seed_gives_the_same_day(harbour_house) -> None:
    def day(seed: int) -> list[Any]:
        occupancy = Occupancy(harbour_house, random.Random(seed))
        for _ in range(DAY_STEPS // 2):
            occupancy.step()
        return occupancy.readings()

    assert day(5) == day(5)
    assert day(5) != day(6)


# --- on a broker, with the cloud emulator -----------------------------------------------------

Running = Callable[..., Any]


@pytest.fixture
def broker_url(broker) -> BrokerUrl:
    return parse_broker_url(broker.url)


@pytest.fixture
async def running(broker_url, harbour_house) -> AsyncIterator[Running]:
    """Starts the emulator and a simulator of Harbour House; both are stopped afterwards."""
    started: list[Any] = []

    async def start(**options: Any) -> BuildingSimulator:
        emulator = CloudEmulator(broker_url, [harbour_house])
        await emulator.start()
        started.append(emulator)
        simulator = BuildingSimulator(broker_url, [harbour_house], **options)
        await simulator.start()
        started.append(simulator)
        return simulator

    yield start
    for component in reversed(started):
        await component.stop()


def meta_of(message: Any) -> dict[str, Any]:
    result = payloads.parse(Kind.META, message.payload)
    assert isinstance(result, payloads.Payload), result
    return {item["name"]: item["value"] for item in result.data}


@pytest.mark.broker
async def test_the_buildings_devices_and_people_report_through_the_cloud(
    running, subscriber, harbour_house
) -> None:
    watcher = subscriber(
        "devices/+/meta",
        "devices/+/meta/rejected",
        "spaces/+/meta/head_count",
        "+/+/fault_alarms",
        "+/+/fault_alarms/rejected",
    )
    await running(seed=1, rate=60, invalid_fraction=0, day_minutes=0.5, alarm_interval=0.05)

    metas = await asyncio.to_thread(watcher.wait_for, "devices/+/meta", count=30)
    await asyncio.to_thread(
        watcher.wait_for, "spaces/+/meta/head_count", count=len(harbour_house.spaces)
    )
    await asyncio.to_thread(watcher.wait_for, "devices/+/fault_alarms")
    alarms = await asyncio.to_thread(watcher.wait_for, "buildings/+/fault_alarms")

    for message in metas:
        device = harbour_house.devices[parse_topic(message.topic).id]
        names = set(meta_of(message))
        assert names == (
            {"temperature", "als"} if is_sensor(device.name) else {"dim", "power", "onoff"}
        )
    for alarm in alarms:
        assert isinstance(payloads.parse(Kind.FAULT_ALARM, alarm.payload), payloads.Payload)
        assert parse_topic(alarm.topic).id == harbour_house.id
    assert not [m for m in watcher.messages if m.topic.endswith("/rejected")]


@pytest.mark.broker
async def test_some_publishes_are_invalid_on_purpose_and_the_cloud_rejects_them(
    running, subscriber
) -> None:
    watcher = subscriber("devices/+/meta/rejected", "devices/+/meta")
    simulator = await running(seed=2, rate=50, invalid_fraction=0.5)

    rejections = await asyncio.to_thread(watcher.wait_for, "devices/+/meta/rejected", count=5)

    for message in rejections:
        envelope = json.loads(message.payload)
        assert envelope["error"]["message"].startswith("Invalid payload")
    assert simulator.stats["invalid"] >= 5
    # The invalid ones never reach the real topic.
    for message in watcher.messages:
        if message.topic.endswith("/meta"):
            meta_of(message)


@pytest.mark.broker
async def test_dimming_a_space_dims_its_lamps_after_the_transition(
    running, subscriber, publish, harbour_house
) -> None:
    boardroom = space_named(harbour_house, "Boardroom")
    lamps = {
        d.id
        for d in harbour_house.devices.values()
        if d.space_id == boardroom and not is_sensor(d.name)
    }
    watcher = subscriber("devices/+/meta")
    simulator = await running(seed=3, rate=5, invalid_fraction=0)
    action = {
        "name": "Dim the Boardroom",
        "type": "dim",
        "target_type": "space",
        "target_id": str(boardroom),
        "value": {"level": 35, "transition_time": 1},
    }

    sent = time.monotonic()
    await asyncio.to_thread(publish, f"spaces/{boardroom}/actions", encode(action))

    def dimmed(message: Any) -> bool:
        return parse_topic(message.topic).id in lamps and meta_of(message).get("dim") == 35

    arrived = await asyncio.to_thread(watcher.wait_for, dimmed, count=len(lamps))
    assert {parse_topic(m.topic).id for m in arrived} == lamps
    assert time.monotonic() - sent >= 0.9  # not before the transition time
    assert all(meta_of(m)["onoff"] is True and meta_of(m)["power"] > 0 for m in arrived)
    assert simulator.stats["actions"] == len(lamps)  # only the Boardroom's lamps obeyed


@pytest.mark.broker
async def test_turning_a_space_off_and_on_again_restores_the_level(
    running, subscriber, publish, harbour_house
) -> None:
    cafe = space_named(harbour_house, "Cafe")
    lamps = {
        d.id for d in harbour_house.devices.values() if d.space_id == cafe and not is_sensor(d.name)
    }
    watcher = subscriber("devices/+/meta")
    simulator = await running(seed=4, rate=5, invalid_fraction=0)
    before = {lamp: simulator.lamps[lamp].level for lamp in lamps}

    async def switch(kind: str, reported: Callable[[uuid.UUID, dict], bool]) -> None:
        watcher.clear()
        action = {
            "name": f"Cafe lights {kind}",
            "type": kind,
            "target_type": "space",
            "target_id": str(cafe),
            "value": {"transition_time": 0},
        }
        await asyncio.to_thread(publish, f"spaces/{cafe}/actions", encode(action))

        def done(message: Any) -> bool:
            lamp = parse_topic(message.topic).id
            return lamp in lamps and reported(lamp, meta_of(message))

        await asyncio.to_thread(watcher.wait_for, done, count=len(lamps))

    await switch("off", lambda lamp, meta: meta["onoff"] is False and meta["dim"] == 0)
    await switch("on", lambda lamp, meta: meta["onoff"] is True and meta["dim"] == before[lamp])


@pytest.mark.broker
async def test_the_simulator_and_emulator_stop_cleanly(broker_url, harbour_house) -> None:
    before = set(threading.enumerate())
    emulator = CloudEmulator(broker_url, [harbour_house])
    simulator = BuildingSimulator(broker_url, [harbour_house], rate=100, day_minutes=0.1)
    await emulator.start()
    await simulator.start()
    await asyncio.sleep(0.3)

    await simulator.stop()
    await emulator.stop()

    assert set(threading.enumerate()) - before == set()
    assert simulator.published > 0 and emulator.published > 0


# --- the load generator -------------------------------------------------------------------------


@pytest.mark.django_db
def test_simulate_needs_a_broker(settings) -> None:
    settings.MQTT_BROKER = None

    with pytest.raises(CommandError, match="simulate needs MQTT_URL"):
        call_command("simulate", "--duration", "1")


@pytest.mark.broker
@pytest.mark.django_db
def test_simulate_generates_a_building_imports_it_and_runs_for_a_while(
    settings, broker_url, capsys
) -> None:
    settings.MQTT_BROKER = broker_url
    expected = building_inventory(12, seed=9)["buildings"][0]

    call_command("simulate", "--devices", "12", "--rate", "30", "--seed", "9", "--duration", "1.5")
    call_command("simulate", "--devices", "10", "--rate", "30", "--seed", "9", "--duration", "0.5")

    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("imported the simulated building: created: 1 building")
    assert lines[1].startswith(f"simulating {expected['name']} ({expected['id']}): 12 devices")
    assert lines[2].startswith("published ")
    assert int(lines[2].split()[1]) > 20
    assert "emulator published" in lines[2]
    # The same seed is the same building; fewer devices prunes the rest.
    assert lines[3] == "imported the simulated building: removed: 2 devices"
    assert Building.objects.count() == 1
    assert Device.objects.count() == 10
