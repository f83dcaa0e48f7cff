"""``manage.py serve`` on the Redis channel layer: web and bridge in one process still push
every value to the pages, not only the first snapshot.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
import redis
from playwright.sync_api import Browser, Page, expect

from dashboard.contract.topics import Kind, Scope, build_topic
from tests import brokers, seed
from tests.factories import PASSWORD
from tests.served import ServedDashboard, until_shown

pytestmark = pytest.mark.broker

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


@pytest.fixture
def redis_url() -> Iterator[str]:
    store = redis.Redis.from_url(REDIS_URL)
    try:
        store.ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis is needed (see README): {exc}")
    store.flushdb()
    yield REDIS_URL
    store.flushdb()


def building_page(chromium: Browser, served: ServedDashboard, building: str) -> Page:
    """A viewer's building page, its live connection open."""
    page = chromium.new_page()
    page.goto(f"{served.url}/accounts/login/")
    page.get_by_label("Username").fill("victor")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.goto(f"{served.url}/buildings/{building}/")
    expect(page.locator("#page-status")).to_contain_text("connected")
    return page


def test_serve_on_redis_pushes_values_after_the_first_snapshot(
    tmp_path, mosquitto, chromium, redis_url
):
    served = ServedDashboard(tmp_path, mosquitto.url, REDIS_URL=redis_url)
    hq = served.prepare()
    served.start()
    try:
        page = building_page(chromium, served, hq["building"])

        device, space = hq["device"], hq["space"]
        with brokers.json_publisher(mosquitto) as mqtt:
            temperature = page.locator(f"#meta-{device.replace('-', '')}-temperature .meta-value")
            until_shown(
                lambda: mqtt(build_topic(Scope.DEVICE, device, Kind.META), seed.DEVICE_META),
                lambda: expect(temperature).to_have_text("87.40", timeout=1000),
            )
            # And the next value too: the page keeps receiving, not only once.
            card = page.locator(f"#headcount-{space.replace('-', '')} .head-count")
            until_shown(
                lambda: mqtt(
                    build_topic(Scope.SPACE, space, Kind.HEAD_COUNT),
                    seed.headcount("headcount", 7),
                ),
                lambda: expect(card).to_have_text("7", timeout=1000),
            )
        page.close()
    finally:
        assert served.stop() == 0
    logged = "".join(served.output)
    assert "Traceback" not in logged, logged[-3000:]


def test_a_page_open_on_a_quiet_building_leaves_the_process_ready(
    tmp_path, mosquitto, chromium, redis_url
):
    """The operations team's /readyz stays 200 while a page waits for values that do not come:
    its round trip through Redis must not queue behind the page's own receive."""
    served = ServedDashboard(tmp_path, mosquitto.url, REDIS_URL=redis_url)
    hq = served.prepare()
    served.start()
    try:
        page = building_page(chromium, served, hq["building"])
        # Longer than the layer's blocking read (5 s) and several times its check's timeout.
        answers = []
        for _ in range(6):
            try:
                with urllib.request.urlopen(f"{served.url}/readyz", timeout=10) as response:
                    answers.append((response.status, json.loads(response.read())))
            except urllib.error.HTTPError as exc:
                answers.append((exc.code, json.loads(exc.read())))
            time.sleep(1)
        assert [status for status, _ in answers] == [200] * 6, answers
        page.close()
    finally:
        assert served.stop() == 0
