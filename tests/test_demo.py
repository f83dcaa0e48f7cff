"""``make demo`` as a new user meets it: one command, a live building, Ctrl-C and nothing left."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from dashboard.demo.inventory import INVENTORY_FILE
from tests.served import ServedDashboard

pytestmark = pytest.mark.broker


WRITER = "-m dashboard.bridge.writer_process"


def command(pid: int) -> str:
    """The module a Python process runs, as it was started."""
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    return " ".join(a.decode() for a in argv[1:3])


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


def texts(page, selector: str) -> list[str]:
    return page.locator(selector).all_inner_texts()


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[ServedDashboard]:
    """``manage.py demo`` started; killed at the end if the test did not stop it."""
    served = ServedDashboard(tmp_path, mqtt_url="", LOG_LEVEL="INFO", DEMO_PASSWORD="")
    served.migrate()
    served.start("demo")
    yield served
    if served.process is not None and served.process.poll() is None:
        served.process.kill()
        served.process.wait()


def test_the_demo_shows_a_live_building_follows_a_dim_and_stops_cleanly(demo, chromium):
    password = demo.wait_for_output(r"^Log in as demo with password (\S+)$").group(1)
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
    controls = page.get_by_role("form", name="Action for Boardroom")
    controls.get_by_label("Action").select_option("dim")
    controls.get_by_label("Level").fill("40")
    controls.get_by_label("Transition time").fill("1")
    controls.get_by_role("button", name="Dim Boardroom to 40 %").click()
    # The emulator fans it out at once, so "sent" may already have become "seen".
    outcome = page.locator(".attempt .attempt-outcome").first
    expect(outcome).to_contain_text("seen: the cloud reported it back", timeout=10_000)
    for lamp in lamps:
        dim = page.locator(f"#meta-{lamp['id'].replace('-', '')}-dim .meta-value")
        expect(dim).to_have_text("40", timeout=10_000)
    expect(page.locator("#actions")).to_contain_text("Dim Boardroom to 40 %")
    # Their own reports confirm it: every lamp of the Boardroom followed.
    confirmed = page.locator(".attempt .confirmation-text").first
    expect(confirmed).to_have_text(f"confirmed: {len(lamps)} of {len(lamps)} lamps")
    card = page.locator(f"#headcount-{boardroom['id'].replace('-', '')}")
    expect(card.locator(".last-action")).to_contain_text("confirmed")
    page.close()

    pid = demo.process.pid
    # Broker, emulator and simulator run inside; only history is written by a child.
    assert [command(child) for child in children_of(pid)] == [WRITER]
    assert demo.stop() == 0
    assert not Path(f"/proc/{pid}").exists() or children_of(pid) == []
