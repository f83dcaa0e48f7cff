"""Operators switch lights from the browser: exact payloads, refusals, audit, through a real broker."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from datetime import UTC, datetime
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient, Client

from dashboard.contract.topics import Kind, Scope, build_topic
from dashboard.live.state import ActionRecord
from dashboard.models import ActionAttempt, Space
from tests.bridging import send, subscribed, until

pytestmark = [pytest.mark.broker, pytest.mark.django_db(transaction=True)]

CREATED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def form(target: str, *, key: str | None = None, **values: Any) -> dict[str, Any]:
    """What the browser posts for one target's action form."""
    prefix = target.replace(":", "-")
    data = {
        f"{prefix}-target": target,
        f"{prefix}-idempotency_key": key or secrets.token_urlsafe(12),
        f"{prefix}-transition_time": 5,
    }
    data.update({f"{prefix}-{name}": value for name, value in values.items()})
    return data


async def as_user(user: Any) -> AsyncClient:
    client = AsyncClient(HTTP_HX_REQUEST="true")
    await client.aforce_login(user)
    return client


async def attempts(**filters: Any) -> list[ActionAttempt]:
    return [a async for a in ActionAttempt.objects.filter(**filters).order_by("id")]


@pytest.fixture
async def ready(hq, people, running_bridge, subscriber):
    """Headquarters' bridge subscribed, and a subscriber on every action topic."""
    bridge = await running_bridge()
    await subscribed(bridge, hq[Scope.BUILDING])
    watcher = await sync_to_async(subscriber)("spaces/+/actions", "devices/+/actions")
    return bridge, watcher


async def received(watcher, count: int, timeout: float = 5) -> list[tuple[str, dict]]:
    await until(lambda: len(watcher.messages) >= count, timeout, f"{count} publishes")
    return [(m.topic, json.loads(m.payload)) for m in watcher.messages]


@pytest.mark.parametrize(
    ("values", "value"),
    [
        ({"action": "off"}, {"transition_time": 5}),
        ({"action": "on"}, {"transition_time": 5}),
        ({"action": "dim", "level": 40}, {"level": 40, "transition_time": 5}),
    ],
)
async def test_an_operator_sends_the_seed_shaped_action_to_a_space(
    hq, people, ready, values, value
):
    _, watcher = ready
    building, space = hq[Scope.BUILDING], hq[Scope.SPACE]
    client = await as_user(people.operator)
    response = await client.post(
        f"/buildings/{building}/actions/", form(f"space:{space}", **values)
    )

    assert response.status_code == 200
    assert "sent: the broker acknowledged it" in response.content.decode()
    [(topic, payload)] = await received(watcher, 1)
    assert topic == f"spaces/{space}/actions"
    expected_name = {
        "off": "Turn off Open Office",
        "on": "Turn on Open Office",
        "dim": "Dim Open Office to 40 %",
    }[values["action"]]
    assert payload == {
        "name": expected_name,
        "type": values["action"],
        "target_type": "space",
        "target_id": str(space),
        "value": value,
        "created": payload["created"],
    }
    assert CREATED.match(payload["created"])
    [attempt] = await attempts()
    assert attempt.outcome == ActionAttempt.ACKNOWLEDGED
    assert attempt.username == "olivia" and json.loads(attempt.payload) == payload
    assert attempt.topic == topic and attempt.acknowledged_at is not None


async def test_a_device_gets_the_same_form_and_payload(hq, people, ready):
    _, watcher = ready
    building, device = hq[Scope.BUILDING], hq[Scope.DEVICE]
    client = await as_user(people.operator)
    await client.post(
        f"/buildings/{building}/actions/", form(f"device:{device}", action="dim", level=80)
    )
    [(topic, payload)] = await received(watcher, 1)
    assert topic == f"devices/{device}/actions"
    assert payload["target_type"] == "device" and payload["target_id"] == str(device)
    assert payload["name"] == "Dim Lamp 1 to 80 %"
    assert payload["value"] == {"level": 80, "transition_time": 5}


@pytest.mark.parametrize(
    ("level", "message"),
    [
        (-1, "Ensure this value is greater than or equal to 0."),
        (101, "Ensure this value is less than or equal to 100."),
        ("abc", "Enter a whole number."),
        (None, "Dim needs a level from 0 to 100 %."),
    ],
)
async def test_a_bad_dim_level_is_refused_with_a_field_message_and_nothing_is_published(
    hq, people, ready, level, message
):
    _, watcher = ready
    values = {"action": "dim"} if level is None else {"action": "dim", "level": level}
    client = await as_user(people.operator)
    response = await client.post(
        f"/buildings/{hq[Scope.BUILDING]}/actions/", form(f"space:{hq[Scope.SPACE]}", **values)
    )
    assert response.status_code == 422
    html = response.content.decode()
    assert f"<strong>Level</strong>: {message}" in html
    # The form comes back as the operator filled it in, the faulty field marked.
    assert '<option value="dim" selected>Dim</option>' in html
    level_input = re.search(r'<input type="number" name="[^"]*-level"[^>]*>', html).group()
    assert 'aria-invalid="true"' in level_input
    assert f'value="{"" if level is None else level}"' in level_input
    await asyncio.sleep(0.5)
    assert watcher.messages == []
    [attempt] = await attempts()
    assert attempt.outcome == ActionAttempt.REFUSED and attempt.reason.startswith("invalid")


async def test_a_post_without_its_idempotency_key_comes_back_without_one(hq, people, ready):
    """A scripted client's refused form must not come back carrying the key "None", which
    every later such form would share (and be taken for a double click of the first)."""
    target = f"space:{hq[Scope.SPACE]}"
    data = form(target, action="off")
    del data[f"space-{hq[Scope.SPACE]}-idempotency_key"]
    client = await as_user(people.operator)
    response = await client.post(f"/buildings/{hq[Scope.BUILDING]}/actions/", data)
    assert response.status_code == 422
    html = response.content.decode()
    assert re.search(r'name="[^"]*-idempotency_key" value=""', html)
    assert 'value="None"' not in html


async def test_a_viewer_is_refused_and_the_refusal_is_audited(hq, people, ready):
    _, watcher = ready
    client = await as_user(people.viewer)
    response = await client.post(
        f"/buildings/{hq[Scope.BUILDING]}/actions/",
        form(f"space:{hq[Scope.SPACE]}", action="off"),
    )
    assert response.status_code == 403
    assert "Only operators may send actions." in response.content.decode()
    await asyncio.sleep(0.3)
    assert watcher.messages == []
    [attempt] = await attempts()
    assert (attempt.username, attempt.outcome) == ("victor", ActionAttempt.REFUSED)


async def test_a_double_click_sends_once(hq, people, ready):
    _, watcher = ready
    client = await as_user(people.operator)
    data = form(f"space:{hq[Scope.SPACE]}", action="off", key="same-form")
    url = f"/buildings/{hq[Scope.BUILDING]}/actions/"
    first, second = await asyncio.gather(client.post(url, data), client.post(url, data))
    assert {first.status_code, second.status_code} == {200}
    await received(watcher, 1)
    await asyncio.sleep(0.5)
    assert len(watcher.messages) == 1
    assert len(await attempts()) == 1


async def test_all_spaces_needs_a_confirmation_then_reaches_every_space(hq, people, ready):
    _, watcher = ready
    lounge = await Space.objects.acreate(building_id=hq[Scope.BUILDING], name="Lounge")
    client = await as_user(people.operator)
    url = f"/buildings/{hq[Scope.BUILDING]}/actions/"
    data = form("all", action="dim", level=30)

    asked = await client.post(url, data)
    assert "to every space of the building: 2 spaces" in asked.content.decode()
    await asyncio.sleep(0.3)
    assert watcher.messages == [] and await attempts() == []

    done = await client.post(url, {**data, "all-confirm": "on"})
    assert done.content.decode().count("sent: the broker acknowledged it") == 2
    topics = sorted(topic for topic, _ in await received(watcher, 2))
    assert topics == sorted([f"spaces/{hq[Scope.SPACE]}/actions", f"spaces/{lounge.id}/actions"])
    rows = await attempts()
    assert len({row.batch for row in rows}) == 1 and rows[0].batch is not None


async def test_with_the_broker_down_the_attempt_fails_clearly_and_is_kept(
    hq, people, ready, broker
):
    bridge, _ = ready
    await sync_to_async(broker.kill)()
    session = bridge.buildings[hq[Scope.BUILDING]].session
    await until(lambda: not session.connected, 10, "the session to notice")
    client = await as_user(people.operator)
    response = await client.post(
        f"/buildings/{hq[Scope.BUILDING]}/actions/",
        form(f"space:{hq[Scope.SPACE]}", action="off"),
    )
    assert "failed" in response.content.decode()
    assert "not connected" in response.content.decode()
    [attempt] = await attempts()
    assert attempt.outcome == ActionAttempt.FAILED and "not connected" in attempt.reason


async def test_the_rate_limit_answers_clearly(hq, people, ready, settings):
    settings.ACTION_RATE_PER_MINUTE = 2
    client = await as_user(people.operator)
    url = f"/buildings/{hq[Scope.BUILDING]}/actions/"
    for _ in range(2):
        ok = await client.post(url, form(f"space:{hq[Scope.SPACE]}", action="on"))
        assert ok.status_code == 200
    limited = await client.post(url, form(f"space:{hq[Scope.SPACE]}", action="on"))
    assert limited.status_code == 429
    assert "at most 2 actions a minute" in limited.content.decode()
    assert [a.outcome for a in await attempts()][-1] == ActionAttempt.REFUSED


async def test_an_action_the_cloud_fans_out_is_marked_seen(hq, people, ready, publish):
    bridge, watcher = ready
    client = await as_user(people.operator)
    await client.post(
        f"/buildings/{hq[Scope.BUILDING]}/actions/",
        form(f"space:{hq[Scope.SPACE]}", action="dim", level=10),
    )
    [(_, action)] = await received(watcher, 1)
    # What the cloud does: the space's lamp gets it, on the building's action topic.
    fanned = {**action, "target_type": "device", "target_id": str(hq[Scope.DEVICE])}
    await send(publish, build_topic(Scope.BUILDING, hq[Scope.BUILDING], Kind.ACTION), fanned)

    [attempt] = await attempts()
    state = bridge.buildings[hq[Scope.BUILDING]].state
    await until(lambda: state.attempts[attempt.id].outcome == "seen", what="seen in memory")

    async def stored() -> bool:
        return (await ActionAttempt.objects.aget(id=attempt.id)).outcome == "seen"

    for _ in range(100):
        if await stored():
            break
        await asyncio.sleep(0.05)
    assert await stored()


async def test_without_a_bridge_the_attempt_fails_within_the_timeout(hq, people, settings):
    settings.ACTION_PUBACK_TIMEOUT_SECONDS = 0.2
    client = await as_user(people.operator)
    response = await client.post(
        f"/buildings/{hq[Scope.BUILDING]}/actions/",
        form(f"space:{hq[Scope.SPACE]}", action="off"),
    )
    assert "no bridge answered for this building" in response.content.decode()
    [attempt] = await attempts()
    assert attempt.outcome == ActionAttempt.FAILED


def test_csrf_protection_stays_on(hq, people):
    client = Client(enforce_csrf_checks=True)
    client.force_login(people.operator)
    response = client.post(
        f"/buildings/{hq[Scope.BUILDING]}/actions/",
        form(f"space:{hq[Scope.SPACE]}", action="off"),
    )
    assert response.status_code == 403
    assert not ActionAttempt.objects.exists()


def test_operators_see_the_forms_and_viewers_do_not(hq, people):
    operator, viewer = Client(), Client()
    operator.force_login(people.operator)
    viewer.force_login(people.viewer)
    url = f"/buildings/{hq[Scope.BUILDING]}/"
    page = operator.get(url).content.decode()
    assert 'aria-label="Action for Open Office"' in page
    for label in ("Action", "Level", "Transition time"):
        assert f">{label}</label>" in page
    # The inputs carry the form's own bounds, so browsers check them before sending.
    assert re.search(r'<select name="[^"]*-action" id="[^"]*" required>', page)
    assert re.search(r'name="[^"]*-level" id="[^"]*" min="0" max="100" value=""', page)
    assert re.search(r'name="[^"]*-transition_time" id="[^"]*" min="0" max="3600" required', page)
    assert "Lighting controls" not in viewer.get(url).content.decode()
    device_page = operator.get(f"{url}devices/{hq[Scope.DEVICE]}/").content.decode()
    assert 'aria-label="Action for Lamp 1"' in device_page


async def test_an_echo_that_beats_the_puback_makes_the_form_say_seen(hq, people, ready, publish):
    """The cloud's fan-out can arrive with the PUBACK, before the form's answer exists on the
    page to take the pushed "seen"; the answer itself then says "seen"."""
    bridge, _ = ready
    building = bridge.buildings[hq[Scope.BUILDING]]
    publish_now = building.session.publish

    async def publish_then_echo(topic: str, payload: bytes, timeout: float = 5.0) -> None:
        await publish_now(topic, payload, timeout)
        action = json.loads(payload)
        building.record(
            ActionRecord(
                topic=build_topic(Scope.BUILDING, hq[Scope.BUILDING], Kind.ACTION),
                name=action["name"],
                type=action["type"],
                target_type="device",
                target_id=hq[Scope.DEVICE],
                value=action["value"],
                created=action["created"],
                received_at=datetime.now(UTC),
            )
        )

    building.session.publish = publish_then_echo
    client = await as_user(people.operator)
    response = await client.post(
        f"/buildings/{hq[Scope.BUILDING]}/actions/",
        form(f"space:{hq[Scope.SPACE]}", action="off"),
    )
    assert "seen: the cloud reported it back" in response.content.decode()
