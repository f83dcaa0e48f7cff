"""Faults found by review: each story fails on the code before its fix."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.contrib.messages.storage import default_storage
from django.test import AsyncClient, AsyncRequestFactory, Client
from django.utils import timezone

from dashboard import actions, alarms
from dashboard.bridge.inbox import Inbox
from dashboard.bridge.ingest import ingest
from dashboard.consumers import NO_ACCESS
from dashboard.contract.topics import Scope
from dashboard.live import layer
from dashboard.live.building_store import load_building
from dashboard.live.state import AttemptSeen, LiveState
from dashboard.live.store import write_batch
from dashboard.models import ActionAttempt, Building, Device, FaultAlarm, Role
from gooee_site.asgi import application
from tests import seed
from tests.bridging import subscribed, until
from tests.factories import make_building
from tests.test_consumers import ORIGIN, closed_with, receive_until, session_cookie

pytestmark = pytest.mark.django_db


class Collect:
    def __init__(self) -> None:
        self.records: list[object] = []

    def changed(self, tile: tuple) -> None:
        pass

    def record(self, record: object) -> None:
        self.records.append(record)


@pytest.fixture
def lamp() -> Device:
    building = Building.objects.create(name="Headquarters")
    return Device.objects.create(building=building, name="Lamp 1")


def test_a_cleared_alarm_stays_cleared_when_an_older_record_is_written_after_the_clear(lamp):
    building_id = lamp.building_id
    state, sink = LiveState(building_id), Collect()
    inventory = load_building(building_id)
    then = timezone.now() - timedelta(seconds=5)
    for n in range(3):
        alarm = {**seed.DEVICE_FAULT_ALARM, "timestamp": f"2020-02-17T15:47:5{n}.000000Z"}
        topic = f"devices/{lamp.id}/fault_alarms"
        ingest(state, inventory, topic, json.dumps(alarm).encode(), then, sink)
    write_batch([(building_id, sink.records[0])])
    stored = FaultAlarm.objects.get()
    user = get_user_model().objects.create_user("sam")
    alarms.transition(building_id, [stored.pk], FaultAlarm.CLEARED, user, "fixed")

    # The third occurrence was queued before the clear and reaches the database after it.
    write_batch([(building_id, sink.records[-1])])

    assert list(FaultAlarm.objects.values_list("state", flat=True)) == ["cleared"]


def test_an_occurrence_after_the_clear_opens_a_new_alarm(lamp):
    building_id = lamp.building_id
    state, sink = LiveState(building_id), Collect()
    inventory = load_building(building_id)
    topic = f"devices/{lamp.id}/fault_alarms"
    ingest(
        state,
        inventory,
        topic,
        json.dumps(seed.DEVICE_FAULT_ALARM).encode(),
        timezone.now() - timedelta(seconds=5),
        sink,
    )
    write_batch([(building_id, sink.records[0])])
    user = get_user_model().objects.create_user("sam")
    alarms.transition(building_id, [FaultAlarm.objects.get().pk], FaultAlarm.CLEARED, user, "")
    state.alarms.clear()  # what the bridge does when told of the clear
    again = {**seed.DEVICE_FAULT_ALARM, "timestamp": "2030-01-01T00:00:00.000000Z"}
    ingest(state, inventory, topic, json.dumps(again).encode(), timezone.now(), sink)
    write_batch([(building_id, sink.records[-1])])

    assert sorted(FaultAlarm.objects.values_list("state", "count")) == [
        ("cleared", 1),
        ("open", 1),
    ]


# --- 5: an action's audit tells the truth in every order of events ---------------------------


def _attempt(building: Building, outcome: str, reason: str = "") -> ActionAttempt:
    return ActionAttempt.objects.create(
        building=building,
        username="olivia",
        target_type="space",
        topic="spaces/x/actions",
        payload="{}",
        outcome=outcome,
        reason=reason,
    )


def test_a_seen_action_recorded_failed_is_recorded_as_published_after_all(lamp):
    attempt = _attempt(lamp.building, ActionAttempt.FAILED, "no bridge answered within 7 s")
    write_batch([(lamp.building_id, AttemptSeen(attempt.id, timezone.now()))])
    attempt.refresh_from_db()
    assert attempt.outcome == ActionAttempt.SEEN
    assert attempt.reason == (
        "published after all: it came back after being recorded failed "
        "(no bridge answered within 7 s)"
    )


@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
async def test_a_request_that_reaches_the_bridge_after_its_deadline_is_not_published(
    hq, people, running_bridge, subscriber, settings, monkeypatch
):
    settings.ACTION_PUBACK_TIMEOUT_SECONDS = 0.2
    bridge = await running_bridge()
    await subscribed(bridge, hq[Scope.BUILDING])
    watcher = await sync_to_async(subscriber)("spaces/+/actions")
    channels = get_channel_layer()
    deliver = channels.group_send
    late: list[asyncio.Task] = []

    async def slow_group_send(group: str, message: dict) -> None:
        # A channel layer that delivers the request after the view has given up on it.
        if message["type"] == "action.publish":
            late.append(asyncio.create_task(_later(3.0, deliver(group, message))))
        else:
            await deliver(group, message)

    monkeypatch.setattr(channels, "group_send", slow_group_send)
    client = AsyncClient(HTTP_HX_REQUEST="true")
    await client.aforce_login(people.operator)
    space = hq[Scope.SPACE]
    response = await client.post(
        f"/buildings/{hq[Scope.BUILDING]}/actions/",
        {
            f"space-{space}-target": f"space:{space}",
            f"space-{space}-idempotency_key": "late-one",
            f"space-{space}-transition_time": 5,
            f"space-{space}-action": "off",
        },
    )
    assert "no bridge answered" in response.content.decode()
    await asyncio.gather(*late)
    await asyncio.sleep(0.5)
    assert watcher.messages == []
    attempt = await ActionAttempt.objects.aget()
    assert attempt.outcome == ActionAttempt.FAILED


async def _later(delay: float, work: Any) -> None:
    await asyncio.sleep(delay)
    await work


# --- 6: refusals are bounded, the rate limit holds under parallel requests -------------------


def _action_form(space: Any, key: str, action: str = "off") -> dict[str, Any]:
    return {
        f"space-{space}-target": f"space:{space}",
        f"space-{space}-idempotency_key": key,
        f"space-{space}-transition_time": 5,
        f"space-{space}-action": action,
    }


@pytest.mark.django_db(transaction=True)
async def test_parallel_submissions_never_pass_the_rate_limit(hq, people, settings):
    settings.ACTION_RATE_PER_MINUTE = 3
    settings.ACTION_PUBACK_TIMEOUT_SECONDS = 0.1  # no bridge runs: each fails fast
    building = hq[Scope.BUILDING]

    def post(n: int) -> Any:
        request = AsyncRequestFactory().post(
            f"/buildings/{building}/actions/", _action_form(hq[Scope.SPACE], f"key-{n}")
        )
        request.user = people.operator
        request.auser = _returns(people.operator)
        request.htmx = True
        request.session = {}
        request._messages = default_storage(request)
        return request

    # Straight to the async view, ten at once on one loop: the middleware's thread would
    # take them one by one, as one web process does; several processes run them at once.
    responses = await asyncio.gather(*(actions.send_action(post(n), building) for n in range(10)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * 3 + [429] * 7
    tried = ActionAttempt.objects.exclude(outcome=ActionAttempt.REFUSED)
    assert await tried.acount() == 3


def _returns(value: Any) -> Any:
    async def get() -> Any:
        return value

    return get


@pytest.mark.django_db(transaction=True)
async def test_a_flood_of_refused_posts_writes_a_bounded_audit_saying_how_many_it_left_out(
    hq, people, settings
):
    settings.ACTION_REFUSALS_LOGGED_PER_MINUTE = 5
    client = AsyncClient(HTTP_HX_REQUEST="true")
    await client.aforce_login(people.viewer)
    url = f"/buildings/{hq[Scope.BUILDING]}/actions/"
    for n in range(15):
        response = await client.post(url, _action_form(hq[Scope.SPACE], f"key-{n}"))
        assert response.status_code == 403
    rows = [a async for a in ActionAttempt.objects.order_by("id")]
    assert [a.outcome for a in rows] == [ActionAttempt.REFUSED] * 5
    assert [a.suppressed for a in rows] == [0, 0, 0, 0, 10]
    page = await sync_to_async(_activity_page)(people.operator, hq[Scope.BUILDING])
    assert "10 more refusals in that minute, not logged one by one" in page


def _activity_page(user: Any, building: Any) -> str:
    client = Client()
    client.force_login(user)
    return client.get(f"/buildings/{building}/activity/").content.decode()


# --- 7: an idempotency key belongs to one building -------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_the_same_key_in_another_building_is_its_own_action(hq, people, settings):
    settings.ACTION_PUBACK_TIMEOUT_SECONDS = 0.1  # no bridge runs: each fails fast
    annex = await sync_to_async(make_building)("Annex")
    await Role.objects.acreate(
        user=people.operator, building_id=annex[Scope.BUILDING], role=Role.OPERATOR
    )
    client = AsyncClient(HTTP_HX_REQUEST="true")
    await client.aforce_login(people.operator)
    for place in (hq, annex):
        response = await client.post(
            f"/buildings/{place[Scope.BUILDING]}/actions/",
            _action_form(place[Scope.SPACE], "one-key"),
        )
        assert "no bridge answered" in response.content.decode()
    audited = ActionAttempt.objects.order_by("id").values_list("building_id", "idempotency_key")
    assert [row async for row in audited] == [
        (hq[Scope.BUILDING], "one-key"),
        (annex[Scope.BUILDING], "one-key"),
    ]


# --- 8a: only the account pages the site uses ------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/accounts/password_reset/",
        "/accounts/password_reset/done/",
        "/accounts/reset/MQ/set-password/",
        "/accounts/reset/done/",
        "/accounts/password_change/",
        "/accounts/password_change/done/",
    ],
)
def test_account_pages_the_site_does_not_use_are_not_there(people, path):
    client = Client()
    client.force_login(people.operator)
    assert client.get(path).status_code == 404


def test_logging_in_and_out_still_work(people):
    client = Client()
    assert client.get("/accounts/login/").status_code == 200
    client.force_login(people.operator)
    assert client.post("/accounts/logout/").status_code == 302


# --- 8b, 8c: who a socket accepts ------------------------------------------------------------


async def _socket(user: Any, path: str) -> WebsocketCommunicator:
    cookie = await sync_to_async(session_cookie)(user)
    communicator = WebsocketCommunicator(application, path, headers=[ORIGIN, cookie])
    await communicator.connect()
    return communicator


@pytest.mark.django_db(transaction=True)
async def test_a_superusers_socket_for_a_building_that_does_not_exist_is_refused(hq):
    admin = await sync_to_async(get_user_model().objects.create_superuser)("root", "", "pw")
    socket = await _socket(admin, f"/ws/buildings/{uuid.uuid4()}/")
    try:
        assert await closed_with(socket) == NO_ACCESS
    finally:
        await socket.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_staff_without_buildings_get_an_empty_overview_not_a_refusal(hq):
    staff = await sync_to_async(get_user_model().objects.create_user)("stan", is_staff=True)
    socket = await _socket(staff, "/ws/overview/")
    try:
        assert await socket.receive_nothing(0.5)  # open, and quiet: nothing to show
    finally:
        await socket.disconnect()


# --- 8e: the payload size has a ceiling, and big payloads are parsed off the loop -------------


def test_a_payload_limit_over_one_mebibyte_is_refused_in_one_line():
    env = {**os.environ, "MQTT_MAX_PAYLOAD_BYTES": str(2 * 1024 * 1024), "SECRET_KEY": "x"}
    check = subprocess.run(
        [sys.executable, "-c", "import gooee_site.settings"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode != 0
    assert (
        "ImproperlyConfigured: MQTT_MAX_PAYLOAD_BYTES: at most 1048576, got 2097152"
        in check.stderr.splitlines()[-1]
    )


@pytest.mark.django_db(transaction=True)
async def test_a_big_payload_is_parsed_off_the_loop_and_messages_keep_their_order(
    lamp, monkeypatch
):
    from dashboard.bridge.building import BuildingBridge
    from dashboard.bridge.history import HistoryWriter
    from dashboard.contract import payloads
    from tests.bridging import config_for, until

    inventory = await sync_to_async(load_building)(lamp.building_id)

    async def nowhere(*args: Any, **kwargs: Any) -> None:
        pass

    bridge = BuildingBridge(
        inventory,
        LiveState(lamp.building_id),
        config_for("mqtt://127.0.0.1:1"),
        HistoryWriter(60),
        nowhere,
        0.05,
        1024 * 1024,
    )
    parsed_on: list[tuple[int, bool]] = []
    parse = payloads.parse

    def watched(kind: Any, raw: bytes, **kwargs: Any) -> Any:
        parsed_on.append((len(raw), threading.current_thread() is threading.main_thread()))
        return parse(kind, raw, **kwargs)

    monkeypatch.setattr(payloads, "parse", watched)
    topic = f"devices/{lamp.id}/meta"
    big = [{"name": "label", "value": "x" * 200_000}]
    small = [{"name": "label", "value": "small"}]
    bridge.on_message(topic, json.dumps(big).encode())
    bridge.on_message(topic, json.dumps(small).encode())

    await until(lambda: len(parsed_on) == 2, what="both messages parsed")
    await until(lambda: not bridge.backlog, what="the backlog drained")
    assert [on_loop for _, on_loop in parsed_on] == [False, True]
    assert bridge.state.meta[lamp.id]["label"].value == "small"  # the later one last


# --- 8d: pages get values again soon after Redis loses its data ------------------------------


@pytest.mark.django_db(transaction=True)
async def test_after_redis_loses_its_data_every_page_gets_values_again_within_10_s(
    redis_layer, hq, people
):
    building = hq[Scope.BUILDING]
    pages = [
        await _socket(user, f"/ws/buildings/{building}/")
        for user in (people.viewer, people.operator, people.support)
    ]
    try:
        # What the bridge's fan-out sends the building's pages, here straight from the test.
        await layer.broadcast(building, "<p>value 1</p>", stream="s", seq=1)
        for page in pages:
            await receive_until(page, "value 1")

        await redis_layer.flushdb()
        flushed = time.monotonic()
        got = [False] * len(pages)
        seq = 1
        while not all(got) and time.monotonic() - flushed < 10:
            seq += 1
            await layer.broadcast(building, f"<p>value {seq}</p>", stream="s", seq=seq)
            for n, page in enumerate(pages):
                while not got[n] and not await page.receive_nothing(0.2):
                    got[n] = "value" in layer.unpack(await page.receive_from())
        assert got == [True] * len(pages), "pages still deaf 10 s after the flush"
    finally:
        for page in pages:
            await page.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_after_redis_loses_its_data_the_bridge_hears_pages_again_within_10_s(redis_layer, hq):
    building = hq[Scope.BUILDING]
    heard: list[dict] = []
    inbox = Inbox(heard.append)
    await inbox.open()
    await inbox.join(building)
    listening = asyncio.create_task(inbox.run())
    try:
        await layer.request_snapshot(building, "specific.page!1", ["all"])
        await until(lambda: len(heard) == 1, what="the request before the flush")

        await redis_layer.flushdb()
        flushed = time.monotonic()
        while len(heard) == 1 and time.monotonic() - flushed < 10:
            await layer.request_snapshot(building, "specific.page!1", ["all"])
            await asyncio.sleep(0.2)
        assert len(heard) > 1, "the bridge still deaf 10 s after the flush"
    finally:
        listening.cancel()
        inbox.close()


@pytest.mark.django_db(transaction=True)
async def test_an_inbox_whose_receive_loses_the_cancellation_and_reads_again_still_stops(
    redis_layer, hq
):
    # What channels_redis was seen to do: the cancelled receive starts its next blocking read.
    inbox = Inbox(lambda message: None)
    await inbox.open()
    receive = inbox._layer.receive
    lost: list[bool] = []

    async def receive_losing_cancellation(channel: str) -> dict:
        try:
            return await receive(channel)
        except asyncio.CancelledError:
            if lost:
                raise
            lost.append(True)
            asyncio.current_task().uncancel()
            return await receive(channel)  # the next blocking read

    inbox._layer.receive = receive_losing_cancellation
    listening = asyncio.create_task(inbox.run())
    try:
        await asyncio.sleep(0.1)  # in its first receive
        not_done = await asyncio.wait_for(layer.cancel_until_done({listening}), 10.0)
        assert not not_done and listening.cancelled() and lost == [True]
    finally:
        listening.cancel()
        inbox.close()


# --- 8f: what one big entry may cost is bounded in bytes too ---------------------------------


@pytest.mark.django_db(transaction=True)
async def test_a_page_behind_by_a_few_big_frames_is_cut_off_and_one_that_keeps_up_is_not(
    hq, people, monkeypatch
):
    from dashboard import consumers

    monkeypatch.setattr(consumers, "MAX_UNACKED_BYTES", 120_000)
    building = hq[Scope.BUILDING]
    keeping_up = await _socket(people.viewer, f"/ws/buildings/{building}/")
    stalled = await _socket(people.operator, f"/ws/buildings/{building}/")
    try:
        # Random-looking text, so deflate cannot make the frames small.
        big = os.urandom(48_000).hex()  # 96 000 characters
        for seq in range(1, 6):
            await layer.broadcast(building, f"<p>{seq}{big}</p>", stream="s1", seq=seq)
            assert layer.unpack(await keeping_up.receive_from(5)).startswith(f"<p>{seq}")
            await keeping_up.send_to(text_data=consumers.ACK)
        for seq in range(1, 3):  # two frames (about 48 KB deflated) fit; the third does not
            assert layer.unpack(await stalled.receive_from(5)).startswith(f"<p>{seq}")
        assert await closed_with(stalled) == consumers.TRY_AGAIN_LATER
        assert await keeping_up.receive_nothing(0.2)
    finally:
        await keeping_up.disconnect()
        await stalled.disconnect()


def test_a_huge_value_is_kept_cut_with_the_cut_stated_and_a_small_one_whole(lamp):
    building_id = lamp.building_id
    state, sink = LiveState(building_id), Collect()
    inventory = load_building(building_id)
    huge = [["y" * 900] * 40] * 2  # 72 000 characters of JSON, as the schema allows
    meta = [{"name": "label", "value": huge}, {"name": "note", "value": "short"}]
    ingest(state, inventory, f"devices/{lamp.id}/meta", json.dumps(meta).encode(), now(), sink)
    alarm = {**seed.DEVICE_FAULT_ALARM, "extra": ["y" * 900] * 200}  # extra keys are allowed
    topic = f"devices/{lamp.id}/fault_alarms"
    ingest(state, inventory, topic, json.dumps(alarm).encode(), now(), sink)

    kept = state.meta[lamp.id]["label"].value
    assert 30_000 < len(json.dumps(kept)) < 40_000
    assert "truncated" in json.dumps(kept[-1])  # the cut is stated where it is made
    assert state.meta[lamp.id]["note"].value == "short"
    [stored_alarm] = state.alarms.values()
    assert len(json.dumps(stored_alarm.payload)) < 40_000
    assert stored_alarm.payload["type"] == seed.DEVICE_FAULT_ALARM["type"]
    write_batch([(building_id, r) for r in sink.records])  # and so is what history stores
    assert len(json.dumps(FaultAlarm.objects.get().payload)) < 40_000


def now() -> Any:
    return timezone.now()
