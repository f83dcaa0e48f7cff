"""Operators know the lights changed: an action is confirmed by its lamps' own reports."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.db import OperationalError

from dashboard.bridge import building as building_module
from dashboard.bridge.building import KEPT_ATTEMPTS
from dashboard.contract.topics import Scope
from dashboard.live.confirmation import Command, Confirmation, Confirmations, Pending
from dashboard.live.state import BatchTotal
from dashboard.models import ActionAttempt, Device, Role, Space
from tests.bridging import Browser, send, subscribed, until
from tests.factories import PASSWORD
from tests.test_actions import as_user, attempts, form, received

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


# --- the rules, called directly ---------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "name", "value", "followed"),
    [
        (Command("off"), "onoff", False, True),
        (Command("off"), "dim", 0, True),
        (Command("off"), "onoff", True, False),
        (Command("on"), "onoff", True, True),
        (Command("on"), "dim", 100, False),
        (Command("dim", 40), "dim", 41, True),
        (Command("dim", 40), "dim", 39, True),
        (Command("dim", 40), "dim", 42, False),
        (Command("dim", 40), "dim", "40", False),  # untrusted: a string is not a level
    ],
)
def test_a_report_follows_a_command_or_not(command, name, value, followed):
    assert command.followed(name, value) is followed


def pending(names: dict[uuid.UUID, str]) -> Pending:
    return Pending(
        1, "Dim Boardroom to 40 %", Command("dim", 40), T0, T0 + timedelta(seconds=5), names
    )


def test_a_device_with_nothing_pending_costs_one_lookup_and_changes_nothing():
    confirmations = Confirmations()
    assert confirmations.on_meta(uuid.uuid4(), "dim", 40, T0) == []


def test_lamps_that_follow_confirm_and_one_that_does_not_is_named_with_its_last_report():
    lamps = {uuid.uuid4(): f"Lamp {n}" for n in range(1, 5)}
    ids = list(lamps)
    confirmations = Confirmations()
    confirmations.add(pending(lamps))
    for device_id in ids[:3]:
        [changed] = confirmations.on_meta(device_id, "dim", 40, T0 + timedelta(seconds=1))
    assert changed.summary()["confirmed"] == 3
    confirmations.on_meta(ids[3], "power", 1.2, T0 + timedelta(seconds=1))  # not about it

    class Old:
        value, received_at = 100, T0 - timedelta(seconds=40)

    [settled] = confirmations.due(T0 + timedelta(seconds=5), lambda d: {"dim": Old()})
    assert settled.state is Confirmation.PARTLY
    assert settled.missing == [
        {"id": str(ids[3]), "name": "Lamp 4", "last": "100 %, 40 s before the action"}
    ]
    # Late: it follows 7 s after the deadline, and the outcome says so.
    [late] = confirmations.on_meta(ids[3], "dim", 40, T0 + timedelta(seconds=12))
    assert late.state is Confirmation.CONFIRMED and late.missing == []
    assert late.late == [{"id": str(ids[3]), "name": "Lamp 4", "late": 7}]


def test_the_last_lamp_to_follow_confirms_at_once_without_waiting_for_the_deadline():
    lamps = {uuid.uuid4(): f"Lamp {n}" for n in range(1, 3)}
    confirmations = Confirmations()
    confirmations.add(pending(lamps))
    first, last = lamps
    [changed] = confirmations.on_meta(first, "dim", 40, T0 + timedelta(seconds=1))
    assert changed.state is Confirmation.PENDING
    [changed] = confirmations.on_meta(last, "dim", 40, T0 + timedelta(seconds=2))
    assert changed.state is Confirmation.CONFIRMED
    assert changed.summary()["confirmed"] == 2 and changed.missing == []
    assert confirmations.due(T0 + timedelta(seconds=5), lambda d: {}) == []  # nothing to settle


def test_a_report_older_than_the_action_does_not_confirm_it():
    device_id = uuid.uuid4()
    confirmations = Confirmations()
    confirmations.add(pending({device_id: "Lamp 1"}))
    assert confirmations.on_meta(device_id, "dim", 40, T0 - timedelta(seconds=1)) == []
    [settled] = confirmations.due(T0 + timedelta(seconds=5), lambda d: {})
    assert settled.state is Confirmation.NOT_CONFIRMED
    assert settled.missing[0]["last"] == "no report since the action"


# --- through a real broker and bridge ---------------------------------------------------


def four_lamps(hq: dict[str, Any]) -> list[Device]:
    """The Open Office's lamps: Lamp 1 and three more; a sensor beside them is no lamp."""
    space = Space.objects.get(id=hq[Scope.SPACE])
    lamp1 = Device.objects.get(id=hq[Scope.DEVICE])
    lamp1.product_type = "LED lamp"
    lamp1.save()
    lamps = [lamp1]
    for n in (2, 3, 4):
        device = Device.objects.create(
            building_id=hq[Scope.BUILDING], space=space, name=f"Lamp {n}", product_type="LED lamp"
        )
        device.spaces.add(space)
        lamps.append(device)
    Device.objects.create(
        building_id=hq[Scope.BUILDING], space=space, name="Sensor 1", product_type="sensor"
    )
    return lamps


def meta(name: str, value: Any) -> list[dict[str, Any]]:
    return [{"name": name, "value": value, "timestamp": "2026-03-01T09:00:00.000000Z"}]


@pytest.fixture
async def office(hq, people, running_bridge, subscriber, settings):
    settings.ACTION_CONFIRM_GRACE_SECONDS = 1.5
    lamps = await sync_to_async(four_lamps)(hq)
    bridge = await running_bridge()
    building = hq[Scope.BUILDING]
    await until(lambda: len(bridge.buildings[building].inventory.devices) == 5, what="5 devices")
    await subscribed(bridge, building)
    watcher = await sync_to_async(subscriber)("spaces/+/actions", "devices/+/actions")
    browser = await Browser(building).join()
    return bridge, watcher, browser, lamps


async def quiet(bridge) -> None:
    """The history writer idle: the tests' in-memory SQLite refuses (not waits for) a write
    while the writer's transaction holds a table."""
    await bridge.history.flush()


async def dim_office(hq, people, bridge, level: int = 40) -> ActionAttempt:
    await quiet(bridge)
    client = await as_user(people.operator)
    response = await client.post(
        f"/buildings/{hq[Scope.BUILDING]}/actions/",
        form(f"space:{hq[Scope.SPACE]}", action="dim", level=level, transition_time=0),
    )
    assert response.status_code == 200
    [attempt] = await attempts()
    return attempt


async def stored(attempt_id: int) -> ActionAttempt | None:
    try:
        return await ActionAttempt.objects.aget(id=attempt_id)
    except OperationalError:  # the writer holds the table (in-memory SQLite): read again
        return None


async def settled(attempt_id: int) -> ActionAttempt:
    for _ in range(200):
        row = await stored(attempt_id)
        if row is not None and row.confirmation not in (Confirmation.PENDING, ""):
            return row
        await asyncio.sleep(0.05)
    raise AssertionError("the confirmation never settled on the audit row")


@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
async def test_three_of_four_lamps_follow_then_retry_reaches_only_the_fourth(
    hq, people, office, publish
):
    bridge, watcher, browser, lamps = office
    await send(publish, f"devices/{lamps[3].id}/meta", meta("dim", 100))  # before the action
    await until(lambda: lamps[3].id in bridge.buildings[hq[Scope.BUILDING]].state.meta)
    attempt = await dim_office(hq, people, bridge)
    assert attempt.lamp_count == 4 and attempt.confirmation == Confirmation.PENDING
    await received(watcher, 1)
    for lamp in lamps[:3]:
        await send(publish, f"devices/{lamp.id}/meta", meta("dim", 40))
    await browser.wait_for("Confirmed 3 of 4 lamps")

    html = await browser.wait_for("partly confirmed: 3 of 4 lamps", timeout=10)
    assert "Lamp 4: 100 %, " in html and "before the action" in html
    assert "Retry the ones that did not follow" in html
    row = await settled(attempt.id)
    assert row.confirmation == Confirmation.PARTLY and row.confirmed_count == 3
    [missing] = row.confirmation_detail["missing"]
    assert missing["name"] == "Lamp 4" and missing["last"].startswith("100 %, ")

    # The audit's CSV says the same.
    await quiet(bridge)
    client = await as_user(people.operator)
    response = await client.get(f"/buildings/{hq[Scope.BUILDING]}/activity.csv")
    csv = b"".join([chunk async for chunk in response.streaming_content]).decode()
    assert "partly confirmed: 3 of 4 lamps" in csv and "Lamp 4: 100 %" in csv

    # Retry: the same command, only to Lamp 4, on its own device topic.
    await quiet(bridge)
    response = await client.post(
        f"/buildings/{hq[Scope.BUILDING]}/actions/",
        {**form(f"space:{hq[Scope.SPACE]}", action="dim", level=40), "retry": str(attempt.id)},
    )
    assert response.status_code == 200, response.content.decode()
    messages = await received(watcher, 2)
    await asyncio.sleep(0.3)  # anything else published would have arrived by now
    assert len(watcher.messages) == 2
    topic, payload = messages[1]
    assert topic == f"devices/{lamps[3].id}/actions"
    assert payload["type"] == "dim" and payload["value"]["level"] == 40
    retry = (await attempts())[-1]
    assert retry.retry_of_id == attempt.id and retry.lamp_count == 1
    await send(publish, f"devices/{lamps[3].id}/meta", meta("dim", 40))
    assert (await settled(retry.id)).confirmation == Confirmation.CONFIRMED


@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
async def test_every_lamp_follows_and_the_action_is_confirmed(hq, people, office, publish):
    bridge, watcher, browser, lamps = office
    attempt = await dim_office(hq, people, bridge)
    await received(watcher, 1)
    for lamp in lamps:
        await send(publish, f"devices/{lamp.id}/meta", meta("dim", 40))
    await browser.wait_for("confirmed: 4 of 4 lamps", timeout=10)
    row = await settled(attempt.id)
    assert row.confirmation == Confirmation.CONFIRMED
    assert row.confirmation_detail["missing"] == []
    # The space's card sums its lamps up from their reports, and shows the last action.
    card = await browser.wait_for("4 lamps · 4 on · average 40 %")
    assert "Last action: Dim Open Office to 40 % by olivia" in card
    # A reload reads the same back from the database.
    await quiet(bridge)
    client = await as_user(people.operator)
    page = (await client.get(f"/buildings/{hq[Scope.BUILDING]}/")).content.decode()
    assert "Last action: Dim Open Office to 40 % by olivia" in page
    assert "confirmed: 4 of 4 lamps" in page


@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
async def test_no_lamp_reports_and_the_deadline_names_them_all_then_one_reports_late(
    hq, people, office, publish
):
    bridge, watcher, browser, lamps = office
    attempt = await dim_office(hq, people, bridge)
    await received(watcher, 1)
    html = await browser.wait_for("not confirmed: 0 of 4 lamps", timeout=10)
    for n in (1, 2, 3, 4):
        assert f"Lamp {n}: no report since the action" in html
    row = await settled(attempt.id)
    assert row.confirmation == Confirmation.NOT_CONFIRMED
    assert [m["name"] for m in row.confirmation_detail["missing"]] == [
        "Lamp 1",
        "Lamp 2",
        "Lamp 3",
        "Lamp 4",
    ]
    # Lamp 2 follows after the deadline: the row says so, and how late.
    await send(publish, f"devices/{lamps[1].id}/meta", meta("dim", 40))
    await browser.wait_for("Lamp 2: followed", timeout=5)

    async def late() -> ActionAttempt:
        return await ActionAttempt.objects.aget(id=attempt.id)

    await until(lambda: True)
    for _ in range(100):
        row = await late()
        if row.confirmed_count == 1:
            break
        await asyncio.sleep(0.05)
    assert row.confirmation == Confirmation.PARTLY and row.confirmed_count == 1
    [entry] = row.confirmation_detail["late"]
    assert entry["name"] == "Lamp 2" and entry["late"] >= 0
    assert "Lamp 2" not in json.dumps(row.confirmation_detail["missing"])


@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
async def test_a_worker_taking_the_building_over_follows_on(hq, people, office, publish):
    bridge, watcher, _, lamps = office
    attempt = await dim_office(hq, people, bridge)
    await received(watcher, 1)
    # Another worker takes the building: it loads the pending confirmation from the audit row.
    building = bridge.buildings[hq[Scope.BUILDING]]
    building.confirmations.drop(attempt.id)
    from dashboard.live.load import load_confirmations

    [loaded] = await sync_to_async(load_confirmations)(hq[Scope.BUILDING])
    assert loaded.attempt_id == attempt.id and len(loaded.names) == 4
    building.take_confirmations([loaded])
    for lamp in lamps:
        await send(publish, f"devices/{lamp.id}/meta", meta("dim", 40))
    assert (await settled(attempt.id)).confirmation == Confirmation.CONFIRMED


def three_spaces(hq: dict[str, Any]) -> list[Device]:
    """The Open Office's Lamp 1, and a Lounge and a Studio with a lamp each."""
    lamp1 = Device.objects.get(id=hq[Scope.DEVICE])
    lamp1.product_type = "LED lamp"
    lamp1.save()
    lamps = [lamp1]
    for name in ("Lounge", "Studio"):
        space = Space.objects.create(building_id=hq[Scope.BUILDING], name=name)
        device = Device.objects.create(
            building_id=hq[Scope.BUILDING], space=space, name=f"{name} lamp", product_type="lamp"
        )
        device.spaces.add(space)
        lamps.append(device)
    return lamps


@pytest.fixture
async def three_rooms(hq, people, running_bridge, subscriber):
    """The three spaces' building bridged, a page on it, an operator signed in."""
    lamps = await sync_to_async(three_spaces)(hq)
    bridge = await running_bridge()
    building = hq[Scope.BUILDING]
    await until(lambda: len(bridge.buildings[building].inventory.devices) == 3, what="3 lamps")
    await subscribed(bridge, building)
    watcher = await sync_to_async(subscriber)("spaces/+/actions")
    browser = await Browser(building).join()
    client = await as_user(people.operator)
    return lamps, bridge, building, watcher, browser, client


@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
async def test_all_spaces_report_each_space_and_the_total_when_one_lamp_does_not_follow(
    three_rooms, publish, settings
):
    settings.ACTION_CONFIRM_GRACE_SECONDS = 1.5
    lamps, bridge, building, watcher, browser, client = three_rooms
    url = f"/buildings/{building}/actions/"
    data = form("all", action="dim", level=40, transition_time=0)

    asked = (await client.post(url, data)).content.decode()
    assert "to every space of the building: 3 spaces (3 lamps)" in asked
    await quiet(bridge)
    sent = (await client.post(url, {**data, "all-confirm": "on"})).content.decode()
    assert "Confirmed in 0 of 3 spaces so far" in sent
    assert sent.count("sent: the broker acknowledged it") == 3  # a card per space
    await received(watcher, 3)
    for lamp in lamps[:2]:  # the Studio's lamp never follows
        await send(publish, f"devices/{lamp.id}/meta", meta("dim", 40))

    total = await browser.wait_for("confirmed in 2 of 3 spaces", timeout=10)
    assert "1 not confirmed" in total and "Studio: not confirmed" in total
    # Each space has its own outcome too.
    await browser.wait_for("Dim Studio to 40 %")
    studio = await browser.wait_for("not confirmed: 0 of 1 lamp")
    assert "Studio lamp: no report since the action" in studio
    await browser.wait_for("confirmed: 1 of 1 lamp")  # the Lounge's and the Open Office's
    rows = await attempts()
    states = {r.target_name: (await settled(r.id)).confirmation for r in rows}
    assert states == {
        "Lounge": Confirmation.CONFIRMED,
        "Open Office": Confirmation.CONFIRMED,
        "Studio": Confirmation.NOT_CONFIRMED,
    }

    # The Activity page says it on each of the three rows.
    await quiet(bridge)
    page = (await client.get(f"/buildings/{building}/activity/")).content.decode()
    assert page.count("One of 3 spaces sent at once") == 3
    assert page.count("confirmed in 2 of 3 spaces") == 3
    # A reload of the building page shows the operator the total again, with the id that
    # keeps it live.
    page = (await client.get(f"/buildings/{building}/")).content.decode()
    shown = page.split('class="last-batch"', 1)[1].split("</div></div>", 1)[0]
    assert "Your last action on several spaces" in shown
    assert f'id="batch-{rows[0].batch.hex}"' in shown and "confirmed in 2 of 3 spaces" in shown
    # Another operator's page does not call it theirs.
    other = await sync_to_async(User.objects.create_user)("otto", password=PASSWORD)
    await Role.objects.acreate(user=other, building_id=building, role=Role.OPERATOR)
    page = (await (await as_user(other)).get(f"/buildings/{building}/")).content.decode()
    assert "Lighting controls" in page and "last-batch" not in page


@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
async def test_a_worker_taking_over_mid_batch_keeps_the_total_over_every_space_live(
    three_rooms, publish, settings
):
    settings.ACTION_CONFIRM_GRACE_SECONDS = 4
    lamps, bridge, building, watcher, browser, client = three_rooms
    await quiet(bridge)
    data = {**form("all", action="dim", level=40, transition_time=0), "all-confirm": "on"}
    sent = (await client.post(f"/buildings/{building}/actions/", data)).content.decode()
    assert "Confirmed in 0 of 3 spaces so far" in sent
    await received(watcher, 3)
    # The Open Office's lamp follows while the first worker holds the building.
    await send(publish, f"devices/{lamps[0].id}/meta", meta("dim", 40))
    await browser.wait_for("Confirmed in 1 of 3 spaces so far")
    await quiet(bridge)

    # That worker goes; another takes the building over, from the database alone.
    await bridge._stop_building(building)
    await bridge.sync_inventory()
    assert bridge.buildings[building].state.attempts == {}  # nothing carried over in memory
    await subscribed(bridge, building)
    # The Lounge's lamp follows: the total counts the Open Office confirmed before.
    await send(publish, f"devices/{lamps[1].id}/meta", meta("dim", 40))
    await browser.wait_for("Confirmed in 2 of 3 spaces so far")
    total = await browser.wait_for("confirmed in 2 of 3 spaces", timeout=10)
    assert "1 not confirmed" in total and "Studio: not confirmed" in total


@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
async def test_an_action_on_five_hundred_spaces_is_confirmed_in_every_one(
    hq, people, running_bridge, publish, settings, monkeypatch
):

    settings.ACTION_CONFIRM_GRACE_SECONDS = 120  # the total settles when the last lamp follows
    lamps = await sync_to_async(spaces_with_a_lamp)(hq, 499)  # and the Open Office's Lamp 1
    bridge = await running_bridge()
    building = hq[Scope.BUILDING]
    await until(lambda: len(bridge.buildings[building].inventory.spaces) == 500, 20, "spaces")
    await subscribed(bridge, building)
    browser = await Browser(building).join()
    client = await as_user(people.operator)
    await quiet(bridge)
    data = {**form("all", action="dim", level=40, transition_time=0), "all-confirm": "on"}
    response = await client.post(f"/buildings/{building}/actions/", data)
    assert "Confirmed in 0 of 500 spaces so far" in response.content.decode()
    for lamp in lamps:
        await send(publish, f"devices/{lamp}/meta", meta("dim", 40))
    # Every space counts, the last ones too (the bridge keeps a few hundred attempt cards).
    await browser.wait_for("confirmed in 500 of 500 spaces", timeout=60)
    # Memory stays bounded: a few hundred attempt cards; the total, one entry per space.
    state = bridge.buildings[building].state
    assert len(state.attempts) <= KEPT_ATTEMPTS
    [total] = state.batches.values()
    assert total.size == 500 and len(total.spaces) == 500
    await quiet(bridge)
    rows = await attempts()
    assert len(rows) == 500 and {r.confirmation for r in rows} == {Confirmation.CONFIRMED}

    # Later batches: the older ones' entries are kept up to the bound, the newest whole.
    monkeypatch.setattr(building_module, "KEPT_BATCH_SPACES", 600)
    running = bridge.buildings[building]
    later = [uuid.uuid4(), uuid.uuid4()]
    for n, batch in enumerate(later):
        spaces = {-1 - n * 1000 - k: (None, "") for k in range(200)}
        running.take_batches({batch: BatchTotal(200, spaces)})
    assert list(state.batches) == later  # 500 + 200 older entries were past 600: the first went


def spaces_with_a_lamp(hq: dict[str, Any], count: int) -> list[uuid.UUID]:
    """``count`` more spaces of a lamp each, beside the Open Office and its Lamp 1: every lamp."""
    lamp1 = Device.objects.get(id=hq[Scope.DEVICE])
    lamp1.product_type = "LED lamp"
    lamp1.save()
    building = hq[Scope.BUILDING]
    spaces = Space.objects.bulk_create(
        Space(building_id=building, name=f"Room {n:03}") for n in range(count)
    )
    devices = Device.objects.bulk_create(
        Device(building_id=building, space=s, name=f"{s.name} lamp", product_type="lamp")
        for s in spaces
    )
    members = Device.spaces.through
    members.objects.bulk_create(members(device_id=d.id, space_id=d.space_id) for d in devices)
    return [lamp1.id, *(d.id for d in devices)]
