"""Pages as people of the building see them: rendered with the current state already in."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client

from dashboard import page_data
from dashboard.contract.topics import Scope
from dashboard.live.state import Alarm, HeadcountValue, MetaValue, Rejection
from dashboard.live.store import write_batch
from dashboard.models import Area, Device, Space
from tests import seed

pytestmark = pytest.mark.django_db

XSS = "<img src=x onerror=alert(1)>"


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def lived_in(hq):
    """Headquarters after a morning of traffic, as the bridge wrote it."""
    now = datetime.now(UTC)
    building, space, device = hq[Scope.BUILDING], hq[Scope.SPACE], hq[Scope.DEVICE]
    write_batch(
        [
            (building, HeadcountValue("building", building, "head_count", 23, now)),
            (building, HeadcountValue("space", space, "head_count", 38, now)),
            (building, HeadcountValue("space", space, "headcount_in", 50, now)),
            (building, HeadcountValue("space", space, "headcount_out", 12, now)),
            (building, MetaValue(device, "temperature", 21.5, "Temperature", "C", "", now)),
            (building, MetaValue(device, "display_name", XSS, "Display Name", "", "", now)),
            (
                building,
                Alarm(
                    device,
                    "high_temperature",
                    "critical",
                    255,
                    "Too hot",
                    "",
                    seed.DEVICE_FAULT_ALARM,
                    3,
                    now - timedelta(minutes=5),
                    now,
                ),
            ),
            (
                building,
                Rejection(
                    f"devices/{device}/meta/rejected",
                    "rejected_meta",
                    device,
                    seed.REJECTED["error"]["message"],
                    seed.REJECTED["error"]["context"],
                    seed.REJECTED["data"],
                    now,
                ),
            ),
        ]
    )
    return hq


def test_every_page_needs_a_login(client, hq):
    building, device = hq[Scope.BUILDING], hq[Scope.DEVICE]
    for url in ("/", f"/buildings/{building}/", f"/buildings/{building}/devices/{device}/"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")


def test_the_overview_lists_my_buildings_with_headcount_and_open_alarms(lived_in, people):
    page = logged_in(people.viewer).get("/").content.decode()
    row = re.search(r'<tr id="summary-[0-9a-f]{32}".*?</tr>', page, re.S).group(0)
    assert "Headquarters" in row
    cells = {
        c: re.search(rf'<td id="summary-[0-9a-f]{{32}}-{c}"[^>]*>(.*?)</td>', row).group(1)
        for c in ("people", "alarms")
    }
    assert cells["people"] == "23"
    assert cells["alarms"] == '1 <span class="badge badge-unacknowledged">1 unacknowledged</span>'
    assert 'class="open-alarms has-alarms"' in row
    assert "Elsewhere" not in page
    assert 'ws-connect="/ws/overview/"' in page


def test_the_building_page_arrives_with_the_current_state_in_it(lived_in, people):
    building, space = lived_in[Scope.BUILDING], lived_in[Scope.SPACE]
    page = logged_in(people.viewer).get(f"/buildings/{building}/").content.decode()
    assert f'ws-connect="/ws/buildings/{building}/"' in page
    card = re.search(rf'<section id="headcount-{space.hex}".*?</section>', page, re.S).group(0)
    assert '<span class="head-count">38</span>' in card
    assert "95 % of 40" in card and "band-warn" in card  # nearly full
    assert '<span class="headcount-in">50</span>' in card
    assert "21.5" in page and "Temperature" in page
    assert "CRITICAL" in page and "high_temperature" in page and "\u00d73" in page
    assert "waiting for the bridge" in page  # until the socket's first snapshot
    assert 'id="rejections"' not in page  # support only


def test_support_staff_also_see_rejected_payloads(lived_in, people):
    page = logged_in(people.support).get(f"/buildings/{lived_in[Scope.BUILDING]}/")
    html = page.content.decode()
    assert 'id="rejections"' in html and "Position: [0]/name" in html
    assert 'id="malformed"' in html


def test_values_from_mqtt_are_shown_as_text_never_as_markup(lived_in, people):
    client = logged_in(people.viewer)
    building, device = lived_in[Scope.BUILDING], lived_in[Scope.DEVICE]
    for url in (f"/buildings/{building}/", f"/buildings/{building}/devices/{device}/"):
        html = client.get(url).content.decode()
        assert XSS not in html
        assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_an_outsider_is_refused_and_an_unknown_building_is_not_found(lived_in, people):
    client = logged_in(people.outsider)
    assert client.get(f"/buildings/{lived_in[Scope.BUILDING]}/").status_code == 403
    unknown = "00000000-0000-4000-8000-000000000000"
    assert logged_in(people.viewer).get(f"/buildings/{unknown}/").status_code == 404


def test_the_device_filter_works_without_javascript_too(lived_in, people):
    building = lived_in[Scope.BUILDING]
    Device.objects.create(building_id=building, name="Door sensor")
    client = logged_in(people.viewer)
    html = client.get(f"/buildings/{building}/", {"q": "lamp"}).content.decode()
    rows = dict(re.findall(r'<tr data-spaces="[0-9a-f ]*" data-name="([^"]+)"( hidden)?>', html))
    assert rows == {"lamp 1": "", "door sensor": " hidden"}
    html = client.get(f"/buildings/{building}/", {"space": lived_in[Scope.SPACE].hex}).content
    rows = dict(
        re.findall(r'<tr data-spaces="[0-9a-f ]*" data-name="([^"]+)"( hidden)?>', html.decode())
    )
    assert rows == {"lamp 1": "", "door sensor": " hidden"}


def test_a_large_buildings_devices_come_a_page_at_a_time_filtered_by_the_server(
    lived_in, people, monkeypatch
):
    monkeypatch.setattr(page_data, "DEVICES_PER_PAGE", 2)
    building, space = lived_in[Scope.BUILDING], lived_in[Scope.SPACE]
    for name in ("Window sensor", "boiler", "Door sensor"):
        Device.objects.create(building_id=building, name=name, space_id=space)
    client = logged_in(people.viewer)
    url = f"/buildings/{building}/"
    lamp_value = f'id="meta-{lived_in[Scope.DEVICE].hex}-temperature"'

    def rows(html: str) -> list[str]:
        return re.findall(r'<tr data-spaces="[0-9a-f ]*" data-name="([^"]+)">', html)

    first = client.get(url).content.decode()
    assert rows(first) == ["boiler", "door sensor"]  # by name, none hidden
    assert "data-paged" in first and "1\u20132 of 4 shown" in first
    assert 'href="?page=2" rel="next">Next</a>' in first
    assert lamp_value not in first  # only the page's devices' values are rendered
    second = client.get(url, {"page": "2"}).content.decode()
    assert rows(second) == ["lamp 1", "window sensor"]
    assert lamp_value in second and "3\u20134 of 4 shown" in second

    sensors = client.get(url, {"q": "sensor", "space": space.hex}).content.decode()
    assert rows(sensors) == ["door sensor", "window sensor"]
    assert "Page 1 of" not in sensors  # one page: no pager
    narrow = client.get(url, {"space": space.hex, "q": "o"}).content.decode()
    assert f'href="?space={space.hex}&amp;q=o&amp;page=2" rel="next"' in narrow
    none = client.get(url, {"q": "no such device"}).content.decode()
    assert rows(none) == [] and "No device matches these filters." in none


def test_a_large_buildings_spaces_and_areas_come_a_page_at_a_time_with_their_controls(
    lived_in, people, monkeypatch
):
    monkeypatch.setattr(page_data, "CARDS_PER_PAGE", 1)
    building = lived_in[Scope.BUILDING]
    annex = Space.objects.create(building_id=building, name="Annex", capacity=10)
    desk = Area.objects.create(building_id=building, space=annex, name="Annex desk", capacity=2)
    client = logged_in(people.operator)
    url = f"/buildings/{building}/"

    def cards(html: str) -> list[str]:
        return re.findall(r'<section id="headcount-([0-9a-f]{32})"', html)

    def controls(html: str) -> list[str]:
        return re.findall(r'aria-label="Action for ([^"]+)"', html)

    first = client.get(url).content.decode()
    hq_space, hq_area = lived_in[Scope.SPACE].hex, lived_in[Scope.AREA].hex
    assert cards(first) == [building.hex, annex.id.hex, desk.id.hex]  # by name
    assert controls(first) == ["Annex", "all spaces"]  # the spaces shown, and all of them
    assert 'aria-label="Pages of spaces"' in first and 'aria-label="Pages of areas"' in first
    second = client.get(url, {"spaces_page": "2", "areas_page": "2"}).content.decode()
    assert cards(second) == [building.hex, hq_space, hq_area]
    assert controls(second) == ["Open Office", "all spaces"]
    # Each pager keeps where the other lists are, and the filters.
    assert 'href="?areas_page=2&amp;spaces_page=1" rel="prev"' in second
    assert 'href="?spaces_page=2&amp;areas_page=1" rel="prev"' in second


def test_the_chart_draws_each_space_of_a_small_building_and_the_building_alone_of_a_large_one(
    lived_in, people
):
    building = lived_in[Scope.BUILDING]
    client = logged_in(people.viewer)

    def series() -> list[str]:
        html = client.get(f"/buildings/{building}/").content.decode()
        data = re.search(r'<script id="trend-data" type="application/json">(.*?)</script>', html)
        return [s["name"] for s in json.loads(data.group(1))["series"]]

    assert series() == ["Headquarters", "Open Office"]
    for n in range(page_data.TREND_SPACES):
        Space.objects.create(building_id=building, name=f"Room {n}", capacity=4)
    assert series() == ["Headquarters"]


def test_the_device_page_shows_every_value_and_its_recent_history(lived_in, people):
    building, device = lived_in[Scope.BUILDING], lived_in[Scope.DEVICE]
    now = datetime.now(UTC)
    write_batch(
        [
            (building, MetaValue(device, "temperature", 20 + n, "Temperature", "C", "", at))
            for n, at in enumerate(now - timedelta(minutes=m) for m in (3, 2, 1))
        ]
    )
    html = logged_in(people.viewer).get(f"/buildings/{building}/devices/{device}/").content
    html = html.decode()
    assert "<h1>Lamp 1</h1>" in html
    history = re.search(r"<h3>Temperature.*?</table>", html, re.S).group(0)
    # Newest first, at the cloud's precision for temperature.
    assert re.findall(r"<td>([0-9.]+)</td>", history) == ["21.50", "22.00", "21.00", "20.00"]


def test_pages_have_landmarks_headings_and_labelled_fields(lived_in, people):
    html = logged_in(people.support).get(f"/buildings/{lived_in[Scope.BUILDING]}/").content
    html = html.decode()
    for landmark in ("<header", "<main", "<nav", "<footer", "<h1>"):
        assert landmark in html
    for field_id in re.findall(r'<(?:input|select)[^>]* id="([^"]+)"', html):
        assert f'<label for="{field_id}">' in html
    for button in re.findall(r"<button[^>]*>(.*?)</button>", html, re.S):
        assert button.strip()
