"""What the operations team runs the dashboard with: liveness, readiness, metrics and logs.

The story: the dashboard is served as deployed (``manage.py serve``, its own process) against
a real Mosquitto, with a metrics token, a multiprocess metrics directory and JSON logs. The
team's probes see it ready, see the building's session go down with the broker and come back
with it; their Prometheus counts exactly the messages devices published.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.test import AsyncClient, Client
from prometheus_client.parser import text_string_to_metric_families

from dashboard.contract.topics import Kind, Scope, build_topic
from tests import brokers, seed
from tests.served import ServedDashboard

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "ops-team-metrics-token-0123456789"
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


def get(url: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def eventually(check: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text; 0 when the series does not exist yet."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and all(found.labels.get(k) == v for k, v in labels.items()):
                return found.value
    return 0.0


# --- the dashboard as deployed ------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if brokers.find_mosquitto() is None:
        pytest.fail("mosquitto not found: install Debian's mosquitto package (see README)")
    broker = brokers.MosquittoBroker().start()
    multiproc = tmp_path_factory.mktemp("prometheus")
    served = ServedDashboard(
        tmp_path_factory.mktemp("ops"),
        broker.url,
        METRICS_TOKEN=TOKEN,
        READYZ_DETAIL="true",
        PROMETHEUS_MULTIPROC_DIR=multiproc,
        LOG_FORMAT="json",
        MQTT_RECONNECT_MAX_SECONDS=1,
        MQTT_KEEPALIVE=5,
    )
    ids = served.prepare()
    served.start()
    try:
        yield {"served": served, "broker": broker, "ids": ids}
    finally:
        served.stop()
        broker.close()


def metrics_text(site: dict[str, Any]) -> str:
    status, text = get(f"{site['served'].url}/metrics", TOKEN)
    assert status == 200, text
    return text


def messages(site: dict[str, Any], outcome: str) -> float:
    building = site["ids"][Scope.BUILDING.value]
    return sample(
        metrics_text(site), "gooee_mqtt_messages_total", building=building, outcome=outcome
    )


def test_liveness_needs_no_login(site):
    assert get(f"{site['served'].url}/healthz") == (200, "ok")


def test_metrics_are_only_for_the_bearer_of_the_token(site):
    url = f"{site['served'].url}/metrics"
    assert get(url)[0] == 401
    assert get(url, "not-the-token")[0] == 403
    status, text = get(url, TOKEN)
    assert status == 200
    assert "gooee_http_request_duration_seconds" in text


def test_prometheus_counts_exactly_the_messages_devices_published(site):
    served, ids = site["served"], site["ids"]
    eventually(lambda: get(f"{served.url}/readyz")[0] == 200, what="ready")
    topic = build_topic(Scope.BUILDING, uuid.UUID(ids[Scope.BUILDING.value]), Kind.HEAD_COUNT)
    with brokers.json_publisher(site["broker"]) as send:
        # The session may still be waiting for its SUBACK: publish until one is counted.
        def counted() -> bool:
            send(topic, seed.headcount("headcount", 1))
            return messages(site, "accepted") > 0

        eventually(counted, what="the first message counted")
        time.sleep(0.5)  # the last probes still in flight are counted before the baseline
        accepted, malformed = messages(site, "accepted"), messages(site, "malformed")

        for value in range(25):
            send(topic, seed.headcount("headcount", value))
        send(topic, b"not json at all")
        send(topic, {"name": "headcount", "value": "many"})

        eventually(lambda: messages(site, "accepted") >= accepted + 25, what="25 accepted")
        eventually(lambda: messages(site, "malformed") >= malformed + 2, what="2 malformed")
        time.sleep(0.5)
        assert messages(site, "accepted") == accepted + 25
        assert messages(site, "malformed") == malformed + 2


def test_readiness_follows_the_buildings_broker_session_down_and_back(site):
    served, broker = site["served"], site["broker"]
    url = f"{served.url}/readyz"
    eventually(lambda: get(url)[0] == 200, what="ready")
    status, body = get(url)
    assert status == 200
    assert json.loads(body) == {
        "status": "ready",
        "checks": {"database": "ok", "channel_layer": "ok", "sessions": "ok"},
    }

    broker.stop()
    _, body = eventually(lambda: (r := get(url))[0] == 503 and r, what="not ready")
    report = json.loads(body)
    assert report["status"] == "unavailable"
    # Headquarters, and Elsewhere (the outsider's building): one broker, both sessions down.
    assert report["checks"]["sessions"] == "2 of 2 buildings not connected"
    assert report["problems"] == ["sessions: 2 of 2 buildings not connected"]
    named = {b["name"]: b for b in report["buildings"]}  # READYZ_DETAIL=true: they are named
    assert set(named) == {"Headquarters", "Elsewhere"}
    assert named["Headquarters"]["id"] == site["ids"][Scope.BUILDING.value]
    assert named["Headquarters"]["session"] in ("reconnecting", "connecting")

    broker.start()
    eventually(lambda: get(url)[0] == 200, what="ready again")
    text = metrics_text(site)
    building_id = site["ids"][Scope.BUILDING.value]
    assert sample(text, "gooee_mqtt_session_connected", building=building_id) == 1
    assert sample(text, "gooee_mqtt_reconnects_total", building=building_id) >= 1


def test_json_logs_are_one_object_a_line(site):
    # The broker's stop above was logged as a warning, in JSON.
    logged = [line for line in site["served"].output if line.startswith("{")]
    assert logged, "".join(site["served"].output)
    entries = [json.loads(line) for line in logged]
    assert all(set(e) >= {"time", "level", "logger", "message"} for e in entries)
    assert any(
        e["level"] == "WARNING" and e["logger"] == "dashboard.bridge.session" for e in entries
    )


# --- in this process ------------------------------------------------------------------------------


def test_liveness_touches_no_database():
    # No ``db`` fixture: any query would fail the test.
    response = Client().get("/healthz")
    assert (response.status_code, response.content) == (200, b"ok")


@pytest.mark.parametrize(
    ("token", "header", "status"),
    [
        (None, f"Bearer {TOKEN}", 404),  # METRICS_TOKEN unset: /metrics does not exist
        (TOKEN, None, 401),
        (TOKEN, "Basic b3BzOnRlYW0=", 401),
        (TOKEN, f"Bearer {TOKEN}x", 403),
        (TOKEN, f"Bearer {TOKEN}", 200),
    ],
)
def test_metrics_answer_only_the_right_bearer_token(settings, token, header, status):
    settings.METRICS_TOKEN = token
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    response = Client().get("/metrics", **extra)
    assert response.status_code == status
    if status == 200:
        assert b"# TYPE gooee_mqtt_messages_total counter" in response.content


@pytest.fixture
def redis_db() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.fail(f"Redis not reachable at {REDIS_URL} (see README: tests need Redis)")
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.mark.django_db(transaction=True)
async def test_a_web_only_process_is_ready_while_a_live_bridge_worker_holds_each_building(
    settings, redis_db, hq
):
    from dashboard.bridge.leases import Leases

    settings.REDIS_URL = REDIS_URL
    settings.BRIDGE_LEASE_SECONDS = 2
    client = AsyncClient()

    response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["leases"] == "1 of 1 buildings without a live holder"
    assert "Headquarters" not in response.content.decode()  # no names without READYZ_DETAIL

    worker = Leases(REDIS_URL, "worker-1", period=2)
    await worker.heartbeat()
    assert await worker.claim(hq[Scope.BUILDING])
    response = await client.get("/readyz")
    assert response.status_code == 200, response.json()
    assert response.json()["checks"]["leases"] == "ok"

    # The worker stops heartbeating (hung or dead); its lease is not yet expired.
    redis_db.zadd("gooee:bridge:workers", {"worker-1": time.time() - 5})
    response = await client.get("/readyz")
    assert response.status_code == 503
    await worker.leave([hq[Scope.BUILDING]])


# --- settings -------------------------------------------------------------------------------------


def manage(*args: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_log_format_json_writes_each_record_as_one_json_object_with_its_exception():
    script = (
        "import logging\n"
        "try:\n    1 / 0\n"
        "except ZeroDivisionError:\n"
        "    logging.getLogger('dashboard.ops').exception('sum of %s failed', 'today')\n"
    )
    result = manage("shell", "-c", script, LOG_FORMAT="json")
    assert result.returncode == 0, result.stderr
    [line] = result.stderr.strip().splitlines()
    entry = json.loads(line)
    assert entry["level"] == "ERROR"
    assert entry["logger"] == "dashboard.ops"
    assert entry["message"] == "sum of today failed"
    assert "ZeroDivisionError" in entry["exception"]
    assert entry["time"].endswith("+00:00")


@pytest.mark.parametrize(
    ("name", "value", "line"),
    [
        ("LOG_FORMAT", "yaml", "LOG_FORMAT: text or json (got 'yaml')"),
        ("METRICS_TOKEN", "short", "METRICS_TOKEN: at least 16 characters (or unset to turn off)"),
        ("READYZ_DETAIL", "maybe", "READYZ_DETAIL: expected true or false, got 'maybe'"),
        (
            "PROMETHEUS_MULTIPROC_DIR",
            "/nonexistent/prometheus",
            "PROMETHEUS_MULTIPROC_DIR: no such directory '/nonexistent/prometheus'",
        ),
    ],
)
def test_a_bad_operations_setting_stops_with_one_clear_line(name, value, line):
    result = manage("check", **{name: value})
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [f"configuration error: {line}"]


def test_an_empty_multiprocess_directory_setting_means_each_process_counts_alone(tmp_path):
    # prometheus_client alone takes an empty variable for the current directory.
    script = "from dashboard.live import metrics\nmetrics.PAGE_FRAMES.inc()\n"
    result = manage("shell", "-c", script, cwd=tmp_path, PROMETHEUS_MULTIPROC_DIR="")
    assert result.returncode == 0, result.stderr
    assert list(tmp_path.iterdir()) == []
