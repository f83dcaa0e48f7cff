"""Headquarters moves to Auckland: what the server renders and pushes reads the building's clock,
its date filters mean the building's days, and its floors hold their rooms."""

from __future__ import annotations

import dataclasses
import re
import uuid
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from asgiref.sync import sync_to_async
from django.contrib.admin.sites import site
from django.test import Client
from django.utils import timezone

from dashboard import page_data
from dashboard.admin import BuildingAdmin
from dashboard.bridge.building import BuildingBridge
from dashboard.bridge.history import HistoryWriter
from dashboard.contract.topics import Scope
from dashboard.live import fragments, tiles
from dashboard.live.building_store import load_building
from dashboard.live.load import load_state
from dashboard.live.state import (
    ActionRecord,
    Alarm,
    ConnectionStatus,
    HeadcountValue,
    LiveState,
    MetaValue,
)
from dashboard.models import (
    ActionAttempt,
    Building,
    Device,
    FaultAlarm,
    LatestMeta,
    RejectedPayload,
    Role,
    Space,
)
from tests.bridging import config_for

pytestmark = pytest.mark.django_db

AUCKLAND = ZoneInfo("Pacific/Auckland")
# 11:30 UTC on 3 March 2026 is half past midnight on the 4th in Auckland (NZDT, +13).
AT = datetime(2026, 3, 3, 11, 30, tzinfo=UTC)


@pytest.fixture
def auckland(hq):
    Building.objects.filter(pk=hq[Scope.BUILDING]).update(timezone="Pacific/Auckland")
    return hq


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_bridge_renders_every_tile_on_the_buildings_clock_without_activating_it(auckland):
    building, space, device = (auckland[s] for s in (Scope.BUILDING, Scope.SPACE, Scope.DEVICE))
    inventory = load_building(building)
    assert inventory is not None and inventory.zone == AUCKLAND
    state = LiveState(building)
    state.meta[device] = {
        "temperature": MetaValue(device, "temperature", 21.5, "Temperature", "C", "", AT)
    }
    state.headcounts[(space, "head_count")] = HeadcountValue("space", space, "head_count", 3, AT)
    state.alarms[(device, "hot")] = Alarm(device, "hot", "critical", 1, "", "", {}, 1, AT, AT)
    state.status = ConnectionStatus("connected", AT, None, AT)
    assert timezone.get_current_timezone_name() == "UTC"  # the bridge's, for every building
    for tile in (
        tiles.Tile("meta", device, "temperature"),
        tiles.device(device),
        tiles.headcount(space),
        tiles.ALARMS,
        tiles.STATUS,
    ):
        html = fragments.render_tile(tile, state, inventory)
        assert ">00:30:00<" in html, tile
        assert ">11:30:00<" not in html, tile
    assert timezone.get_current_timezone_name() == "UTC"


def test_a_seen_actions_creation_time_is_on_the_buildings_clock(auckland):
    building, space = auckland[Scope.BUILDING], auckland[Scope.SPACE]
    inventory = load_building(building)
    assert inventory is not None
    state = LiveState(building)
    state.actions.appendleft(
        ActionRecord(
            f"spaces/{space}/actions", "Dim", "dim", "space", space, 40, "2026-03-03T11:30:00Z", AT
        )
    )
    state.actions.appendleft(
        ActionRecord(f"spaces/{space}/actions", "Off", "off", "space", space, None, "soon", AT)
    )
    html = fragments.render_tile(tiles.ACTIONS, state, inventory)
    assert "created 2026-03-04 00:30:00" in html
    assert "created soon" in html  # not a time: shown as it came, escaped by the template


def test_a_synced_value_is_marked_and_a_live_one_is_not(auckland):
    device = auckland[Scope.DEVICE]
    LatestMeta.objects.create(
        device_id=device, name="temperature", value=20, received_at=AT, synced=True
    )
    LatestMeta.objects.create(device_id=device, name="als", value=300, received_at=AT)
    state = load_state(auckland[Scope.BUILDING])
    assert state.meta[device]["temperature"].synced and not state.meta[device]["als"].synced
    inventory = load_building(auckland[Scope.BUILDING])
    assert inventory is not None
    html = fragments.render_tile(tiles.device(device), state, inventory)
    values = dict(segment.split('"', 1) for segment in html.split('data-name="')[1:])
    assert "from the cloud" in values["temperature"]
    assert "from the cloud" not in values["als"]


def test_each_value_shows_its_own_second_on_its_own_buildings_clock():
    """Values pushed one after another: within a second, across one, and for buildings in
    other zones (the texts of the last second are kept, so each must be asked anew)."""
    device = uuid.uuid4()

    def shown(at: datetime, zone: str) -> tuple[str, str]:
        value = MetaValue(device, "als", 300, "Ambient light", "lux", "", at)
        item = fragments.meta_item(value, ZoneInfo(zone))
        return item["at_iso"], item["at_text"]

    late = datetime(2026, 3, 3, 11, 30, 5, 999_000, tzinfo=UTC)
    assert shown(late, "Pacific/Auckland") == ("2026-03-03T11:30:05+00:00", "00:30:05")
    assert shown(late.replace(microsecond=1), "Pacific/Auckland")[1] == "00:30:05"
    assert shown(late.replace(second=6, microsecond=0), "Pacific/Auckland")[1] == "00:30:06"
    assert shown(late.replace(second=6), "Europe/London")[1] == "11:30:06"
    assert shown(late, "Europe/London") == ("2026-03-03T11:30:05+00:00", "11:30:05")
    berlin = late.astimezone(ZoneInfo("Europe/Berlin"))  # the same second, given in another zone
    assert shown(berlin, "Europe/London") == ("2026-03-03T12:30:05+01:00", "11:30:05")


def test_date_filters_mean_the_buildings_days(auckland, people):
    building = auckland[Scope.BUILDING]
    ActionAttempt.objects.create(
        building_id=building, username="olivia", target_type="device", created_at=AT
    )
    client = logged_in(people.viewer)

    def listed(**params: str) -> int:
        html = client.get(f"/buildings/{building}/activity/", params).content.decode()
        return html.count('<td><time datetime="')

    # The 4th in Auckland; the 3rd in UTC.
    assert listed(**{"from": "2026-03-04"}) == 1
    assert listed(to="2026-03-03") == 0
    assert listed(**{"from": "2026-03-04", "to": "2026-03-04"}) == 1


def test_the_zone_stays_with_its_building_page(auckland, people):
    """A page of another building, after one in Auckland on the same thread, is not in Auckland."""
    client = logged_in(people.outsider)
    elsewhere = Building.objects.get(name="Elsewhere")
    ActionAttempt.objects.create(
        building=elsewhere, username="oscar", target_type="device", created_at=AT
    )
    ActionAttempt.objects.create(
        building_id=auckland[Scope.BUILDING], username="olivia", target_type="device", created_at=AT
    )
    Role.objects.create(user=people.outsider, building_id=auckland[Scope.BUILDING], role="viewer")
    first = client.get(f"/buildings/{auckland[Scope.BUILDING]}/activity/").content.decode()
    assert "2026-03-04 00:30:00 NZDT" in first
    assert timezone.get_current_timezone_name() == "UTC"  # not left for the next request
    second = client.get(f"/buildings/{elsewhere.id}/activity/").content.decode()
    assert "2026-03-03 11:30:00 UTC" in second and "Times in UTC" in second
    assert timezone.get_current_timezone_name() == "UTC"


def test_todays_chart_starts_at_the_buildings_midnight(auckland):
    inventory = load_building(auckland[Scope.BUILDING])
    assert inventory is not None
    now = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)  # 01:00 on the 4th in Auckland
    trend = page_data.headcount_trend(inventory, now)
    assert trend["zone"] == "Pacific/Auckland"
    assert trend["since"] == int(datetime(2026, 3, 4, tzinfo=AUCKLAND).timestamp())
    assert trend["since"] == int(datetime(2026, 3, 3, 11, 0, tzinfo=UTC).timestamp())


@pytest.fixture
def floors(hq):
    """Floor 1 holding Room A and Room B (Lamp 1 moves to Room A), a sensor in both rooms."""
    building = hq[Scope.BUILDING]
    floor = Space.objects.create(building_id=building, name="Floor 1")
    room_a = Space.objects.create(building_id=building, name="Room A", parent=floor)
    room_b = Space.objects.create(building_id=building, name="Room B", parent=floor)
    Device.objects.filter(pk=hq[Scope.DEVICE]).update(space=room_a)
    sensor = Device.objects.create(building_id=building, space=room_a, name="Sensor")
    sensor.spaces.set([room_b, room_a])
    return {"floor": floor.id, "room_a": room_a.id, "room_b": room_b.id, "sensor": sensor.id}


def test_the_inventory_knows_each_floors_rooms_and_each_devices_spaces(hq, floors):
    inventory = load_building(hq[Scope.BUILDING])
    assert inventory is not None
    names = [(space.name, depth) for space, depth in inventory.space_tree()]
    assert names == [("Floor 1", 0), ("Room A", 1), ("Room B", 1), ("Open Office", 0)]
    assert inventory.within(floors["floor"]) == {
        floors["floor"],
        floors["room_a"],
        floors["room_b"],
    }
    sensor = inventory.devices[floors["sensor"]]
    assert inventory.spaces_of(sensor) == (floors["room_a"], floors["room_b"])  # its card's first


def test_the_space_filter_keeps_the_devices_of_the_rooms_inside(hq, floors, people):
    client = logged_in(people.viewer)

    def shown(space: uuid.UUID) -> list[str]:
        html = client.get(f"/buildings/{hq[Scope.BUILDING]}/", {"space": space.hex}).content
        rows = re.findall(r'data-name="([^"]+)"( hidden)?>', html.decode())
        return [name for name, hidden in rows if not hidden]

    assert shown(floors["floor"]) == ["lamp 1", "sensor"]
    assert shown(floors["room_a"]) == ["lamp 1", "sensor"]
    assert shown(floors["room_b"]) == ["sensor"]
    assert shown(hq[Scope.SPACE]) == []


def test_a_large_buildings_space_filter_is_the_servers_and_keeps_the_rooms(
    hq, floors, people, monkeypatch
):
    monkeypatch.setattr(page_data, "DEVICES_PER_PAGE", 1)  # paged: the server filters
    html = logged_in(people.viewer).get(
        f"/buildings/{hq[Scope.BUILDING]}/", {"space": floors["floor"].hex, "page": "2"}
    )
    assert re.findall(r'data-name="([^"]+)"', html.content.decode()) == ["sensor"]
    assert "2\u20132 of 2 shown" in html.content.decode()


def test_a_page_of_space_cards_may_start_inside_a_floor(hq, floors, people, monkeypatch):
    monkeypatch.setattr(page_data, "CARDS_PER_PAGE", 2)
    client = logged_in(people.viewer)
    url = f"/buildings/{hq[Scope.BUILDING]}/"
    first = client.get(url).content.decode()
    assert 'aria-label="Inside Floor 1"' in first
    second = client.get(url, {"spaces_page": "2"}).content.decode()
    cards = re.findall(r'<section id="headcount-([0-9a-f]{32})"', second)
    assert cards[1:3] == [floors["room_b"].hex, hq[Scope.SPACE].hex]  # after the building's
    assert 'aria-label="Continued"' in second


def test_the_admin_refuses_an_unknown_time_zone_and_a_change_reaches_the_bridge(hq):
    admin = BuildingAdmin(Building, site)
    form_class = admin.get_form(None)
    building = Building.objects.get(pk=hq[Scope.BUILDING])
    data = {
        "id": str(building.id),
        "name": building.name,
        "timezone": "Mars/Olympus",
        "opening_days": ["0", "1", "2", "3", "4"],
        "opening_time": "08:00",
        "closing_time": "18:00",
    }
    form = form_class(data, instance=building)
    assert not form.is_valid() and "timezone" in form.errors
    version = building.inventory_version
    form = form_class({**data, "timezone": "Europe/London"}, instance=building)
    assert form.is_valid()
    form.save()
    building.refresh_from_db()
    assert building.timezone == "Europe/London" and building.inventory_version > version


def test_an_export_names_its_zone_and_gives_local_times(auckland, people):
    building = auckland[Scope.BUILDING]
    ActionAttempt.objects.create(
        building_id=building, username="olivia", target_type="device", created_at=AT
    )
    response = logged_in(people.viewer).get(f"/buildings/{building}/activity.csv")
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert lines[0].endswith(",time_zone")
    assert lines[1].startswith("2026-03-04T00:30:00+13:00,")
    assert lines[1].endswith(",Pacific/Auckland")


def test_the_alarms_of_a_floor_are_those_of_its_rooms(hq, floors, people):
    building = hq[Scope.BUILDING]
    lamp = FaultAlarm.objects.create(
        building_id=building, device_id=hq[Scope.DEVICE], type="hot", level="warning",
        priority=2, payload={}, first_seen=AT, last_seen=AT,
    )  # fmt: skip
    sensor = FaultAlarm.objects.create(
        building_id=building, device_id=floors["sensor"], type="dead", level="critical",
        priority=1, payload={}, first_seen=AT, last_seen=AT,
    )  # fmt: skip
    client = logged_in(people.viewer)

    def shown(space: uuid.UUID) -> set[int]:
        html = client.get(f"/buildings/{building}/alarms/", {"space": str(space)}).content
        assert b"Ignored" not in html
        return {int(n) for n in re.findall(rb'id="alarm-(\d+)"', html)}

    assert shown(floors["floor"]) == {lamp.id, sensor.id}
    assert shown(floors["room_b"]) == {sensor.id}  # the sensor is in Room B too
    assert shown(hq[Scope.SPACE]) == set()
    html = client.get(f"/buildings/{building}/alarms/").content.decode()
    assert f'<option value="{floors["room_a"]}">\u2003Room A</option>' in html


@pytest.mark.django_db(transaction=True)
async def test_a_buildings_new_zone_reaches_every_open_page_at_once(auckland):
    """The admin moves Headquarters' zone: the bridge pushes every tile again, on its clock."""
    building, space = auckland[Scope.BUILDING], auckland[Scope.SPACE]
    inventory = await sync_to_async(load_building)(building)
    assert inventory is not None
    sent: list[str] = []

    async def send(building_id: uuid.UUID, html: str, audience: str, *rest: object) -> None:
        sent.append(html)

    state = LiveState(building)
    state.headcounts[(space, "head_count")] = HeadcountValue("space", space, "head_count", 3, AT)
    bridge = BuildingBridge(
        inventory,
        state,
        config_for("mqtt://127.0.0.1:1"),
        HistoryWriter(60),
        send,
        0.05,
        65536,
    )
    bridge.update_inventory(dataclasses.replace(inventory, version=inventory.version + 1))
    await bridge.fanout.flush()
    assert f'id="headcount-{space.hex}"' not in "".join(sent)  # the same zone: kept
    sent.clear()
    bridge.update_inventory(dataclasses.replace(inventory, zone=ZoneInfo("Europe/London")))
    await bridge.fanout.flush()
    pushed = "".join(sent)
    assert f'id="headcount-{space.hex}"' in pushed and ">11:30:00<" in pushed


def test_the_inspectors_dates_are_the_buildings_days_too(auckland, people):
    building = auckland[Scope.BUILDING]
    RejectedPayload.objects.create(
        building_id=building, topic=f"buildings/{building}/fault_alarms/rejected",
        kind="rejected_fault_alarm", message="bad", received_at=AT,
    )  # fmt: skip
    client = logged_in(people.support)

    def listed(**params: str) -> int:
        html = client.get(f"/buildings/{building}/rejected/", params).content.decode()
        assert "Ignored" not in html
        return html.count('class="rejection-entry')

    assert listed(**{"from": "2026-03-04"}) == 1
    assert listed(to="2026-03-03") == 0
    assert listed(**{"from": "2026-03-04T00:29", "to": "2026-03-04T00:30"}) == 1
