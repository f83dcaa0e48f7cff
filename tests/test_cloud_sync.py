"""A facility manager connects the dashboard to their Gooee account.

``manage.py sync_inventory`` reads the buildings, spaces, areas and devices from the Gooee Cloud
REST API (here the emulator, over real HTTP) and keeps them in step; the bridge re-syncs the
buildings it serves while running.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from dashboard.cloud import client as client_module
from dashboard.demo.cloud_api import CloudApiEmulator
from dashboard.live import cloud_sync
from dashboard.models import Area, Building, Device, LatestMeta, Space

_NAMESPACE = uuid.UUID("5d3f0c8e-2b1a-4c6e-9f7d-1a2b3c4d5e6f")
TOKEN = "user-api-token-" + uuid.uuid4().hex


def gid(name: str) -> str:
    """A stable UUID per readable name."""
    return str(uuid.uuid5(_NAMESPACE, name))


HARBOUR = gid("harbour")
FLOOR_1, WING_A, ROOM_A1, FLOOR_2 = (gid(f"harbour/{n}") for n in ("f1", "wa", "a1", "f2"))
FIRST_LAMP = gid("harbour/device/0")
SYNCED_AT = "2024-01-01T00:00:00Z"


def harbour(devices: int = 250) -> dict[str, Any]:
    """Harbour House, Auckland: Floor 1 > Wing A > Room A1 (two levels deep), and Floor 2.

    The first lamp hangs where Room A1 meets Floor 2: it is in both spaces.
    """
    lamps = [
        {
            "id": gid(f"harbour/device/{n}"),
            "name": f"Downlight {n}",
            "spaces": [[ROOM_A1, WING_A, FLOOR_2][n % 3]],
        }
        for n in range(devices)
    ]
    lamps[0]["spaces"] = [ROOM_A1, FLOOR_2]
    lamps[0]["meta"] = [{"name": "temperature", "value": 21.5, "timestamp": SYNCED_AT}]
    return {
        "id": HARBOUR,
        "name": "Harbour House",
        "timezone": "Pacific/Auckland",
        "spaces": [
            {"id": ROOM_A1, "name": "Room A1", "parent": WING_A, "capacity": 8},
            {"id": WING_A, "name": "Wing A", "parent": FLOOR_1},
            {"id": FLOOR_1, "name": "Floor 1", "capacity": 120},
            {"id": FLOOR_2, "name": "Floor 2"},
        ],
        "areas": [{"id": gid("harbour/lobby"), "name": "Lobby", "space": FLOOR_1}],
        "devices": lamps,
    }


def small(name: str, devices: int = 2) -> dict[str, Any]:
    """Another building of the account, with a space and a few lamps."""
    space = gid(f"{name}/space")
    return {
        "id": gid(name),
        "name": name,
        "timezone": "Europe/London",
        "spaces": [{"id": space, "name": "Shop floor"}],
        "devices": [
            {"id": gid(f"{name}/device/{n}"), "name": f"Lamp {n}", "space": space}
            for n in range(devices)
        ],
    }


@pytest.fixture
def cloud(settings: Any) -> Iterator[CloudApiEmulator]:
    """The Gooee Cloud API with Harbour House, and the dashboard's settings pointing at it."""
    api = CloudApiEmulator([harbour()], TOKEN)
    api.start()
    settings.GOOEE_API_URL, settings.GOOEE_API_TOKEN = api.url, TOKEN
    settings.GOOEE_API_AUTH_SCHEME = "Bearer"
    yield api
    api.stop()


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every wait of the command's API client, in seconds; backoff is short, Retry-After real."""
    waited: list[float] = []

    def sleep(seconds: float) -> None:
        waited.append(seconds)
        time.sleep(seconds)

    real = cloud_sync.client_from_settings
    monkeypatch.setattr(
        cloud_sync,
        "client_from_settings",
        lambda **options: real(**{"sleep": sleep, "backoff": 0.01, **options}),
    )
    return waited


def sync(*args: str) -> str:
    """Run ``manage.py sync_inventory`` and return what it printed."""
    out, err = io.StringIO(), io.StringIO()
    call_command("sync_inventory", *args, stdout=out, stderr=err)
    assert err.getvalue() == ""
    return out.getvalue()


def snapshot() -> dict[str, Any]:
    """Everything a sync may write, to see that a refused one wrote nothing."""
    return {
        "buildings": sorted(Building.objects.values_list("id", "name", "inventory_version")),
        "spaces": sorted(Space.objects.values_list("id", "name", "parent_id")),
        "areas": sorted(Area.objects.values_list("id", "name")),
        "devices": sorted(Device.objects.values_list("id", "name", "space_id")),
        "memberships": sorted(Device.spaces.through.objects.values_list("device_id", "space_id")),
        "values": sorted(LatestMeta.objects.values_list("device_id", "name", "synced")),
    }


def lamp(n: int) -> Device:
    return Device.objects.get(pk=gid(f"harbour/device/{n}"))


# --- Onboarding ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_building_of_250_devices_nested_spaces_and_its_time_zone_is_onboarded_whole(cloud):
    printed = sync("--building", HARBOUR)

    assert f"Harbour House ({HARBOUR}): created: 1 building, 4 spaces, 1 area, 250 devices" in (
        printed
    )
    # Every page of the 250 devices was read, 100 at a time.
    device_pages = [r for r in cloud.requests if r.startswith("/devices?")]
    assert len(device_pages) == 3
    assert [r.split("offset=")[-1] if "offset=" in r else "0" for r in device_pages] == [
        "0",
        "100",
        "200",
    ]
    assert Device.objects.filter(building_id=HARBOUR).count() == 250

    building = Building.objects.get(pk=HARBOUR)
    assert building.timezone == "Pacific/Auckland"
    room = Space.objects.get(pk=ROOM_A1)
    assert room.parent_id == uuid.UUID(WING_A)
    assert room.parent.parent_id == uuid.UUID(FLOOR_1)
    assert Space.objects.get(pk=FLOOR_1).parent_id is None
    first = lamp(0)
    assert set(first.spaces.values_list("id", flat=True)) == {
        uuid.UUID(ROOM_A1),
        uuid.UUID(FLOOR_2),
    }
    assert first.space_id == uuid.UUID(ROOM_A1)  # its card's space: the first the cloud lists
    assert Area.objects.get(building_id=HARBOUR).space_id == uuid.UUID(FLOOR_1)

    # The next sync finds the building as the cloud has it: nothing to write.
    before = snapshot()
    again = sync("--building", HARBOUR)
    assert again.strip() == f"Harbour House ({HARBOUR}): nothing changed"
    assert snapshot() == before


@pytest.mark.django_db
def test_all_syncs_every_building_the_token_sees_and_no_argument_the_ones_already_here(cloud):
    cloud.buildings[gid("Kiosk")] = small("Kiosk")
    cloud.buildings[gid("Depot")] = small("Depot")

    sync("--building", gid("Kiosk"))
    assert set(Building.objects.values_list("name", flat=True)) == {"Kiosk"}

    # Without arguments: the buildings already here, and only those.
    cloud.buildings[gid("Kiosk")]["name"] = "Kiosk North"
    cloud.requests.clear()
    printed = sync()
    assert f"Kiosk North ({gid('Kiosk')}): updated: 1 building" in printed
    assert not any(HARBOUR in r or gid("Depot") in r for r in cloud.requests)
    assert set(Building.objects.values_list("name", flat=True)) == {"Kiosk North"}

    printed = sync("--all")
    assert set(Building.objects.values_list("name", flat=True)) == {
        "Harbour House",
        "Kiosk North",
        "Depot",
    }
    assert f"Depot ({gid('Depot')}): created: 1 building, 1 space, 2 devices" in printed
    assert f"Kiosk North ({gid('Kiosk')}): nothing changed" in printed


@pytest.mark.django_db
def test_no_building_here_and_no_argument_says_how_to_start(cloud):
    with pytest.raises(CommandError, match="--all"):
        sync()


@pytest.mark.django_db
def test_a_dry_run_prints_the_changes_and_writes_nothing(cloud):
    sync("--building", HARBOUR)
    cloud.buildings[HARBOUR]["devices"][5]["name"] = "Reception downlight"
    cloud.buildings[HARBOUR]["devices"].append({"id": gid("new lamp"), "name": "New lamp"})
    before = snapshot()

    printed = sync("--building", HARBOUR, "--dry-run")

    assert "[dry run, nothing written]: created: 1 device; updated: 1 device" in printed
    assert snapshot() == before


@pytest.mark.django_db
def test_a_device_removed_in_the_cloud_goes_with_prune_and_stays_without(cloud):
    sync("--building", HARBOUR)
    gone = cloud.buildings[HARBOUR]["devices"].pop(7)

    printed = sync("--building", HARBOUR)
    assert "nothing changed" in printed
    assert Device.objects.filter(pk=gone["id"]).exists()

    printed = sync("--building", HARBOUR, "--prune")
    assert "removed: 1 device" in printed
    assert not Device.objects.filter(pk=gone["id"]).exists()
    assert Device.objects.filter(building_id=HARBOUR).count() == 249


@pytest.mark.django_db
def test_a_synced_value_is_the_latest_value_until_a_newer_one_comes(cloud):
    sync("--building", HARBOUR)
    value = LatestMeta.objects.get(device_id=FIRST_LAMP, name="temperature")
    assert (value.value, value.synced, value.source_timestamp) == (21.5, True, SYNCED_AT)

    # The cloud's newer reading replaces it; an older one would not.
    meta = cloud.buildings[HARBOUR]["devices"][0]["meta"]
    meta[0] = {"name": "temperature", "value": 22.0, "timestamp": "2024-02-01T00:00:00Z"}
    assert "current values: 1 taken" in sync()
    meta[0] = {"name": "temperature", "value": 19.0, "timestamp": "2023-12-01T00:00:00Z"}
    assert "nothing changed" in sync()
    assert LatestMeta.objects.get(device_id=FIRST_LAMP, name="temperature").value == 22.0


# --- When the API misbehaves ---------------------------------------------------------------


@pytest.mark.django_db
def test_a_refused_token_fails_in_one_line_and_writes_nothing(cloud, settings, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    sync("--building", HARBOUR)
    cloud.buildings[HARBOUR]["name"] = "Harbour House (renamed)"
    before = snapshot()
    settings.GOOEE_API_TOKEN = "expired-" + TOKEN

    with pytest.raises(CommandError) as refused:
        sync()

    message = str(refused.value)
    assert "\n" not in message
    assert "refused the token (HTTP 401)" in message
    assert snapshot() == before
    captured = capsys.readouterr()
    for secret in (TOKEN, settings.GOOEE_API_TOKEN):
        assert secret not in message
        assert secret not in caplog.text
        assert secret not in captured.out + captured.err


@pytest.mark.django_db
def test_three_server_errors_then_success_syncs(cloud, waits):
    cloud.fail_next(500, times=3)
    printed = sync("--building", HARBOUR)
    assert "created: 1 building" in printed
    assert waits == [0.01, 0.02, 0.04]  # backing off between tries


@pytest.mark.django_db
def test_too_many_requests_waits_as_long_as_the_api_asks(cloud, waits, caplog):
    cloud.fail_next(429, headers={"Retry-After": "1"})
    started = time.monotonic()
    sync("--building", HARBOUR)
    assert waits == [1.0]
    assert time.monotonic() - started >= 1.0
    assert "HTTP 429, retrying in 1.0 s" in caplog.text
    assert Building.objects.filter(pk=HARBOUR).exists()


@pytest.mark.django_db
def test_server_errors_that_never_end_fail_in_one_line(cloud, waits):
    cloud.fail_next(503, times=10)
    with pytest.raises(CommandError) as failed:
        sync("--building", HARBOUR)
    assert str(failed.value) == (
        f"building {HARBOUR}: GET /buildings/{HARBOUR}: HTTP 503, still failing after 5 attempts"
    )
    assert not Building.objects.exists()


@pytest.mark.django_db
def test_an_answer_too_large_to_be_a_page_is_not_read(cloud, waits, monkeypatch):
    monkeypatch.setattr(client_module, "MAX_RESPONSE_BYTES", 64 * 1024)
    cloud.fail_next(200, body=[{"id": gid(f"x{n}"), "name": "x" * 100} for n in range(2000)])
    with pytest.raises(CommandError) as refused:
        sync("--building", HARBOUR)
    assert str(refused.value) == (
        f"building {HARBOUR}: GET /buildings/{HARBOUR}: the answer is over 65,536 bytes; not reading it"
    )
    assert not Building.objects.exists()


@pytest.mark.django_db
def test_a_malformed_device_is_named_and_nothing_of_its_building_is_written(cloud):
    sync("--building", HARBOUR)
    devices = cloud.buildings[HARBOUR]["devices"]
    devices.append({"id": gid("new lamp"), "name": "New lamp"})
    devices[0]["name"] = "Renamed"
    devices[3]["cloud"] = {"spaces": "x"}
    before = snapshot()

    with pytest.raises(CommandError) as refused:
        sync()

    assert str(refused.value) == f"building {HARBOUR}: devices[3].spaces: expected array or null"
    assert snapshot() == before


@pytest.mark.django_db
def test_an_api_without_areas_keeps_the_areas_already_here_and_says_so(cloud):
    sync("--building", HARBOUR)
    cloud.areas_endpoint = False
    cloud.buildings[HARBOUR]["areas"] = []

    printed = sync("--building", HARBOUR, "--prune")

    assert "note: the API has no areas endpoint (404): kept the 1 areas already here" in printed
    assert list(Area.objects.values_list("name", flat=True)) == ["Lobby"]


@pytest.mark.django_db
def test_a_next_page_on_another_server_is_refused_and_never_gets_the_token(cloud):
    elsewhere = CloudApiEmulator([harbour()], TOKEN, host="127.0.0.2")
    elsewhere.start()
    try:
        # The list of buildings says its next page is on another host.
        cloud.fail_next(
            200,
            headers={"Link": f'<{elsewhere.url}/buildings?limit=100&offset=100>; rel="next"'},
            body=[{"id": HARBOUR, "name": "Harbour House"}],
        )
        with pytest.raises(CommandError, match="the next page is on another server"):
            sync("--all")
    finally:
        elsewhere.stop()
    assert elsewhere.requests == []
    assert not Building.objects.exists()


def test_the_client_refuses_a_scheme_it_does_not_know():
    from dashboard.cloud.client import CloudClient

    with pytest.raises(ValueError, match="Bearer, JWT"):
        CloudClient("http://127.0.0.1:1", TOKEN, scheme="Basic")


# --- A running bridge keeps following the cloud ---------------------------------------------

SHOP = "Corner Shop"


def shop_lamp(n: int) -> str:
    return gid(f"{SHOP}/device/{n}")


@pytest.fixture
def shop_cloud(settings: Any) -> Iterator[CloudApiEmulator]:
    """A Gooee account with a small shop of three lamps, onboarded here."""
    api = CloudApiEmulator([small(SHOP, devices=3)], TOKEN)
    api.start()
    settings.GOOEE_API_URL, settings.GOOEE_API_TOKEN = api.url, TOKEN
    settings.GOOEE_API_AUTH_SCHEME = "Bearer"
    sync("--building", gid(SHOP))
    yield api
    api.stop()


RESYNC_EVERY = 0.3  # seconds: GOOEE_SYNC_MINUTES of 0.005


@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
async def test_the_running_bridge_follows_devices_added_and_removed_in_the_cloud(
    shop_cloud, running_bridge, publish
):
    from asgiref.sync import sync_to_async

    from tests import seed
    from tests.bridging import send, subscribed, until

    shop = uuid.UUID(gid(SHOP))
    bridge = await running_bridge(resync=cloud_sync.resync_building, resync_every=RESYNC_EVERY)
    await subscribed(bridge, shop)
    session = bridge.buildings[shop].session
    assert f"devices/{shop_lamp(2)}/meta" in session.topics

    # In the cloud, lamp 2 is taken out and lamp 3 is put up.
    with shop_cloud.lock:
        devices = shop_cloud.buildings[gid(SHOP)]["devices"]
        devices.pop(2)
        devices.append({"id": shop_lamp(3), "name": "Lamp 3"})

    await until(
        lambda: (
            f"devices/{shop_lamp(3)}/meta" in session.topics
            and f"devices/{shop_lamp(2)}/meta" not in session.topics
        ),
        10,
        "the re-sync to reach the session",
    )
    await subscribed(bridge, shop)
    assert not await sync_to_async(Device.objects.filter(pk=shop_lamp(2)).exists)()
    state = bridge.buildings[shop].state
    await send(publish, f"devices/{shop_lamp(3)}/meta", seed.DEVICE_META)
    await until(lambda: uuid.UUID(shop_lamp(3)) in state.meta, what="the new lamp's values")
    # Same session throughout: no restart.
    assert bridge.buildings[shop].session is session


@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
async def test_a_failing_re_sync_shows_on_the_status_once_logged_and_live_values_keep_coming(
    shop_cloud, running_bridge, publish, settings, caplog
):
    from tests.bridging import Browser, send, subscribed, until

    caplog.set_level(logging.INFO, logger="dashboard.bridge.supervisor")
    shop = uuid.UUID(gid(SHOP))
    bridge = await running_bridge(resync=cloud_sync.resync_building, resync_every=RESYNC_EVERY)
    await subscribed(bridge, shop)
    browser = await Browser(shop).join()
    state = bridge.buildings[shop].state

    settings.GOOEE_API_TOKEN = "revoked-" + TOKEN
    await browser.wait_for("Gooee Cloud sync failing", timeout=10)
    assert "refused the token (HTTP 401)" in state.status.sync_error
    # It keeps failing for a few periods: said once in the log, not every time.
    failing_since = len(shop_cloud.requests)
    await until(lambda: len(shop_cloud.requests) >= failing_since + 3, 10, "more re-syncs")
    failures = [r for r in caplog.records if "re-sync from the Gooee Cloud API failed" in r.message]
    assert len(failures) == 1
    assert settings.GOOEE_API_TOKEN not in caplog.text and TOKEN not in caplog.text

    # The building stays live all the while.
    lamp = uuid.UUID(shop_lamp(0))
    await send(publish, f"devices/{lamp}/meta", [{"name": "temperature", "value": 30.5}])
    await until(lambda: lamp in state.meta and state.meta[lamp]["temperature"].value == 30.5)
    assert state.status.state == "connected"

    # The token is fixed: the error goes from the status, and the log says it works again.
    settings.GOOEE_API_TOKEN = TOKEN
    await until(lambda: state.status.sync_error == "", 10, "the sync error to clear")
    assert "re-sync from the Gooee Cloud API works again" in caplog.text


@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
async def test_with_several_workers_only_the_holder_of_a_building_re_syncs_it(
    running_bridge, redis_url
):
    from asgiref.sync import sync_to_async

    from dashboard.bridge.leases import Leases
    from tests.bridging import until
    from tests.factories import make_building

    for n in range(4):
        await sync_to_async(make_building)(f"Building {n}")
    calls: dict[str, list[uuid.UUID]] = {"w1": [], "w2": []}

    def recorder(name: str) -> Any:
        return lambda building_id: calls[name].append(building_id)

    workers = {}
    for name in calls:
        workers[name] = await running_bridge(
            leases=Leases(redis_url, name, 2.0), resync=recorder(name), resync_every=0.2
        )
    await until(
        lambda: all(len(w.buildings) == 2 for w in workers.values()), 10, "the buildings split"
    )
    for held in calls.values():
        held.clear()
    await until(lambda: all(len(c) >= 4 for c in calls.values()), 10, "a few re-syncs each")
    for name, worker in workers.items():
        assert set(calls[name]) == set(worker.buildings)
    assert not set(calls["w1"]) & set(calls["w2"])


@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
async def test_a_synced_value_shows_before_any_message_and_a_live_one_wins_over_it(
    cloud, running_bridge, publish
):
    from asgiref.sync import sync_to_async
    from django.db import OperationalError

    from tests.bridging import send, subscribed, until

    await sync_to_async(sync)("--building", HARBOUR)
    first = uuid.UUID(FIRST_LAMP)

    def stored() -> LatestMeta | None:
        try:
            return LatestMeta.objects.get(device_id=first, name="temperature")
        except OperationalError:  # the in-memory database's table lock: not written yet
            return None

    synced = await sync_to_async(stored)()
    assert synced is not None and (synced.value, synced.synced) == (21.5, True)

    bridge = await running_bridge(resync=cloud_sync.resync_building, resync_every=RESYNC_EVERY)
    building = uuid.UUID(HARBOUR)
    await subscribed(bridge, building)
    state = bridge.buildings[building].state
    assert state.meta[first]["temperature"].value == 21.5  # before any MQTT message

    # A live reading replaces it, in the live state and in the database.
    live = [{"name": "temperature", "value": 23.5, "timestamp": "2024-06-01T00:00:00Z"}]
    await send(publish, f"devices/{first}/meta", live)
    await until(lambda: state.meta[first]["temperature"].value == 23.5, what="the live value")

    async def latest() -> tuple[Any, bool] | None:
        row = await sync_to_async(stored)()
        return (row.value, row.synced) if row is not None else None

    deadline = time.monotonic() + 10
    while await latest() != (23.5, False):
        assert time.monotonic() < deadline, "the live value never reached the database"
        await asyncio.sleep(0.1)

    # The cloud's reading is older than the live one: the re-syncs leave the live one.
    cloud.buildings[HARBOUR]["devices"][0]["meta"] = [
        {"name": "temperature", "value": 19.0, "timestamp": "2024-07-01T00:00:00Z"}
    ]
    # A lamp put up in the cloud while running shows its cloud value at once.
    cloud.buildings[HARBOUR]["devices"].append(
        {
            "id": gid("new lamp"),
            "name": "New lamp",
            "meta": [{"name": "temperature", "value": 20.0, "timestamp": SYNCED_AT}],
        }
    )
    # A lamp silent over MQTT shows the cloud's newer reading.
    quiet = uuid.UUID(gid("harbour/device/1"))
    cloud.buildings[HARBOUR]["devices"][1]["meta"] = [
        {"name": "temperature", "value": 18.5, "timestamp": "2025-01-01T00:00:00Z"}
    ]
    new = uuid.UUID(gid("new lamp"))
    await until(lambda: new in state.meta, 10, "the new lamp's synced value")
    assert state.meta[new]["temperature"].value == 20.0
    await until(lambda: quiet in state.meta, 10, "the quiet lamp's newer cloud value")
    assert state.meta[quiet]["temperature"].value == 18.5
    assert state.meta[first]["temperature"].value == 23.5
    assert await latest() == (23.5, False)


@pytest.mark.django_db
def test_a_building_gone_from_the_cloud_is_named_and_kept_here(cloud):
    sync("--building", HARBOUR)
    del cloud.buildings[HARBOUR]
    with pytest.raises(CommandError, match=f"building {HARBOUR}: not in the Gooee Cloud"):
        sync("--prune")
    assert Device.objects.filter(building_id=HARBOUR).count() == 250
