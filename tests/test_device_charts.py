"""A device page in Chromium: its numeric meta as charts over 24 h, 7 d and 30 d from the
rollups, its on/off as a state timeline, its raw rows folded away; no console error."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Browser, expect

from tests import brokers
from tests.factories import PASSWORD
from tests.served import ServedDashboard

pytestmark = pytest.mark.broker


def month_of_history() -> None:
    """Headquarters' lamp: a month of temperatures, hourly, then each minute of the last
    three hours; switched on and off through the day. Run by the served dashboard's
    ``manage.py shell``."""
    from dashboard.live.state import MetaValue
    from dashboard.live.store import write_batch
    from dashboard.models import Device

    lamp = Device.objects.get(building__name="Headquarters", name="Lamp 1")
    now = datetime.now(UTC)
    times = [now - timedelta(hours=h) for h in range(30 * 24, 3, -1)]
    times += [now - timedelta(minutes=m) for m in range(180, -1, -1)]
    records = [MetaValue(lamp.id, "temperature", 20 + (n % 7) * 0.5, "", "C", "", at) for n, at in enumerate(times)]  # fmt: skip
    records += [MetaValue(lamp.id, "onoff", h % 3 != 0, "", "", "", now - timedelta(hours=h)) for h in range(20, -1, -1)]  # fmt: skip
    write_batch([(lamp.building_id, record) for record in records])


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, mosquitto: brokers.MosquittoBroker
) -> Iterator[tuple[ServedDashboard, dict[str, str]]]:
    dashboard = ServedDashboard(tmp_path_factory.mktemp("charts"), mosquitto.url)
    history = "from tests.test_device_charts import month_of_history; month_of_history()"
    with dashboard.serving(history) as hq:
        yield dashboard, hq


def test_a_devices_charts_and_state_timeline_draw_from_the_rollups(chromium: Browser, served):
    dashboard, hq = served
    complaints: list[str] = []
    page = chromium.new_page()
    page.on("console", lambda m: m.type in ("error", "warning") and complaints.append(m.text))
    page.on("pageerror", lambda error: complaints.append(f"error: {error}"))
    page.goto(f"{dashboard.url}/accounts/login/")
    page.get_by_label("Username").fill("victor")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Buildings")).to_be_visible()

    page.goto(f"{dashboard.url}/buildings/{hq['building']}/devices/{hq['device']}/")
    chart = page.locator("#chart-temperature")
    expect(chart.locator(".uplot canvas")).to_be_visible()  # uPlot drew the last 24 h
    data = json.loads(page.locator("#meta-charts").text_content() or "{}")
    temperature = data["charts"][0]
    assert len(temperature["hour"][0]) >= 30 * 24 - 1  # a month of hour rows
    assert len(temperature["minute"][0]) >= 180  # minute rows, for the last 24 h

    for label in ("7 d", "30 d", "24 h"):
        button = page.get_by_role("group", name="Range of Temperature").get_by_role(
            "button", name=label
        )
        button.click()
        expect(button).to_have_attribute("aria-pressed", "true")
        expect(chart.locator(".uplot")).to_have_count(1)  # redrawn, not stacked
        expect(chart.locator(".u-legend")).to_contain_text("mean (C)")

    timeline = page.locator("svg.timeline-bar")
    expect(timeline).to_have_count(1)
    assert timeline.locator("rect").count() >= 10  # on, off, on… through the day
    assert timeline.locator("rect.state-on").count() and timeline.locator("rect.state-off").count()

    raw = page.locator("details.raw-values")
    expect(raw.locator("table").first).to_be_hidden()  # folded until asked for
    raw.locator("summary").click()
    expect(raw.locator("table").first).to_be_visible()
    assert complaints == []
