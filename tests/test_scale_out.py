"""Past one process: two web processes and two bridge workers on Redis, PostgreSQL and
Mosquitto, with a browser; a worker killed with SIGKILL hands its building over.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import psycopg
import pytest
import redis
from playwright.sync_api import expect

from dashboard.contract.topics import Kind, Scope, build_topic
from tests import brokers, seed
from tests.factories import PASSWORD
from tests.served import ServedDashboard, until_shown

pytestmark = pytest.mark.broker

POSTGRES = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TEST_SCALE_REDIS_URL", "redis://127.0.0.1:6379/12")
LEASE = 3


@pytest.fixture(scope="module")
def services() -> Iterator[tuple[str, str]]:
    """A PostgreSQL database and a Redis database of this test's own."""
    name = f"gooee_scale_{secrets.token_hex(4)}"
    try:
        admin = psycopg.connect(POSTGRES, autocommit=True)
        store = redis.Redis.from_url(REDIS_URL)
        store.ping()
    except (psycopg.OperationalError, redis.ConnectionError) as exc:
        pytest.fail(f"PostgreSQL and Redis are needed (see README): {exc}")
    admin.execute(f"CREATE DATABASE {name}")
    store.flushdb()
    try:
        yield POSTGRES.rsplit("/", 1)[0] + f"/{name}", REDIS_URL
    finally:
        store.flushdb()
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory, services) -> Iterator[dict]:
    database, redis_url = services
    broker = brokers.MosquittoBroker().start()
    settings = {
        "DATABASE_URL": database,
        "REDIS_URL": redis_url,
        "BRIDGE_LEASE_SECONDS": LEASE,
    }

    def process(name: str) -> ServedDashboard:
        return ServedDashboard(tmp_path_factory.mktemp(name), broker.url, **settings)

    web_a, web_b, worker_1, worker_2 = (process(n) for n in ("a", "b", "w1", "w2"))
    hq = web_a.prepare()
    web_b.manage("collectstatic", "--noinput", "-v0")
    web_b.manage("shell", "-c", "from tests.factories import make_building; make_building('Annex')")
    started = []
    try:
        for web in (web_a, web_b):
            started.append(web.start("serve", "--no-bridge"))
        for worker in (worker_1, worker_2):
            started.append(worker.start("run_bridge", ready="bridge running"))
        yield {"a": web_a, "b": web_b, "workers": [worker_1, worker_2], "hq": hq, "broker": broker}
    finally:
        for served in started:
            if served.process.poll() is None:
                served.stop()
        broker.close()


def holder(building: str) -> int:
    """The pid of the worker holding the building's lease, once one does."""
    store = redis.Redis.from_url(REDIS_URL)
    deadline = time.monotonic() + LEASE * 4
    while time.monotonic() < deadline:
        value = store.get(f"gooee:bridge:lease:{building}")
        if value:
            return int(value.decode().split(":")[1])
        time.sleep(0.2)
    raise AssertionError(f"no worker holds building {building}")


def publish_until(mqtt, topic: str, payload, check, timeout: float = 20) -> None:
    until_shown(lambda: brokers.publish(mqtt, topic, json.dumps(payload)), check, timeout)


def test_pages_actions_and_a_killed_worker_across_processes(site, chromium):
    hq, web_a, web_b = site["hq"], site["a"], site["b"]
    building, device, space = hq["building"], hq["device"], hq["space"]
    mqtt = brokers.connect_client(site["broker"])
    listener = brokers.connect_client(site["broker"])
    watcher = brokers.Subscriber(listener).subscribe(f"spaces/{space}/actions")
    try:
        # A viewer on web process A sees what the worker holding Headquarters bridges.
        page = chromium.new_page()
        page.goto(f"{web_a.url}/accounts/login/")
        page.get_by_label("Username").fill("victor")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.goto(f"{web_a.url}/buildings/{building}/")
        first_holder = holder(building)
        workers = {w.process.pid: w for w in site["workers"]}
        assert first_holder in workers
        value = page.locator(f"#meta-{device.replace('-', '')}-temperature .meta-value")
        topic = build_topic(Scope.DEVICE, device, Kind.META)
        publish_until(
            mqtt, topic, seed.DEVICE_META, lambda: expect(value).to_have_text("87.40", timeout=1000)
        )

        # Redis channels sit idle longer than redis-py's default 5 s read timeout (which
        # once made the core layer fail every idle channel and silenced the bridge).
        time.sleep(6)

        # An operator on web process B dims the Open Office: it reaches the broker.
        operator = chromium.new_page()
        operator.goto(f"{web_b.url}/accounts/login/")
        operator.get_by_label("Username").fill("olivia")
        operator.get_by_label("Password").fill(PASSWORD)
        operator.get_by_role("button", name="Log in").click()
        operator.goto(f"{web_b.url}/buildings/{building}/")
        controls = operator.get_by_role("form", name="Action for Open Office")
        controls.get_by_label("Action").select_option("dim")
        controls.get_by_label("Level").fill("40")
        controls.get_by_role("button", name="Dim Open Office to 40 %").click()
        expect(operator.locator(".attempt").first).to_contain_text("sent")
        [message] = watcher.wait_for(f"spaces/{space}/actions", timeout=10)
        assert json.loads(message.payload)["value"] == {"level": 40, "transition_time": 5}

        # The worker holding Headquarters dies; the other takes over within a lease period.
        killed_at = time.monotonic()
        os.kill(first_holder, signal.SIGKILL)
        workers[first_holder].process.wait()
        survivor = holder_other_than(building, first_holder)
        assert survivor in workers
        assert time.monotonic() - killed_at <= LEASE + 2
        later = [{**seed.DEVICE_META[0], "value": 55.5}]
        publish_until(mqtt, topic, later, lambda: expect(value).to_have_text("55.50", timeout=1000))
        page.close()
        operator.close()

        # Nothing went wrong quietly on the way: no process logged an error.
        for served in (web_a, web_b, *site["workers"]):
            logged = "".join(served.output)
            assert "Traceback" not in logged and " ERROR " not in logged, logged[-3000:]
    finally:
        brokers.close_clients([mqtt, listener])


def holder_other_than(building: str, dead: int) -> int:
    deadline = time.monotonic() + LEASE * 4
    while time.monotonic() < deadline:
        pid = holder(building)
        if pid != dead:
            return pid
        time.sleep(0.2)
    raise AssertionError("the building's lease never moved")


def test_web_processes_are_ready_only_while_live_workers_hold_every_building(site):
    """The operations team's /readyz on web-only processes follows the bridge workers' leases."""
    web_a, web_b, workers = site["a"], site["b"], site["workers"]

    def readiness(web: ServedDashboard) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(f"{web.url}/readyz", timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def becomes(status: int, timeout: float = LEASE * 5) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            answers = [readiness(web) for web in (web_a, web_b)]
            if all(code == status for code, _ in answers):
                return answers[0][1]
            assert time.monotonic() < deadline, answers
            time.sleep(0.3)

    becomes(200)
    for worker in workers:
        worker.stop()
    report = becomes(503)
    # Headquarters, Elsewhere and the Annex: none held now.
    assert report["checks"]["leases"] == "3 of 3 buildings without a live holder"
    assert "buildings" not in report  # no names without READYZ_DETAIL
    workers[0].start("run_bridge", ready="bridge running")
    becomes(200)
