"""Alarms and refusals as open pages see them: badges, banners, and what people did."""

from __future__ import annotations

import asyncio

import pytest

from dashboard.contract.topics import Kind, Scope, build_topic
from dashboard.live import layer, tiles
from tests import seed
from tests.bridging import Browser, send, subscribed, until

pytestmark = [pytest.mark.broker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
async def bridged(hq, running_bridge):
    bridge = await running_bridge(notify_priority=200)
    await subscribed(bridge, hq[Scope.BUILDING])
    return bridge.buildings[hq[Scope.BUILDING]]


def alarm(hq, **fields):
    return {**seed.DEVICE_FAULT_ALARM, "device": str(hq[Scope.DEVICE]), **fields}


async def test_a_new_urgent_alarm_raises_a_banner_once_and_badges_count_it(hq, bridged, publish):
    page = await Browser(hq[Scope.BUILDING]).join()
    overview = await Browser(hq[Scope.BUILDING]).join(tiles.SUMMARY)
    topic = build_topic(Scope.DEVICE, hq[Scope.DEVICE], Kind.FAULT_ALARM)

    await send(publish, topic, alarm(hq, priority=250, level="critical"))
    banner = await page.wait_for('id="alarm-banner"')
    assert "New fault alarm:" in banner and "high_temperature" in banner and "Lamp 1" in banner
    assert "severity-high" in banner
    await page.wait_for("1 unacknowledged")
    await overview.wait_for("1 unacknowledged")

    page.received.clear()
    await send(publish, topic, alarm(hq, priority=250, timestamp="2020-02-17T15:48:00Z"))
    await page.wait_for("\u00d72")
    assert not any('id="alarm-banner"' in html for html in page.received)  # a repeat, no banner

    await send(publish, topic, alarm(hq, type="low_battery", priority=10))
    await page.wait_for("low_battery")
    assert not any('id="alarm-banner"' in html for html in page.received)  # below the priority


async def test_acknowledged_and_cleared_on_a_page_the_live_alarms_follow(hq, bridged, publish):
    page = await Browser(hq[Scope.BUILDING]).join()
    topic = build_topic(Scope.DEVICE, hq[Scope.DEVICE], Kind.FAULT_ALARM)
    await send(publish, topic, alarm(hq))
    await until(lambda: bridged.state.alarms, what="the alarm")
    key = (hq[Scope.DEVICE], "high_temperature")

    change = {"device": str(hq[Scope.DEVICE]), "type": "high_temperature"}
    await layer.alarms_changed(hq[Scope.BUILDING], [{**change, "state": "acknowledged"}])
    await until(lambda: bridged.state.alarms[key].state == "acknowledged", what="acknowledged")
    await page.wait_for('<span class="state">acknowledged</span>')

    await layer.alarms_changed(hq[Scope.BUILDING], [{**change, "state": "cleared"}])
    await until(lambda: key not in bridged.state.alarms, what="cleared")
    await page.wait_for("No open alarms.")

    # The next occurrence is a new alarm, counted from one.
    await send(publish, topic, alarm(hq, timestamp="2020-02-17T16:00:00Z"))
    await until(lambda: key in bridged.state.alarms, what="a new occurrence")
    assert bridged.state.alarms[key].count == 1


async def test_open_inspectors_get_each_new_refusal_at_the_top(hq, bridged, publish):
    support = await Browser(hq[Scope.BUILDING]).join(tiles.SUPPORT)
    everyone = await Browser(hq[Scope.BUILDING]).join()
    topic = build_topic(Scope.DEVICE, hq[Scope.DEVICE], Kind.REJECTED_META)
    await send(publish, topic, seed.REJECTED)
    pushed = await support.wait_for('hx-swap-oob="afterbegin:#rejected-live"')
    assert "Meta_New" in pushed and "Lamp 1" in pushed
    await asyncio.sleep(0.3)  # a few fan-out windows
    assert not any("rejected-live" in html for html in everyone.received)
