"""In headless Chromium, against ``serve`` in UTC and a real Mosquitto: Harbour Lodge is in
Auckland, its viewer sits in New York, and every time of the building reads Auckland's clock.
Its first floor holds two rooms, a sensor sits in both, and a value synced from the Gooee Cloud
shows marked until the broker sends a live one.
"""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, Page, expect

from dashboard.contract.topics import Kind, Scope, build_topic
from tests import brokers, seed
from tests.factories import PASSWORD
from tests.served import ServedDashboard, until_shown

pytestmark = pytest.mark.broker

ZONE = "Pacific/Auckland"
AUCKLAND = ZoneInfo(ZONE)


def half_past_eleven_utc(now: datetime) -> datetime:
    """The latest 11:30 UTC at least a minute ago: within today's chart and the last day."""
    moment = datetime.combine(now.date(), time(11, 30), UTC)
    return moment if moment <= now - timedelta(minutes=1) else moment - timedelta(days=1)


def lodge(at: str) -> dict[str, str]:
    """Harbour Lodge (Auckland): Floor 1 holding Room A and Room B, a Lobby beside it, a lamp
    in each room, a sensor in both, and one of everything received at ``at``. Run by the
    served dashboard's ``manage.py shell``, in its database."""
    from django.contrib.auth.models import User

    from dashboard import models
    from dashboard.live.state import HeadcountValue
    from dashboard.live.store import write_batch

    when = datetime.fromisoformat(at)
    building = models.Building.objects.create(name="Harbour Lodge", timezone=ZONE)
    floor = models.Space.objects.create(building=building, name="Floor 1")
    room_a = models.Space.objects.create(building=building, name="Room A", parent=floor)
    room_b = models.Space.objects.create(building=building, name="Room B", parent=floor)
    lobby = models.Space.objects.create(building=building, name="Lobby")
    lamp_a = models.Device.objects.create(building=building, space=room_a, name="Lamp A")
    lamp_b = models.Device.objects.create(building=building, space=room_b, name="Lamp B")
    sensor = models.Device.objects.create(building=building, space=room_a, name="Sensor AB")
    desk = models.Device.objects.create(building=building, space=lobby, name="Desk Lamp")
    for device, spaces in ((lamp_a, [room_a]), (lamp_b, [room_b]), (sensor, [room_a, room_b])):
        device.spaces.set(spaces)
    desk.spaces.set([lobby])
    for username, role in (("victor", models.Role.VIEWER), ("sam", models.Role.SUPPORT)):
        models.Role.objects.create(user=User.objects.get(username=username), building=building, role=role)  # fmt: skip
    # Synced from the Gooee Cloud: shown before any MQTT message, marked.
    models.LatestMeta.objects.create(
        device=lamp_a, name="temperature", value=21.5, display_name="Temperature", unit="C",
        source_timestamp=at, received_at=when, synced=True,
    )  # fmt: skip
    models.MetaSample.objects.create(device=lamp_a, name="temperature", value=21.5, received_at=when)  # fmt: skip
    models.FaultAlarm.objects.create(
        building=building, device=lamp_a, type="high_temperature", level="critical", priority=1,
        payload={}, first_seen=when, last_seen=when,
    )  # fmt: skip
    models.ActionAttempt.objects.create(
        building=building, username="olivia", target_type="device", target_id=lamp_a.id,
        target_name="Lamp A", outcome=models.ActionAttempt.ACKNOWLEDGED, created_at=when,
    )  # fmt: skip
    models.RejectedPayload.objects.create(
        building=building, device=lamp_a, topic=f"devices/{lamp_a.id}/meta/rejected",
        kind="rejected_meta", message="Meta_New is not a valid name", received_at=when,
    )  # fmt: skip
    midnight = datetime.combine(datetime.now(AUCKLAND).date(), time.min, AUCKLAND)
    # Through the history writer's store, which rolls them up for the chart.
    write_batch([
        (building.id, HeadcountValue("building", building.id, "head_count", value, midnight + offset))
        for offset, value in ((-timedelta(minutes=5), 99), (timedelta(minutes=5), 7))
    ])  # fmt: skip
    ids = {"building": building, "floor": floor, "room_a": room_a, "room_b": room_b}
    ids |= {"lobby": lobby, "lamp_a": lamp_a, "lamp_b": lamp_b, "sensor": sensor, "desk": desk}
    return {name: str(entity.id) for name, entity in ids.items()}


@pytest.fixture(scope="module")
def served_lodge(
    tmp_path_factory: pytest.TempPathFactory, mosquitto: brokers.MosquittoBroker
) -> Iterator[tuple[ServedDashboard, dict[str, str], datetime]]:
    served = ServedDashboard(tmp_path_factory.mktemp("lodge"), mosquitto.url, TIME_ZONE="UTC")
    served.prepare()
    at = half_past_eleven_utc(datetime.now(UTC))
    script = (
        "import json; from tests.test_building_clock import lodge; "
        f"print(json.dumps(lodge({at.isoformat()!r})))"
    )
    ids = json.loads(served.manage("shell", "-c", script).strip().splitlines()[-1])
    served.start()
    yield served, ids, at
    assert served.stop() == 0


@pytest.fixture
def mqtt(mosquitto: brokers.MosquittoBroker) -> Iterator[Callable[[str, Any], None]]:
    with brokers.json_publisher(mosquitto) as send:
        yield send


def in_new_york(browser: Browser, base: str, username: str) -> Page:
    """A viewer whose own clock is New York's, logged in."""
    page = browser.new_page(timezone_id="America/New_York")
    page.goto(f"{base}/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Buildings")).to_be_visible()
    return page


def dom(entity: str) -> str:
    return uuid.UUID(entity).hex


def test_every_time_of_the_building_is_on_its_clock_wherever_the_viewer_is(chromium, served_lodge):
    served, ids, at = served_lodge
    local = at.astimezone(AUCKLAND)
    clock, stamp = local.strftime("%H:%M:%S"), local.strftime("%Y-%m-%d %H:%M:%S")
    assert clock in ("00:30:00", "23:30:00")  # NZDT or NZST
    base = f"{served.url}/buildings/{ids['building']}"
    page = in_new_york(chromium, served.url, "sam")

    page.goto(f"{base}/")
    expect(page.locator(".zone-note")).to_have_text(f"Times in {ZONE}")
    tile = page.locator(f"#meta-{dom(ids['lamp_a'])}-temperature")
    # live.js shows an age ("3 h ago") and keeps the time as the element's title.
    expect(tile.locator("time")).to_have_attribute("title", clock)
    # Today's chart: from the building's midnight, drawn on its clock in a New York browser.
    trend = json.loads(page.locator("#trend-data").text_content() or "{}")
    midnight = datetime.combine(datetime.now(AUCKLAND).date(), time.min, AUCKLAND)
    assert trend["zone"] == ZONE and trend["since"] == int(midnight.timestamp())
    assert trend["data"][0] and min(trend["data"][0]) >= trend["since"]
    assert 99 not in trend["data"][1]  # five minutes before the building's midnight
    expect(page.locator("#trend-since")).to_have_text(re.compile(r"^00:00, "))

    page.goto(f"{base}/devices/{ids['lamp_a']}/")
    expect(page.locator(".zone-note")).to_have_text(f"Times in {ZONE}")
    meta_time = page.locator(f"#meta-{dom(ids['lamp_a'])}-temperature time")
    expect(meta_time).to_have_attribute("title", clock)
    expect(page.locator("table time").first).to_have_text(stamp)

    page.goto(f"{base}/alarms/")
    expect(page.locator(".zone-note")).to_have_text(f"Times in {ZONE}")
    expect(page.locator("table time").first).to_have_text(stamp)

    page.goto(f"{base}/activity/")
    expect(page.locator(".zone-note")).to_have_text(f"Times in {ZONE}")
    expect(page.locator("table time").first).to_have_text(re.compile(rf"^{stamp} NZ[DS]T$"))

    page.goto(f"{base}/rejected/")
    expect(page.locator(".zone-note")).to_have_text(f"Times in {ZONE}")
    expect(page.locator(".rejection-entry time").first).to_have_text(
        re.compile(rf"^{stamp} NZ[DS]T$")
    )

    for export, column in (("activity.csv", "created_at"), ("rejected/export.csv", "received_at")):
        response = page.request.get(f"{base}/{export}")
        assert response.ok
        rows = list(csv.DictReader(io.StringIO(response.text())))
        assert rows[0][column] == local.isoformat()  # e.g. 2026-12-04T00:30:00+13:00
        assert rows[0]["time_zone"] == ZONE
    page.close()


def test_a_floor_shows_its_rooms_beneath_it_and_filters_with_them(chromium, served_lodge):
    served, ids, _ = served_lodge
    page = in_new_york(chromium, served.url, "victor")
    page.goto(f"{served.url}/buildings/{ids['building']}/")
    expect(page.locator("#page-status")).to_contain_text("connected")
    for room in ("room_a", "room_b"):
        card = page.locator(f"#headcount-{dom(ids[room])}")
        expect(card.locator("xpath=ancestor::*[@aria-label='Inside Floor 1']")).to_have_count(1)
    # The bridge's snapshot may still be replacing the cards, so the floor and its rooms are
    # measured together in the page, until they hold or the wait times out.
    page.wait_for_function(
        """([floor, rooms]) => {
            const box = (id) => document.getElementById(id)?.getBoundingClientRect();
            const f = box(floor);
            return !!f && f.height > 0 && rooms.every((id) => {
                const r = box(id);
                return !!r && r.height > 0 && r.y > f.y + f.height / 2 && r.x > f.x;
            });
        }""",
        arg=[
            f"headcount-{dom(ids['floor'])}",
            [f"headcount-{dom(ids[room])}" for room in ("room_a", "room_b")],
        ],
        timeout=5000,
    )  # each room beneath its floor and indented

    def shown() -> list[str]:
        return page.locator(".device-table tbody tr:not([hidden]) th").all_inner_texts()

    sensor = page.locator(".device-table tr", has_text="Sensor AB")
    expect(sensor.locator(".device-space")).to_have_text(["Room A", "Room B"])
    space = page.get_by_label("Space", exact=True)
    space.select_option(label="\u2003Room B")
    expect(page.locator("#device-count")).to_have_text("2 of 4 shown")
    assert shown() == ["Lamp B", "Sensor AB"]
    space.select_option(label="\u2003Room A")
    expect(page.locator("#device-count")).to_have_text("2 of 4 shown")
    assert shown() == ["Lamp A", "Sensor AB"]
    space.select_option(label="Floor 1")
    expect(page.locator("#device-count")).to_have_text("3 of 4 shown")
    assert shown() == ["Lamp A", "Lamp B", "Sensor AB"]
    # The same filter from the address, as the server applies it.
    page.goto(f"{served.url}/buildings/{ids['building']}/?space={dom(ids['floor'])}")
    expect(page.locator("#device-count")).to_have_text("3 of 4 shown")
    assert shown() == ["Lamp A", "Lamp B", "Sensor AB"]
    page.close()


def test_a_synced_value_shows_marked_until_a_live_one_replaces_it(chromium, served_lodge, mqtt):
    served, ids, _ = served_lodge
    page = in_new_york(chromium, served.url, "victor")
    page.goto(f"{served.url}/buildings/{ids['building']}/")
    expect(page.locator("#page-status")).to_contain_text("connected")
    tile = page.locator(f"#meta-{dom(ids['lamp_a'])}-temperature")
    expect(tile.locator(".meta-value")).to_have_text("21.50")
    expect(tile.locator(".synced")).to_have_text("from the cloud")
    until_shown(
        lambda: mqtt(build_topic(Scope.DEVICE, ids["lamp_a"], Kind.META), seed.DEVICE_META),
        lambda: expect(tile.locator(".meta-value")).to_have_text("87.40", timeout=1000),
    )
    expect(tile.locator(".synced")).to_have_count(0)
    # The live value's time, pushed by the bridge, is on the building's clock too.
    now = datetime.now(AUCKLAND)
    shown = datetime.combine(
        now.date(), time.fromisoformat(tile.locator("time").get_attribute("title") or "")
    )
    apart = abs((now.replace(tzinfo=None) - shown).total_seconds()) % 86400
    assert min(apart, 86400 - apart) < 120  # its clock, not UTC's nor New York's
    # Stored live: a reload shows it unmarked.
    page.reload()
    expect(tile.locator(".meta-value")).to_have_text("87.40")
    expect(tile.locator(".synced")).to_have_count(0)
    page.close()
