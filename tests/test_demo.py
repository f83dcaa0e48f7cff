"""``make demo`` as a new user meets it: one command, a live building, Ctrl-C and nothing left."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from playwright.sync_api import expect

from dashboard.bridge.broker_url import parse_broker_url
from dashboard.demo.inventory import INVENTORY_FILE
from tests.served import ServedDashboard

pytestmark = pytest.mark.broker


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended meanwhile
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def publish_once(url: str, topic: str, payload: str) -> None:
    """What the dashboard's action form will do: one QoS 1 publish on the demo's broker."""
    broker = parse_broker_url(url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def texts(page, selector: str) -> list[str]:
    return page.locator(selector).all_inner_texts()


def test_the_demo_shows_a_live_building_follows_a_dim_and_stops_cleanly(tmp_path, chromium):
    demo = ServedDashboard(tmp_path, mqtt_url="", LOG_LEVEL="INFO", DEMO_PASSWORD="")
    demo.migrate()
    demo.start("demo")
    password = demo.wait_for_output(r"^Log in as demo with password (\S+)$").group(1)
    broker_url = demo.wait_for_output(r"embedded MQTT broker listening on (mqtt://\S+)").group(1)
    building = json.loads(INVENTORY_FILE.read_text())["buildings"][0]

    page = chromium.new_page()
    page.goto(demo.url)
    page.get_by_label("Username").fill("demo")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name=building["name"]).click()
    expect(page.locator("#bridge-status")).to_contain_text("connected")

    # Headcounts and device values move within 10 s.
    headcounts, values = texts(page, ".headcount .in-out"), texts(page, ".device-meta")
    deadline = time.monotonic() + 10
    while texts(page, ".headcount .in-out") == headcounts or texts(page, ".device-meta") == values:
        assert time.monotonic() < deadline, "the simulated building did not move in 10 s"
        page.wait_for_timeout(250)

    # An operator dims the Boardroom to 40 %: its lamps follow.
    boardroom = next(s for s in building["spaces"] if s["name"] == "Boardroom")
    lamps = [
        d
        for d in building["devices"]
        if d["space"] == boardroom["id"] and "sensor" not in d["name"]
    ]
    action = {
        "name": "Dim the Boardroom",
        "type": "dim",
        "target_type": "space",
        "target_id": boardroom["id"],
        "value": {"level": 40, "transition_time": 1},
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    publish_once(broker_url, f"spaces/{boardroom['id']}/actions", json.dumps(action))
    for lamp in lamps:
        dim = page.locator(f"#meta-{lamp['id'].replace('-', '')}-dim .meta-value")
        expect(dim).to_have_text("40", timeout=10_000)
    expect(page.locator("#actions")).to_contain_text("Dim the Boardroom")
    page.close()

    pid = demo.process.pid
    assert children_of(pid) == []  # one process: broker, emulator and simulator run inside
    assert demo.stop() == 0
    assert not Path(f"/proc/{pid}").exists() or children_of(pid) == []
