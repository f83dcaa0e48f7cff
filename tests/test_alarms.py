"""Fault alarms: the list and its filters, and people acknowledging and clearing them.

The views that change alarms are async, so these tests use the AsyncClient and real
transactions. The bridge's side of ``layer.alarms_changed`` is tested with the bridge; here
a recorder stands in for it.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient, Client
from django.urls import reverse
from django.utils import timezone

from dashboard.contract.topics import Scope
from dashboard.live import layer
from dashboard.models import AlarmEvent, Building, Device, FaultAlarm, Space
from tests import seed

pytestmark = pytest.mark.django_db(transaction=True)

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"
ROW = re.compile(r'<tr id="alarm-(\d+)"')


def make_alarm(
    building: uuid.UUID,
    device: uuid.UUID | None = None,
    *,
    type: str = "high_temperature",
    level: str = "info",
    priority: int = 255,
    state: str = FaultAlarm.OPEN,
    count: int = 1,
    minutes_ago: int = 0,
    description: str = "Temperature is above 90°F.",
    notes: str = "Additional notes",
) -> FaultAlarm:
    """An alarm as the bridge writes it (the seed's device fault alarm by default)."""
    last_seen = timezone.now() - timedelta(minutes=minutes_ago)
    return FaultAlarm.objects.create(
        building_id=building,
        device_id=device,
        type=type,
        level=level,
        priority=priority,
        description=description,
        notes=notes,
        payload=seed.DEVICE_FAULT_ALARM,
        state=state,
        count=count,
        first_seen=last_seen - timedelta(hours=1),
        last_seen=last_seen,
    )


async def as_user(user: Any, **defaults: Any) -> AsyncClient:
    client = AsyncClient(**defaults)
    await client.aforce_login(user)
    return client


def list_url(building: uuid.UUID) -> str:
    return reverse("alarms", args=[building])


def ack_url(alarm: FaultAlarm) -> str:
    return reverse("alarm_acknowledge", args=[alarm.building_id, alarm.id])


def clear_url(alarm: FaultAlarm) -> str:
    return reverse("alarm_clear", args=[alarm.building_id, alarm.id])


def bulk_url(building: uuid.UUID) -> str:
    return reverse("alarm_acknowledge_many", args=[building])


async def page(client: AsyncClient, building: uuid.UUID, **params: str) -> str:
    response = await client.get(list_url(building), params)
    assert response.status_code == 200
    return response.content.decode()


def rows(html: str) -> list[int]:
    """Ids of the alarms on the page, in their order."""
    return [int(n) for n in ROW.findall(html)]


def row_of(html: str, alarm: FaultAlarm) -> str:
    return re.search(rf'<tr id="alarm-{alarm.id}".*?</tr>', html, re.S).group(0)


async def fresh(alarm: FaultAlarm) -> FaultAlarm:
    return await FaultAlarm.objects.select_related("acknowledged_by", "cleared_by").aget(
        id=alarm.id
    )


async def events(alarm: FaultAlarm) -> list[AlarmEvent]:
    return [e async for e in AlarmEvent.objects.filter(alarm=alarm).order_by("at", "id")]


@pytest.fixture
def bridge_told(monkeypatch) -> list[tuple[str, list[dict[str, Any]]]]:
    """Every ``layer.alarms_changed`` call, recorded instead of sent to the channel layer."""
    calls: list[tuple[str, list[dict[str, Any]]]] = []

    async def record(building_id: uuid.UUID | str, changes: list[dict[str, Any]]) -> None:
        calls.append((str(building_id), changes))

    monkeypatch.setattr(layer, "alarms_changed", record)
    return calls


@pytest.fixture
def hot(hq) -> FaultAlarm:
    """The seed's fault alarm on Lamp 1, seen three times."""
    return make_alarm(hq[Scope.BUILDING], hq[Scope.DEVICE], count=3)


# --- the list ----------------------------------------------------------------------------


async def test_the_list_shows_each_alarm_with_its_level_and_priority_in_words(hq, people, hot):
    building = hq[Scope.BUILDING]
    whole = await sync_to_async(make_alarm)(
        building, type="fire_panel", level="critical", priority=10, minutes_ago=5
    )
    html = await page(await as_user(people.viewer), building)

    assert "<h1>Fault alarms · Headquarters</h1>" in html
    assert f'href="{reverse("building", args=[building])}"' in html
    assert rows(html) == [hot.id, whole.id]  # most recently seen first
    row = row_of(html, hot)
    assert "level-info" in row and "severity-low" in row
    assert '<strong class="level">INFO</strong>' in row
    assert '<span class="priority">priority 255</span>' in row
    assert "high_temperature" in row and "Temperature is above 90°F." in row
    assert "Additional notes" in row and "Lamp 1" in row and "\u00d73" in row
    assert f'<time datetime="{timezone.localtime(hot.last_seen).isoformat()}"' in row
    assert "Open" in row and "Not handled yet" in row
    row = row_of(html, whole)
    assert '<strong class="level">CRITICAL</strong>' in row and "severity-high" in row
    assert "priority 10" in row and '<td class="source">Building</td>' in row
    # A viewer looks, and is offered nothing to do.
    assert "/acknowledge/" not in html and "/clear/" not in html and 'type="checkbox"' not in html
    assert (
        ">Acknowledge<" not in html and ">Clear<" not in html and "Acknowledge selected" not in html
    )


async def test_operators_and_support_get_the_forms_with_labels(hq, people, hot):
    building = hq[Scope.BUILDING]
    acknowledged = await sync_to_async(make_alarm)(
        building, type="low_battery", state=FaultAlarm.ACKNOWLEDGED
    )
    for person in (people.operator, people.support):
        html = await page(await as_user(person), building, state="any")
        assert 'name="csrfmiddlewaretoken"' in html
        row = row_of(html, hot)
        assert f'action="{ack_url(hot)}"' in row and f'action="{clear_url(hot)}"' in row
        assert f'<label for="ack-note-{hot.id}">Note' in row
        assert f'<label for="clear-note-{hot.id}">Note' in row
        assert 'aria-label="Select high_temperature on Lamp 1"' in row
        assert 'form="bulk-acknowledge"' in row
        row = row_of(html, acknowledged)
        assert f'action="{ack_url(acknowledged)}"' not in row  # acknowledged already
        assert f'action="{clear_url(acknowledged)}"' in row
        assert 'type="checkbox"' not in row
        assert f'action="{bulk_url(building)}"' in html and "Acknowledge selected" in html
        for field_id in re.findall(r'<(?:input|select)[^>]* id="([^"]+)"', html):
            assert f'<label for="{field_id}">' in html


async def test_the_list_is_for_people_of_the_building(hq, people, hot):
    building = hq[Scope.BUILDING]
    response = await AsyncClient().get(list_url(building))
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert (await (await as_user(people.outsider)).get(list_url(building))).status_code == 403
    unknown = uuid.UUID("00000000-0000-4000-8000-000000000000")
    assert (await (await as_user(people.viewer)).get(list_url(unknown))).status_code == 404


@pytest.fixture
def assorted(hq) -> dict[str, FaultAlarm]:
    """Alarms across levels, states, devices and spaces of Headquarters."""
    building, space, lamp = hq[Scope.BUILDING], hq[Scope.SPACE], hq[Scope.DEVICE]
    kitchen = Space.objects.create(building_id=building, name="Kitchen")
    kettle = Device.objects.create(building_id=building, space=kitchen, name="Kettle")
    loose = Device.objects.create(building_id=building, name="Roof sensor")  # in no space
    return {
        "lamp_info": make_alarm(building, lamp, level="info", minutes_ago=1),
        "lamp_warning": make_alarm(
            building, lamp, type="flicker", level="warning", state=FaultAlarm.ACKNOWLEDGED
        ),
        "kettle_critical": make_alarm(building, kettle.id, level="critical", minutes_ago=2),
        "kettle_cleared": make_alarm(
            building, kettle.id, type="boil_dry", level="info", state=FaultAlarm.CLEARED
        ),
        "roof_warning": make_alarm(building, loose.id, level="warning", minutes_ago=3),
        "building_info": make_alarm(building, type="door_forced", minutes_ago=4),
        "space": space,
        "kitchen": kitchen,
        "kettle": kettle,
    }


async def test_each_filter_narrows_the_rows_exactly(hq, people, assorted):
    building = hq[Scope.BUILDING]
    a = assorted
    client = await as_user(people.viewer)

    async def shown(**params: str) -> set[int]:
        html = await page(client, building, **params)
        assert "Ignored" not in html
        return set(rows(html))

    def ids(*names: str) -> set[int]:
        return {a[name].id for name in names}

    active = ids("lamp_info", "lamp_warning", "kettle_critical", "roof_warning", "building_info")
    assert await shown() == active  # open or acknowledged by default
    assert await shown(state="active") == active
    assert await shown(state="open") == active - ids("lamp_warning")
    assert await shown(state="acknowledged") == ids("lamp_warning")
    assert await shown(state="cleared") == ids("kettle_cleared")
    assert await shown(state="any") == active | ids("kettle_cleared")
    assert await shown(level="warning") == ids("lamp_warning", "roof_warning")
    assert await shown(level="info", state="any") == ids(
        "lamp_info", "kettle_cleared", "building_info"
    )
    assert await shown(device=str(hq[Scope.DEVICE])) == ids("lamp_info", "lamp_warning")
    assert await shown(device=str(a["kettle"].id), state="any") == ids(
        "kettle_critical", "kettle_cleared"
    )
    assert await shown(device="building") == ids("building_info")
    assert await shown(space=str(a["space"])) == ids("lamp_info", "lamp_warning")
    assert await shown(space=str(a["kitchen"].id)) == ids("kettle_critical")
    assert await shown(space=str(a["kitchen"].id), level="info", state="any") == ids(
        "kettle_cleared"
    )
    html = await page(client, building, level="warning")
    assert '<option value="warning" selected>warning</option>' in html
    assert '<option value="critical">critical</option>' in html
    assert ">Kettle</option>" in html and ">Building (no device)</option>" in html
    assert ">Kitchen</option>" in html and ">Open Office</option>" in html


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"level": "nonexistent"}, "Ignored “Level”"),
        ({"state": "exploded"}, "Ignored “State”"),
        ({"device": "not-a-uuid"}, "Ignored “Device”"),
        ({"device": str(uuid.uuid4())}, "Ignored “Device”"),
        ({"space": "'; DROP TABLE x; --"}, "Ignored “Space”"),
        ({"space": str(uuid.uuid4())}, "Ignored “Space”"),
        ({"page": "-1"}, None),
        ({"page": "x" * 5000}, None),
    ],
)
async def test_bad_filter_values_are_ignored_with_a_message(hq, people, assorted, params, problem):
    building = hq[Scope.BUILDING]
    client = await as_user(people.viewer)
    html = await page(client, building, **params)
    default = await page(client, building)
    assert set(rows(html)) == set(rows(default))
    if problem:
        assert problem in html


async def test_a_filter_naming_another_buildings_device_or_space_is_ignored(hq, people, assorted):
    building = hq[Scope.BUILDING]
    elsewhere = await Building.objects.aget(name="Elsewhere")
    space = await Space.objects.acreate(building=elsewhere, name="Their space")
    device = await Device.objects.acreate(building=elsewhere, space=space, name="Their lamp")
    client = await as_user(people.viewer)
    html = await page(client, building, device=str(device.id), space=str(space.id))
    assert "Ignored “Device”" in html and "Ignored “Space”" in html
    assert "Their lamp" not in html and "Their space" not in html
    assert len(rows(html)) == 5


# --- acknowledging and clearing ----------------------------------------------------------


async def test_an_operator_acknowledges_with_a_note(hq, people, hot, bridge_told):
    building = hq[Scope.BUILDING]
    client = await as_user(people.operator)
    before = timezone.now()
    next_url = f"{list_url(building)}?level=info"
    response = await client.post(
        ack_url(hot), {"note": "  Facilities are on their way.  ", "next": next_url}
    )

    assert response.status_code == 303 and response["Location"] == next_url
    alarm = await fresh(hot)
    assert alarm.state == FaultAlarm.ACKNOWLEDGED
    assert alarm.acknowledged_by == people.operator
    assert before <= alarm.acknowledged_at <= timezone.now()
    assert alarm.cleared_by is None and alarm.cleared_at is None
    [event] = await events(hot)
    assert event.kind == AlarmEvent.ACKNOWLEDGED
    assert event.user_id == people.operator.id and event.username == "olivia"
    assert event.note == "Facilities are on their way."
    assert event.at == alarm.acknowledged_at
    assert bridge_told == [
        (
            str(building),
            [
                {
                    "device": str(hq[Scope.DEVICE]),
                    "type": "high_temperature",
                    "state": "acknowledged",
                }
            ],
        )
    ]
    html = await page(client, building)
    assert "Acknowledged 1 alarm." in html
    row = row_of(html, hot)
    assert "Acknowledged by olivia at <time" in row and "Facilities are on their way." in row
    assert f'action="{ack_url(hot)}"' not in row and f'action="{clear_url(hot)}"' in row


async def test_support_clears_and_the_history_keeps_both_steps(hq, people, hot, bridge_told):
    building = hq[Scope.BUILDING]
    operator, support = await as_user(people.operator), await as_user(people.support)
    await operator.post(ack_url(hot), {"note": "Looking into it"})
    response = await support.post(clear_url(hot), {"note": "Replaced the driver"})

    assert response.status_code == 303 and response["Location"] == list_url(building)
    alarm = await fresh(hot)
    assert alarm.state == FaultAlarm.CLEARED
    assert alarm.cleared_by == people.support and alarm.cleared_at is not None
    assert alarm.acknowledged_by == people.operator  # the earlier step stays on record
    assert [(e.kind, e.username, e.note) for e in await events(hot)] == [
        ("acknowledged", "olivia", "Looking into it"),
        ("cleared", "sam", "Replaced the driver"),
    ]
    assert [changes[0]["state"] for _, changes in bridge_told] == ["acknowledged", "cleared"]

    # Gone from the default list (open or acknowledged), there with its history when cleared.
    html = await page(support, building)
    assert "Cleared 1 alarm." in html
    assert hot.id not in rows(html)
    html = await page(support, building, state="cleared")
    assert rows(html) == [hot.id]
    row = row_of(html, hot)
    assert "Cleared by sam at <time" in row and "Replaced the driver" in row
    assert "Acknowledged by olivia at <time" in row and "Looking into it" in row
    history = re.search(r'<details class="history">.*?</details>', row, re.S).group(0)
    assert "History (2)" in history
    assert history.index("Acknowledged by olivia") < history.index("Cleared by sam")
    assert "Acknowledge" not in row.replace("Acknowledged", "")  # nothing left to do
    assert f'action="{clear_url(hot)}"' not in row


async def test_an_open_alarm_may_be_cleared_without_acknowledging_first(hq, people, hot):
    # No recorder here: the message really goes to the (in-memory) channel layer.
    client = await as_user(people.operator)
    await client.post(clear_url(hot), {})
    alarm = await fresh(hot)
    assert alarm.state == FaultAlarm.CLEARED and alarm.acknowledged_at is None
    [event] = await events(hot)
    assert event.kind == AlarmEvent.CLEARED and event.note == ""
    html = await page(client, hq[Scope.BUILDING], state="cleared")
    assert "Cleared 1 alarm." in html and "live pages" not in html


async def test_a_change_stays_saved_when_the_bridge_cannot_be_told(hq, people, hot, monkeypatch):
    async def broken(building_id: Any, changes: Any) -> None:
        raise ConnectionError("channel layer down")

    monkeypatch.setattr(layer, "alarms_changed", broken)
    client = await as_user(people.operator)
    response = await client.post(ack_url(hot), {})
    assert response.status_code == 303
    assert (await fresh(hot)).state == FaultAlarm.ACKNOWLEDGED
    assert len(await events(hot)) == 1
    html = await page(client, hq[Scope.BUILDING])
    assert "Acknowledged 1 alarm." in html
    assert "Saved, but live pages may show the old state until they reload." in html


async def test_viewers_and_outsiders_are_refused_and_nothing_changes(hq, people, hot, bridge_told):
    building = hq[Scope.BUILDING]
    for person in (people.viewer, people.outsider):
        client = await as_user(person)
        for url, data in (
            (ack_url(hot), {"note": "mine"}),
            (clear_url(hot), {"note": "mine"}),
            (bulk_url(building), {"alarm": [hot.id]}),
        ):
            response = await client.post(url, data)
            assert response.status_code == 403, (person, url)
    alarm = await fresh(hot)
    assert alarm.state == FaultAlarm.OPEN
    assert alarm.acknowledged_by is None and alarm.cleared_by is None
    assert await events(hot) == []
    assert bridge_told == []


async def test_anonymous_posts_go_to_the_login_and_gets_are_not_allowed(
    hq, people, hot, bridge_told
):
    response = await AsyncClient().post(ack_url(hot), {})
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    client = await as_user(people.operator)
    assert (await client.get(ack_url(hot))).status_code == 405
    assert (await client.get(bulk_url(hq[Scope.BUILDING]))).status_code == 405
    assert (await fresh(hot)).state == FaultAlarm.OPEN and bridge_told == []


async def test_forms_need_the_csrf_token(hq, people, hot):
    client = await as_user(people.operator, enforce_csrf_checks=True)
    assert (await client.post(ack_url(hot), {})).status_code == 403
    assert (await fresh(hot)).state == FaultAlarm.OPEN


async def test_an_alarm_of_another_building_is_not_found_here(hq, people, hot, bridge_told):
    elsewhere = await Building.objects.aget(name="Elsewhere")
    theirs = await sync_to_async(make_alarm)(elsewhere.id)
    client = await as_user(people.operator)
    building = hq[Scope.BUILDING]
    for url in (
        reverse("alarm_acknowledge", args=[building, theirs.id]),
        reverse("alarm_clear", args=[building, theirs.id]),
        reverse("alarm_acknowledge", args=[building, 10**30]),  # no database holds this id
    ):
        assert (await client.post(url, {})).status_code == 404
    unknown = uuid.UUID("00000000-0000-4000-8000-000000000000")
    assert (await client.post(bulk_url(unknown), {"alarm": [hot.id]})).status_code == 404
    response = await client.post(bulk_url(building), {"alarm": [theirs.id, "x", str(10**30)]})
    assert response.status_code == 303
    assert (await fresh(theirs)).state == FaultAlarm.OPEN
    assert bridge_told == []
    assert "Ignored 3 selected entries" in await page(client, building)


async def test_acknowledging_twice_is_a_no_op_with_a_message(hq, people, hot, bridge_told):
    building = hq[Scope.BUILDING]
    client = await as_user(people.operator)
    await client.post(ack_url(hot), {"note": "first"})
    response = await client.post(ack_url(hot), {"note": "second"})
    assert response.status_code == 303
    assert "Nothing to do: that alarm is already acknowledged." in await page(client, building)
    await client.post(clear_url(hot), {})
    await client.post(ack_url(hot), {})
    await client.post(clear_url(hot), {})
    assert "Nothing to do: that alarm is already cleared." in await page(client, building)
    assert [e.kind for e in await events(hot)] == ["acknowledged", "cleared"]
    assert [changes[0]["state"] for _, changes in bridge_told] == ["acknowledged", "cleared"]
    assert (await fresh(hot)).state == FaultAlarm.CLEARED


async def test_bulk_acknowledge_takes_exactly_the_selected_alarms(hq, people, bridge_told):
    building, lamp = hq[Scope.BUILDING], hq[Scope.DEVICE]

    def five() -> list[FaultAlarm]:
        return [
            make_alarm(building, lamp, type="high_temperature"),
            make_alarm(building, lamp, type="flicker"),
            make_alarm(building, type="door_forced"),
            make_alarm(building, lamp, type="low_battery"),
            make_alarm(building, type="fire_panel"),
        ]

    alarms = await sync_to_async(five)()
    chosen, left = alarms[:3], alarms[3:]
    client = await as_user(people.support)
    response = await client.post(
        bulk_url(building),
        {"alarm": [a.id for a in chosen] + [chosen[0].id], "note": "Shift handover"},
    )

    assert response.status_code == 303
    for alarm in chosen:
        alarm = await fresh(alarm)
        assert alarm.state == FaultAlarm.ACKNOWLEDGED
        assert alarm.acknowledged_by == people.support and alarm.acknowledged_at is not None
        [event] = await events(alarm)
        assert (event.kind, event.username, event.note) == ("acknowledged", "sam", "Shift handover")
    for alarm in left:
        assert (await fresh(alarm)).state == FaultAlarm.OPEN
        assert await events(alarm) == []
    [(told_building, changes)] = bridge_told
    assert told_building == str(building)
    assert sorted(changes, key=lambda c: c["type"]) == [
        {"device": None, "type": "door_forced", "state": "acknowledged"},
        {"device": str(lamp), "type": "flicker", "state": "acknowledged"},
        {"device": str(lamp), "type": "high_temperature", "state": "acknowledged"},
    ]
    html = await page(client, building)
    assert "Acknowledged 3 alarms." in html

    # Again, with one more: only the new one moves; the others are reported, not errors.
    await client.post(bulk_url(building), {"alarm": [a.id for a in alarms[:4]]})
    assert (await fresh(alarms[3])).state == FaultAlarm.ACKNOWLEDGED
    assert (await fresh(alarms[4])).state == FaultAlarm.OPEN
    html = await page(client, building)
    assert "Acknowledged 1 alarm." in html and "3 alarms were already acknowledged" in html
    assert len(bridge_told) == 2 and len(bridge_told[1][1]) == 1


async def test_bulk_acknowledge_with_nothing_selected_changes_nothing(hq, people, hot, bridge_told):
    building = hq[Scope.BUILDING]
    client = await as_user(people.operator)
    response = await client.post(bulk_url(building), {"note": "oops"})
    assert response.status_code == 303
    assert "select at least one alarm" in await page(client, building)
    assert (await fresh(hot)).state == FaultAlarm.OPEN and bridge_told == []


async def test_a_note_that_is_too_long_changes_nothing(hq, people, hot, bridge_told):
    client = await as_user(people.operator)
    response = await client.post(ack_url(hot), {"note": "x" * 2001})
    assert response.status_code == 303
    assert (await fresh(hot)).state == FaultAlarm.OPEN
    assert await events(hot) == [] and bridge_told == []
    html = await page(client, hq[Scope.BUILDING])
    assert "Nothing changed: the note is not valid." in html
    await client.post(ack_url(hot), {"note": "x" * 2000})  # the limit itself is fine
    [event] = await events(hot)
    assert len(event.note) == 2000


@pytest.mark.parametrize(
    "next_url",
    [
        "https://evil.example/phish",
        "//evil.example/phish",
        "/\\evil.example/phish",
        "http://testserver/buildings/",  # same host, but not a relative path
        "javascript:alert(1)",
        "buildings/relative",
        "",
    ],
)
async def test_next_pointing_off_site_is_ignored(hq, people, hot, bridge_told, next_url):
    client = await as_user(people.operator)
    response = await client.post(ack_url(hot), {"next": next_url})
    assert response.status_code == 303
    assert response["Location"] == list_url(hq[Scope.BUILDING])
    assert (await fresh(hot)).state == FaultAlarm.ACKNOWLEDGED


async def test_hostile_strings_in_every_field_render_as_text(hq, people, bridge_told):
    building = hq[Scope.BUILDING]

    def hostile() -> FaultAlarm:
        device = Device.objects.create(
            building_id=building, space_id=hq[Scope.SPACE], name=f"Lamp {IMG}"
        )
        return make_alarm(
            building,
            device.id,
            type=f"t{SCRIPT}",
            level=SCRIPT,
            description=f"d{IMG}",
            notes=f"n{SCRIPT}",
        )

    alarm = await sync_to_async(hostile)()
    client = await as_user(people.operator)
    await client.post(ack_url(alarm), {"note": f"ack {IMG}"})
    await client.post(clear_url(alarm), {"note": f"clear {SCRIPT}"})
    for params in ({"state": "any"}, {"state": "cleared", "level": SCRIPT}):
        html = await page(client, building, **params)
        assert rows(html) == [alarm.id]
        lowered = html.lower()
        assert "<script" not in lowered  # the page has no script of its own either
        assert "<img" not in lowered
        assert "onerror=alert(1)>" not in lowered
        for text in ("t&lt;script&gt;alert(1)&lt;/script&gt;",
                     "&lt;SCRIPT&gt;ALERT(1)&lt;/SCRIPT&gt;",  # the level, as shown
                     "d&lt;img src=x onerror=alert(1)&gt;",
                     "n&lt;script&gt;alert(1)&lt;/script&gt;",
                     "Lamp &lt;img src=x onerror=alert(1)&gt;",
                     "ack &lt;img src=x onerror=alert(1)&gt;",
                     "clear &lt;script&gt;alert(1)&lt;/script&gt;"):  # fmt: skip
            assert text in html, text
    # The hostile level is a choice of the Level filter, and selected as text.
    assert '<option value="&lt;script&gt;alert(1)&lt;/script&gt;" selected>' in html
    assert bridge_told[0][1][0]["type"] == f"t{SCRIPT}"  # data for the bridge, not markup


def test_the_admin_shows_an_alarms_history_read_only(hq, people, hot):
    from django.contrib.auth.models import User

    AlarmEvent.objects.create(
        alarm=hot, kind=AlarmEvent.ACKNOWLEDGED, user=people.operator, username="olivia",
        note="On it",
    )  # fmt: skip
    admin = User.objects.create_superuser("root", password="x")
    client = Client()
    client.force_login(admin)
    html = client.get(f"/admin/dashboard/faultalarm/{hot.id}/change/").content.decode()
    assert "On it" in html and "olivia" in html
    assert 'name="events-0-note"' not in html  # shown, not editable
