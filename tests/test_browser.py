"""In headless Chromium, against ``serve`` with DEBUG off and a real Mosquitto: a facility
manager logs in, opens Headquarters, and watches the contract's example payloads arrive.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from dashboard.contract.topics import Kind, Scope, build_topic
from dashboard.demo.inventory import building_inventory
from dashboard.live import layer
from tests import brokers, seed
from tests.factories import PASSWORD, tower_inventory
from tests.served import ServedDashboard, until_shown

pytestmark = pytest.mark.broker

XSS = "<img src=x onerror=\"document.title='pwned'\">"


@pytest.fixture(scope="module")
def dashboard(
    tmp_path_factory: pytest.TempPathFactory, mosquitto: brokers.MosquittoBroker
) -> Iterator[tuple[ServedDashboard, dict[str, str]]]:
    served = ServedDashboard(
        tmp_path_factory.mktemp("served"), mosquitto.url, STALE_AFTER_SECONDS=3
    )
    with served.serving() as hq:
        yield served, hq


@pytest.fixture
def mqtt(mosquitto: brokers.MosquittoBroker) -> Iterator[Callable[[str, Any], None]]:
    with brokers.json_publisher(mosquitto) as send:
        yield send


def log_in(browser: Browser, base: str, username: str) -> Page:
    page = browser.new_page()
    page.on("dialog", lambda dialog: pytest.fail(f"a dialog opened: {dialog.message}"))
    page.goto(f"{base}/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Buildings")).to_be_visible()
    return page


def has_class(css_class: str) -> re.Pattern[str]:
    return re.compile(rf"(^|\s){re.escape(css_class)}(\s|$)")


def test_a_facility_manager_watches_every_example_payload_arrive_without_reload(
    chromium, dashboard, mqtt
):
    served, hq = dashboard
    page = log_in(chromium, served.url, "victor")
    frames: list[str | bytes] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda frame: frames.append(frame)))
    page.get_by_role("link", name="Headquarters").click()
    expect(page.get_by_role("heading", name="Headquarters", level=1)).to_be_visible()
    expect(page.locator("#page-status")).to_contain_text("connected")
    expect(page.locator("#bridge-status")).to_contain_text("connected")
    page.evaluate("window.notReloaded = true")

    device, space, area, building = (hq[s] for s in ("device", "space", "area", "building"))
    meta_topic = build_topic(Scope.DEVICE, device, Kind.META)
    temperature = page.locator(f"#meta-{device.replace('-', '')}-temperature .meta-value")
    until_shown(
        lambda: mqtt(meta_topic, seed.DEVICE_META),
        lambda: expect(temperature).to_have_text("87.40", timeout=1000),
    )
    expect(page.locator(f"#meta-{device.replace('-', '')}-als")).to_contain_text("87")

    for scope, entity, value in ((Scope.SPACE, space, 5), (Scope.AREA, area, 2)):
        for kind, name in ((Kind.HEAD_COUNT, "headcount"), (Kind.HEADCOUNT_IN, "headcount_in")):
            mqtt(build_topic(scope, entity, kind), seed.headcount(name, value))
        card = page.locator(f"#headcount-{entity.replace('-', '')}")
        expect(card.locator(".head-count")).to_have_text(str(value))
        expect(card.locator(".headcount-in")).to_have_text(str(value))
    mqtt(build_topic(Scope.SPACE, space, Kind.HEAD_COUNT), seed.headcount("headcount", 39))
    space_card = page.locator(f"#headcount-{space.replace('-', '')}")
    expect(space_card).to_contain_text("98 % of 40")
    expect(space_card).to_have_class(has_class("band-warn"))
    mqtt(build_topic(Scope.BUILDING, building, Kind.HEAD_COUNT), seed.headcount("headcount", 20))
    expect(page.locator(f"#headcount-{building.replace('-', '')} .head-count")).to_have_text("20")

    alarm = {**seed.DEVICE_FAULT_ALARM, "device": device, "level": "critical"}
    mqtt(build_topic(Scope.DEVICE, device, Kind.FAULT_ALARM), alarm)
    mqtt(build_topic(Scope.BUILDING, building, Kind.FAULT_ALARM), seed.BUILDING_FAULT_ALARM)
    alarms = page.locator("#alarms")
    expect(alarms.locator(".alarm")).to_have_count(2)
    expect(alarms.locator(".alarm.level-critical")).to_contain_text("high_temperature")
    expect(alarms.locator(".badge-alarm")).to_have_text("2 open")
    expect(alarms.locator(".badge-unacknowledged")).to_have_text("2 unacknowledged")
    # Larger frames come deflated (layer.pack) and are inflated by live.js before the swap.
    deflated = [layer.unpack(f) for f in frames if isinstance(f, bytes)]
    assert any("high_temperature" in html for html in deflated)

    space_action = {**seed.SPACE_ACTION, "target_id": space}
    mqtt(build_topic(Scope.SPACE, space, Kind.ACTION), space_action)
    expect(page.locator("#actions")).to_contain_text("Turn Off the Office")
    expect(page.locator("#actions")).to_contain_text("Open Office")

    assert page.evaluate("window.notReloaded") is True
    page.close()


def test_hostile_strings_from_the_broker_stay_text(chromium, dashboard, mqtt):
    served, hq = dashboard
    page = log_in(chromium, served.url, "sam")
    page.goto(f"{served.url}/buildings/{hq['building']}/")
    device = hq["device"]
    hostile = [{"name": "display_name", "value": XSS, "display_name": XSS}]
    label = page.locator(f"#meta-{device.replace('-', '')}-display_name .meta-value")
    until_shown(
        lambda: mqtt(build_topic(Scope.DEVICE, device, Kind.META), hostile),
        lambda: expect(label).to_have_text(XSS, timeout=1000),
    )
    rejected = {**seed.REJECTED, "error": {**seed.REJECTED["error"], "message": XSS}}
    mqtt(build_topic(Scope.DEVICE, device, Kind.REJECTED_META), rejected)
    expect(page.locator("#rejections .message").first).to_have_text(XSS)
    assert page.locator("main img").count() == 0
    assert page.title() != "pwned"
    page.close()


def test_the_overview_and_the_device_filter_follow_live(chromium, dashboard, mqtt):
    served, hq = dashboard
    page = log_in(chromium, served.url, "victor")
    building = hq["building"]
    row = page.locator(f"#summary-{building.replace('-', '')}")
    expect(row.locator(".bridge-state")).to_contain_text("connected")
    link = row.get_by_role("link").element_handle()
    until_shown(
        lambda: mqtt(
            build_topic(Scope.BUILDING, building, Kind.HEAD_COUNT),
            seed.headcount("headcount", 31),
        ),
        lambda: expect(row.locator(".head-count")).to_have_text("31", timeout=1000),
    )
    # Only the live cells were replaced: the link a person may be clicking is the same
    # element, so a click landing during an update still follows it.
    assert link.evaluate("a => a.isConnected")

    # An administrator renames the building: open overviews follow, and the link still works.
    def rename(name: str) -> None:
        served.manage(
            "shell",
            "-c",
            "from dashboard.models import Building; "
            f"b = Building.objects.get(pk='{building}'); b.name = {name!r}; b.save()",
        )

    rename("Head <Office>")
    try:
        expect(row.get_by_role("link")).to_have_text("Head <Office>", timeout=10_000)
        expect(row.locator(".head-count")).to_have_text("31")
        row.get_by_role("link").click()
        expect(page).to_have_url(f"{served.url}/buildings/{building}/")
    finally:
        rename("Headquarters")  # the other stories of this module know it so

    rows = page.locator(".device-table tbody tr")
    expect(rows).to_have_count(1)
    page.get_by_label("Search devices").fill("no such device")
    expect(rows.first).to_be_hidden()
    expect(page.locator("#device-count")).to_have_text("0 of 1 shown")
    assert "q=no+such+device" in page.url
    page.get_by_label("Search devices").fill("lamp")
    expect(rows.first).to_be_visible()
    page.close()


def test_a_value_that_stops_updating_is_marked_stale(chromium, dashboard, mqtt):
    served, hq = dashboard
    page = log_in(chromium, served.url, "victor")
    page.goto(f"{served.url}/buildings/{hq['building']}/")
    area = page.locator(f"#headcount-{hq['area'].replace('-', '')}")
    until_shown(
        lambda: mqtt(
            build_topic(Scope.AREA, hq["area"], Kind.HEAD_COUNT), seed.headcount("headcount", 4)
        ),
        lambda: expect(area.locator(".head-count")).to_have_text("4", timeout=1000),
    )
    expect(area).not_to_have_class(has_class("stale"))
    expect(area).to_have_class(has_class("stale"), timeout=12_000)  # STALE_AFTER_SECONDS=3
    mqtt(build_topic(Scope.AREA, hq["area"], Kind.HEAD_COUNT), seed.headcount("headcount", 5))
    expect(area).not_to_have_class(has_class("stale"))
    page.close()


def test_the_page_recovers_by_itself_when_the_server_restarts(chromium, dashboard, mqtt):
    served, hq = dashboard
    page = log_in(chromium, served.url, "victor")
    page.goto(f"{served.url}/buildings/{hq['building']}/")
    expect(page.locator("#page-status")).to_contain_text("connected")

    assert served.stop() == 0
    expect(page.locator("#page-status")).to_contain_text("reconnecting")
    served.start()
    expect(page.locator("#page-status")).to_contain_text("connected", timeout=10_000)

    space = hq["space"]
    card = page.locator(f"#headcount-{space.replace('-', '')} .head-count")
    until_shown(
        lambda: mqtt(
            build_topic(Scope.SPACE, space, Kind.HEAD_COUNT), seed.headcount("headcount", 12)
        ),
        lambda: expect(card).to_have_text("12", timeout=1000),
    )
    page.close()


def test_an_operator_clicks_dim_and_sees_it_sent_then_reflected_live(chromium, dashboard, mqtt):
    served, hq = dashboard
    page = log_in(chromium, served.url, "olivia")
    page.goto(f"{served.url}/buildings/{hq['building']}/")
    expect(page.locator("#bridge-status")).to_contain_text("connected")
    controls = page.get_by_role("form", name="Action for Open Office")
    expect(controls.get_by_label("Level")).to_be_hidden()  # only Dim has a level
    controls.get_by_label("Action").select_option("dim")
    controls.get_by_label("Level").fill("40")
    button = controls.get_by_role("button", name="Dim Open Office to 40 %")
    button.click()
    expect(page.locator(".attempt").first).to_contain_text(
        "Dim Open Office to 40 %: sent: the broker acknowledged it"
    )
    # The broker hands the action back on the space's action topic: the list shows it.
    expect(page.locator("#actions")).to_contain_text("Dim Open Office to 40 %")

    controls = page.get_by_role("form", name="Action for Open Office")
    controls.get_by_label("Action").select_option("dim")
    controls.get_by_label("Level").fill("101")
    # The browser itself holds back an out-of-range level (the server refuses it too).
    assert controls.get_by_label("Level").evaluate("el => el.validity.rangeOverflow")
    controls.get_by_role("button", name="Dim Open Office to 101 %").click()
    expect(page.locator(".attempt")).to_have_count(1)
    page.close()


def test_support_sees_a_refusal_and_an_urgent_alarm_arrive_live(chromium, dashboard, mqtt):
    served, hq = dashboard
    page = log_in(chromium, served.url, "sam")
    page.goto(f"{served.url}/buildings/{hq['building']}/rejected/")
    expect(page.locator("#page-status")).to_contain_text("connected")
    expect(page.locator("#bridge-status")).to_contain_text("connected")
    page.evaluate("window.notReloaded = true")

    refused = {**seed.REJECTED, "data": [{**seed.REJECTED["data"][0], "name": "Meta_Live"}]}
    refused["error"] = {
        **seed.REJECTED["error"],
        "message": seed.REJECTED["error"]["message"].replace("Meta_New", "Meta_Live"),
    }
    entry = page.locator("#rejected-live .rejection-entry").first
    until_shown(
        lambda: mqtt(build_topic(Scope.DEVICE, hq["device"], Kind.REJECTED_META), refused),
        lambda: expect(entry).to_contain_text("Meta_Live", timeout=1000),
    )
    expect(entry.locator("mark")).to_contain_text('"name": "Meta_Live"')
    expect(entry).to_contain_text("Lamp 1")

    urgent = {**seed.DEVICE_FAULT_ALARM, "device": hq["device"], "type": "lamp_failure"}
    mqtt(build_topic(Scope.DEVICE, hq["device"], Kind.FAULT_ALARM), urgent)
    banner = page.locator("#alarm-banner")
    expect(banner).to_contain_text("New fault alarm: INFO priority 255, lamp_failure on Lamp 1")
    banner.get_by_role("button", name="Dismiss").click()
    expect(banner).to_be_hidden()
    assert page.evaluate("window.notReloaded") is True

    # Stored and grouped: after a reload the same error is one group, with its device.
    page.reload()
    group = page.locator(".rejection-group", has_text="regex pattern not matching")
    expect(group.first).to_contain_text("Lamp 1")
    page.close()


def test_a_large_buildings_devices_come_a_page_at_a_time_and_the_rest_is_dropped_quietly(
    chromium, dashboard, mqtt
):
    served, _ = dashboard
    tower = building_inventory(120, seed=5, name="Tall Tower")
    building = tower["buildings"][0]["id"]
    served.manage(
        "shell",
        "-c",
        "from django.contrib.auth.models import User; "
        "from dashboard.live.inventory import apply_inventory; "
        "from dashboard.live.inventory_file import parse_inventory; "
        "from dashboard.models import Role; "
        f"apply_inventory(parse_inventory({json.dumps(json.dumps(tower))})); "
        "Role.objects.create(user=User.objects.get(username='victor'), "
        f"building_id='{building}', role=Role.VIEWER)",
    )
    devices = sorted(tower["buildings"][0]["devices"], key=lambda d: d["name"].casefold())
    first, last = devices[0], devices[-1]  # on the first page, and on the second

    page = log_in(chromium, served.url, "victor")
    errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.goto(f"{served.url}/buildings/{building}/")
    expect(page.locator(".device-table tbody tr")).to_have_count(100)
    expect(page.locator("#device-count")).to_have_text("1\u2013100 of 120 shown")

    def temperature(device: dict[str, str]) -> Any:
        return page.locator(f"#meta-{device['id'].replace('-', '')}-temperature .meta-value")

    def publish_both() -> None:
        for device in (last, first):  # the value for a device not on this page comes first
            mqtt(build_topic(Scope.DEVICE, device["id"], Kind.META), seed.DEVICE_META)

    until_shown(
        publish_both, lambda: expect(temperature(first)).to_have_text("87.40", timeout=1000)
    )
    page.wait_for_timeout(500)  # frames behind it
    assert errors == []  # htmx logs an error for each fragment without a target

    page.get_by_role("link", name="Next").click()
    expect(page.locator(".device-table tbody tr")).to_have_count(20)
    expect(temperature(last)).to_have_text("87.40")
    page.get_by_label("Search devices").fill(first["name"])
    page.get_by_label("Search devices").press("Enter")
    expect(page.locator(".device-table tbody tr")).to_have_count(1)
    expect(temperature(first)).to_have_text("87.40")
    assert "q=" in page.url and errors == []
    page.close()


def test_an_operator_finds_three_boardrooms_in_a_200_space_building_and_dims_them(
    chromium, dashboard, subscriber, mosquitto
):
    served, _ = dashboard
    tower = tower_inventory(floors=20)
    building = tower["buildings"][0]
    served.manage(
        "shell",
        "-c",
        "from django.contrib.auth.models import User; "
        "from dashboard.live.inventory import apply_inventory; "
        "from dashboard.live.inventory_file import parse_inventory; "
        "from dashboard.models import Role; "
        f"apply_inventory(parse_inventory({json.dumps(json.dumps(tower))})); "
        "Role.objects.create(user=User.objects.get(username='olivia'), "
        f"building_id='{building['id']}', role=Role.OPERATOR)",
    )
    assert len(building["spaces"]) == 200
    watcher = subscriber("spaces/+/actions", broker=mosquitto)
    page = log_in(chromium, served.url, "olivia")
    page.goto(f"{served.url}/buildings/{building['id']}/")
    expect(page.locator("#bridge-status")).to_contain_text("connected")
    picker = page.get_by_role("form", name="Action for the chosen spaces")
    expect(page.locator("form.action-form")).to_have_count(2)  # the picker's and all spaces'

    picker.get_by_label("Find spaces").press_sequentially("boardr")
    expect(picker.locator("#picker-found")).to_have_text("20 spaces match “boardr”")
    wanted = ("Level 2", "Level 5", "Level 11")
    for floor in wanted:
        picker.get_by_label(f"{floor} \u203a Boardroom", exact=True).check()
    # A new search keeps the chosen ones.
    picker.get_by_label("Find spaces").fill("kitchen")
    expect(picker.locator("#picker-found")).to_contain_text("match “kitchen”")
    expect(picker.locator(".picker-chosen")).to_contain_text("Chosen: 3 spaces")
    picker.get_by_label("Action").select_option("dim")
    picker.get_by_label("Level", exact=True).fill("40")
    picker.get_by_role("button", name="Dim the chosen spaces to 40 %").click()

    form = page.get_by_role("form", name="Action for 3 spaces")
    expect(form.locator(".confirm")).to_have_text("Dim 3 spaces (9 lamps) to 40 %?")
    assert watcher.messages == []
    form.get_by_role("button", name="Yes, send to 3 spaces").click()
    expect(form.locator(".attempt")).to_have_count(3)
    expect(form.locator(".attempt").first).to_contain_text("sent: the broker acknowledged it")
    page.wait_for_timeout(300)  # anything more would have arrived by now
    ids = {s["id"] for s in building["spaces"] if s["name"] == "Boardroom"}
    floors = {s["id"]: s["name"] for s in building["spaces"] if "parent" not in s}
    topics = sorted(m.topic for m in watcher.messages)
    assert len(topics) == 3
    chosen = [s for s in building["spaces"] if s["id"] in ids and floors[s["parent"]] in wanted]
    assert topics == sorted(f"spaces/{s['id']}/actions" for s in chosen)
    page.close()


def test_an_operator_sees_a_count_that_disagrees_and_resets_it(chromium, dashboard, mqtt):
    served, hq = dashboard
    page = log_in(chromium, served.url, "olivia")
    page.goto(f"{served.url}/buildings/{hq['building']}/")
    expect(page.locator("#bridge-status")).to_contain_text("connected")
    lobby = hq["area"]
    for kind, name, value in (
        (Kind.HEADCOUNT_IN, "headcount_in", 10),
        (Kind.HEADCOUNT_OUT, "headcount_out", 3),
        (Kind.HEAD_COUNT, "headcount", 12),
    ):
        mqtt(build_topic(Scope.AREA, lobby, kind), {"name": name, "value": value})
    card = page.locator(f"#headcount-{lobby.replace('-', '')}")
    expect(card.locator(".integrity-warning")).to_have_text(
        "Check the count: in \u2212 out = 7, count = 12"
    )

    reset = page.get_by_role("form", name="Reset the count of Lobby")
    reset.get_by_role("button", name="Reset count").click()
    reset = page.get_by_role("form", name="Reset the count of Lobby")
    expect(reset.locator(".confirm")).to_contain_text("Reset the count of Lobby to 0?")
    reset.get_by_role("button", name="Yes, reset the count").click()
    attempt = page.get_by_role("form", name="Reset the count of Lobby").locator(".attempt")
    expect(attempt).to_contain_text("Reset count of Lobby")
    # The broker hands the 0 back on the area's head_count topic: the card and the attempt.
    expect(card.locator(".head-count")).to_have_text("0")
    expect(attempt).to_contain_text("confirmed: 1 of 1 place")
    page.close()
