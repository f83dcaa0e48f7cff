"""Operators of a building with many spaces act on the ones they pick: find them by name or
floor, choose several, confirm, and each space gets its action; through a real broker."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from asgiref.sync import sync_to_async
from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from django.contrib.auth.models import User
from django.test import Client

from dashboard import dispatch
from dashboard.contract.topics import Scope
from dashboard.live.confirmation import Confirmation
from dashboard.models import ActionAttempt, Device, Role, Space
from tests.bridging import send, subscribed
from tests.factories import make_tower
from tests.test_actions import as_user, attempts, form, received
from tests.test_confirmation import meta

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def tower(people) -> uuid.UUID:
    """Tall Tower: 20 floors of 9 rooms (200 spaces); Olivia operates it, Victor views it."""
    building_id = make_tower()
    Role.objects.create(user=people.operator, building_id=building_id, role=Role.OPERATOR)
    Role.objects.create(user=people.viewer, building_id=building_id, role=Role.VIEWER)
    return building_id


def path(*names: str) -> str:
    """A space as the picker lists it: its floor, then its name."""
    return " \u203a ".join(names)


def boardroom(building_id: uuid.UUID, floor: int) -> Space:
    return Space.objects.get(
        building_id=building_id, parent__name=f"Level {floor}", name="Boardroom"
    )


def test_above_twelve_spaces_one_picker_replaces_the_forms_of_the_cards(tower, people):
    operator, viewer = Client(), Client()
    operator.force_login(people.operator)
    viewer.force_login(people.viewer)
    page = operator.get(f"/buildings/{tower}/").content.decode()
    assert Space.objects.filter(building_id=tower).count() == 200
    assert '<label for="picker-q">Find spaces</label>' in page
    assert 'aria-label="Action for the chosen spaces"' in page
    assert 'aria-label="Action for all spaces"' in page
    assert page.count('class="action-form') == 2  # no form per space card
    assert path("Level 1", "Boardroom") in page  # the first matches, before any search
    # A viewer sees no picker, and may not ask it for spaces.
    seen = viewer.get(f"/buildings/{tower}/").content.decode()
    assert "Find spaces" not in seen and "Lighting controls" not in seen
    assert viewer.get(f"/buildings/{tower}/actions/spaces/?pick_q=board").status_code == 403


def test_the_picker_finds_spaces_by_name_and_by_floor_and_keeps_the_chosen(tower, people):
    client = Client()
    client.force_login(people.operator)
    url = f"/buildings/{tower}/actions/spaces/"
    found = client.get(url, {"pick_q": "boardr"}).content.decode()
    assert "20 spaces match “boardr”" in found
    assert found.count('name="pick"') == 20 and path("Level 13", "Boardroom") in found
    floor = client.get(url, {"pick_q": "level 7"}).content.decode()
    assert "10 spaces match “level 7”" in floor  # the floor and its nine rooms
    assert path("Level 7", "Kitchen") in floor and "Level 17" not in floor
    chosen = boardroom(tower, 3).id.hex
    kept = client.get(url, {"pick_q": "kitchen", "pick": [chosen]}).content.decode()
    assert "Chosen: 1 space" in kept
    assert f'value="{chosen}" checked' in kept and path("Level 3", "Boardroom") in kept
    # Without JavaScript the Search button asks the building's page, which answers the same.
    page = client.get(f"/buildings/{tower}/", {"pick_q": "kitchen", "pick": [chosen]})
    assert "20 spaces match “kitchen”" in page.content.decode()


@pytest.mark.broker
async def test_three_chosen_spaces_are_confirmed_then_each_gets_its_action(
    tower, people, running_bridge, subscriber
):
    bridge = await running_bridge()
    await subscribed(bridge, tower)
    watcher = await sync_to_async(subscriber)("spaces/+/actions", "devices/+/actions")
    rooms = [await sync_to_async(boardroom)(tower, floor) for floor in (2, 5, 11)]
    client = await as_user(people.operator)
    url = f"/buildings/{tower}/actions/"
    data = {**form("spaces", action="dim", level=40), "pick": [r.id.hex for r in rooms]}

    asked = (await client.post(url, data)).content.decode()
    # Three Boardrooms of three lamps each.
    assert "Dim 3 spaces (9 lamps) to 40 %?" in asked
    assert "Yes, send to 3 spaces" in asked
    await asyncio.sleep(0.3)
    assert watcher.messages == [] and await attempts() == []

    done = (await client.post(url, {**data, "spaces-confirm": "on"})).content.decode()
    assert done.count("sent: the broker acknowledged it") == 3
    messages = await received(watcher, 3)
    await asyncio.sleep(0.3)  # anything more would have arrived by now
    assert len(watcher.messages) == 3
    assert sorted(topic for topic, _ in messages) == sorted(f"spaces/{r.id}/actions" for r in rooms)
    assert {p["value"]["level"] for _, p in messages} == {40}
    rows = await attempts()
    assert sorted(r.target_id for r in rows) == sorted(r.id for r in rooms)
    assert len({r.batch for r in rows}) == 1 and rows[0].batch is not None
    assert {r.lamp_count for r in rows} == {3}


@pytest.mark.broker
async def test_nothing_chosen_or_a_space_of_another_building_sends_nothing(
    tower, hq, people, running_bridge, subscriber
):
    bridge = await running_bridge()
    await subscribed(bridge, tower)
    watcher = await sync_to_async(subscriber)("spaces/+/actions")
    client = await as_user(people.operator)
    url = f"/buildings/{tower}/actions/"
    none = await client.post(url, {**form("spaces", action="off"), "spaces-confirm": "on"})
    assert none.status_code == 422 and "Choose at least one space." in none.content.decode()
    elsewhere = {**form("spaces", action="off"), "pick": [hq[Scope.SPACE].hex]}
    assert (await client.post(url, {**elsewhere, "spaces-confirm": "on"})).status_code == 404
    await asyncio.sleep(0.3)
    assert watcher.messages == []


def test_up_to_twelve_spaces_each_card_keeps_its_form_and_the_thirteenth_brings_the_picker(
    hq, people
):
    client = Client()
    client.force_login(people.operator)
    url = f"/buildings/{hq[Scope.BUILDING]}/"
    for n in range(2, 13):
        Space.objects.create(building_id=hq[Scope.BUILDING], name=f"Room {n}")
    page = client.get(url).content.decode()
    assert page.count('class="action-form') == 13 and "Find spaces" not in page
    Space.objects.create(building_id=hq[Scope.BUILDING], name="Room 13")
    page = client.get(url).content.decode()
    assert page.count('class="action-form') == 2 and "Find spaces" in page


def operator_of(building_id: uuid.UUID, username: str) -> User:
    user = User.objects.create_user(username, password="x")
    Role.objects.create(user=user, building_id=building_id, role=Role.OPERATOR)
    return user


async def decided(count: int, timeout: float) -> list[ActionAttempt]:
    """The audit rows once ``count`` of them are published and their confirmation decided."""
    rows: list[ActionAttempt] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        rows = [r for r in await attempts() if r.confirmation != Confirmation.PENDING]
        if len(rows) >= count:
            return rows
        await asyncio.sleep(0.2)
    raise AssertionError(f"{len(rows)} of {count} attempts decided")


@pytest.mark.broker
async def test_three_operators_send_to_all_two_hundred_spaces_at_once_and_every_one_is_published(
    tower, people, running_bridge, publish, settings
):
    """Each page's action goes to the bridge as one request, not one per space: three at once
    take three places in its channel (of 100), and none of the 600 is lost."""
    settings.ACTION_CONFIRM_GRACE_SECONDS = 60  # the lamps below confirm well before
    bridge = await running_bridge()
    await subscribed(bridge, tower)
    others = [await sync_to_async(operator_of)(tower, name) for name in ("oona", "otto")]
    pages = [await as_user(user) for user in (people.operator, *others)]
    url = f"/buildings/{tower}/actions/"

    def all_spaces() -> dict[str, str]:
        return {**form("all", action="dim", level=40, transition_time=0), "all-confirm": "on"}

    answers = await asyncio.gather(*(page.post(url, all_spaces()) for page in pages))
    for answer in answers:
        html = answer.content.decode()
        assert html.count("sent: the broker acknowledged it") == 200
        assert "no bridge answered" not in html
    rows = await attempts()
    assert len(rows) == 600 and len({r.batch for r in rows}) == 3
    assert {r.outcome for r in rows} <= {ActionAttempt.ACKNOWLEDGED, ActionAttempt.SEEN}

    # Every lamp of the tower follows: the spaces with lamps are confirmed, in all three.
    await bridge.history.flush()
    lamps = [d async for d in Device.objects.filter(building_id=tower).values_list("id", flat=True)]
    for lamp in lamps:
        await send(publish, f"devices/{lamp}/meta", meta("dim", 40))
    rows = await decided(600, timeout=60)
    lit = [r for r in rows if r.lamp_count]
    assert len(lit) == 3 * 180  # the rooms; a floor has no lamp of its own to follow
    assert {r.confirmation for r in lit} == {Confirmation.CONFIRMED}


@pytest.mark.broker
async def test_a_bridge_with_a_full_channel_fails_every_space_clearly_and_publishes_none(
    tower, people, running_bridge, subscriber, settings
):
    """A full channel drops a request without a word: the view's wait ends, and each space's
    attempt says the bridge did not answer, in the form and the audit; nothing goes out later."""
    settings.ACTION_PUBACK_TIMEOUT_SECONDS = 0.5
    bridge = await running_bridge()
    await subscribed(bridge, tower)
    watcher = await sync_to_async(subscriber)("spaces/+/actions")
    # The bridge busy with one request while its channel fills up (100 by default).
    busy = asyncio.Event()
    handle = bridge.inbox._handle

    async def slow(message: dict) -> None:
        await busy.wait()
        handle(message)

    bridge.inbox._handle = slow
    channels = get_channel_layer()
    junk = {"type": "alarm.update", "building": str(tower), "changes": []}
    with pytest.raises(ChannelFull):
        for _ in range(1000):
            await channels.send(bridge.inbox.channel, junk)
    client = await as_user(people.operator)
    data = {**form("all", action="off"), "all-confirm": "on"}
    html = (await client.post(f"/buildings/{tower}/actions/", data)).content.decode()
    assert html.count("no bridge answered for this building within 2.5 s") == 200
    rows = await attempts()
    assert len(rows) == 200 and {r.outcome for r in rows} == {ActionAttempt.FAILED}
    assert {r.confirmation for r in rows} == {Confirmation.NONE}  # nothing to wait for
    assert all("no bridge answered" in r.reason for r in rows)
    busy.set()
    await asyncio.sleep(0.5)
    assert watcher.messages == []


async def test_without_a_bridge_a_big_action_fails_in_one_timeout_not_one_per_request(
    tower, people, settings, monkeypatch
):
    settings.ACTION_PUBACK_TIMEOUT_SECONDS = 0.2
    monkeypatch.setattr(dispatch, "PER_REQUEST", 50)  # 200 spaces: four requests
    client = await as_user(people.operator)
    data = {**form("all", action="on"), "all-confirm": "on"}
    started = asyncio.get_running_loop().time()
    html = (await client.post(f"/buildings/{tower}/actions/", data)).content.decode()
    assert asyncio.get_running_loop().time() - started < 2.2 + 2  # one wait (0.2 s + 2 s)
    assert html.count("no bridge answered for this building") == 200
    rows = await attempts()
    assert len(rows) == 200 and {r.outcome for r in rows} == {ActionAttempt.FAILED}
