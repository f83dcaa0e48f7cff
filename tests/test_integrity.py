"""Facility managers trust the counts: a count that disagrees is named on its card, and
operators (or the nightly reset) set it back to 0 through the audited action path."""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
import zoneinfo
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import Client

from dashboard import reports
from dashboard.contract.topics import Kind, Scope, build_topic
from dashboard.live import fragments, tiles
from dashboard.live.buildings import BuildingInventory, Entity
from dashboard.live.confirmation import Confirmation
from dashboard.live.integrity import CountersAtZero, Problem, check_headcount
from dashboard.live.load import load_state
from dashboard.live.resets import nightly_due
from dashboard.live.state import HeadcountValue, LiveState
from dashboard.models import ActionAttempt, Building, LatestHeadcount
from tests.bridging import Browser, send, subscribed, until
from tests.test_actions import as_user, attempts

LONDON = zoneinfo.ZoneInfo("Europe/London")
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
RESET = {"name": "headcount", "value": 0}
HEAD_COUNT_TOPICS = (
    "buildings/+/meta/head_count",
    "spaces/+/meta/head_count",
    "areas/+/meta/head_count",
)


# --- the rule, called directly ------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "counted_in", "counted_out", "capacity", "problems", "text"),
    [
        (12, 10, 3, None, [Problem.MISMATCH], "in \u2212 out = 7, count = 12"),
        (7, 10, 3, 20, [], None),
        (9, 10, 3, 20, [], None),  # within the tolerance of 2
        (5, 10, 3, 20, [], None),
        (4, 10, 3, 20, [Problem.MISMATCH], "in \u2212 out = 7, count = 4"),
        (12, None, 3, None, [], None),  # a counter not known yet: nothing to compare
        (-2, 0, 2, None, [Problem.NEGATIVE], "count is negative (\u22122)"),
        (-2, 0, 5, None, [Problem.MISMATCH, Problem.NEGATIVE], None),
        (30, None, None, 20, [], None),  # 150 % exactly is not above it
        (31, None, None, 20, [Problem.OVER_CAPACITY], "count 31 is over 150 % of capacity 20"),
        (31, None, None, None, [], None),  # no capacity, nothing to be over
        (None, 10, 3, 20, [], None),  # no count yet
    ],
)
def test_a_count_is_judged_against_its_counters_and_capacity(
    count, counted_in, counted_out, capacity, problems, text
):
    warning = check_headcount(count, counted_in, counted_out, capacity, tolerance=2)
    if not problems:
        assert warning is None
        return
    assert warning is not None and list(warning.problems) == problems
    if text is not None:
        assert warning.text == text
    assert (warning.head_count, warning.capacity) == (count, capacity)


def test_every_disagreement_is_named_at_once():
    warning = check_headcount(-40, 0, 5, 20, tolerance=2)
    assert warning is not None
    assert warning.text == "in \u2212 out = \u22125, count = \u221240; count is negative (\u221240)"


@pytest.mark.parametrize(
    ("count", "counted_in", "counted_out", "text"),
    [
        (0, 10, 3, None),  # just reset: nobody came or went since
        (2, 12, 3, None),  # two came in since
        (5, 12, 3, "in \u2212 out since the count was 0 = 2, count = 5"),
        (0, 15, 3, "in \u2212 out since the count was 0 = 5, count = 0"),  # stuck at 0
        (1, 1, 0, None),  # the counters restarted too: compared whole
        (9, 1, 0, "in \u2212 out = 1, count = 9"),
    ],
)
def test_after_a_reset_the_count_is_judged_against_what_the_counters_did_since(
    count, counted_in, counted_out, text
):
    at_reset = CountersAtZero(headcount_in=10, headcount_out=3)
    warning = check_headcount(count, counted_in, counted_out, None, 2, at_reset)
    assert (warning.text if warning else None) == text


def card(counted_in: int, counted_out: int, count: int) -> str:
    building, space = uuid.uuid4(), uuid.uuid4()
    inventory = BuildingInventory(
        building, "HQ", 1, spaces={space: Entity(space, "Open <Office>", capacity=40)}
    )
    state = LiveState(building)
    at = datetime(2026, 3, 1, 9, tzinfo=UTC)
    for kind, value in (("headcount_in", counted_in), ("headcount_out", counted_out)):
        state.headcounts[(space, kind)] = HeadcountValue("space", space, kind, value, at)
    state.headcounts[(space, "head_count")] = HeadcountValue(
        "space", space, "head_count", count, at
    )
    return fragments.render_tile(tiles.headcount(space), state, inventory)


def test_the_card_names_what_disagrees_and_an_agreeing_one_says_nothing():
    html = card(10, 3, 12)
    assert "Check the count:</strong> in \u2212 out = 7, count = 12" in html
    assert "has-warning" in html and 'data-problems="mismatch"' in html
    assert "Open &lt;Office&gt;" in html  # escaped by the template engine
    assert "Check the count" not in card(10, 3, 7)


@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
async def test_the_warning_comes_and_goes_live_with_the_card(hq, running_bridge, publish):
    bridge = await running_bridge()
    building, space = hq[Scope.BUILDING], hq[Scope.SPACE]
    await subscribed(bridge, building)
    browser = await Browser(building).join()
    for kind, name, value in (
        (Kind.HEADCOUNT_IN, "headcount_in", 10),
        (Kind.HEADCOUNT_OUT, "headcount_out", 3),
        (Kind.HEAD_COUNT, "headcount", 12),
    ):
        await send(publish, build_topic(Scope.SPACE, space, kind), {"name": name, "value": value})
    await browser.wait_for("in \u2212 out = 7, count = 12")
    browser.received.clear()
    await send(publish, build_topic(Scope.SPACE, space, Kind.HEAD_COUNT), RESET | {"value": 7})
    html = await browser.wait_for('data-count="7"')
    assert "Check the count" not in html


@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
async def test_a_reset_count_stays_quiet_while_the_counters_go_on_and_the_mark_is_kept(
    hq, running_bridge, publish
):
    """The counters are cumulative and go on after the count is reset to 0: the card and the
    report judge the count by what they did since, also after the bridge restarts."""
    bridge = await running_bridge()
    building, space = hq[Scope.BUILDING], hq[Scope.SPACE]
    await subscribed(bridge, building)
    browser = await Browser(building).join()

    async def counts(counted_in: int, counted_out: int, count: int) -> None:
        for kind, name, value in (
            (Kind.HEADCOUNT_IN, "headcount_in", counted_in),
            (Kind.HEADCOUNT_OUT, "headcount_out", counted_out),
            (Kind.HEAD_COUNT, "headcount", count),
        ):
            topic = build_topic(Scope.SPACE, space, kind)
            await send(publish, topic, {"name": name, "value": value})

    await counts(10, 3, 7)
    await browser.wait_for('data-count="7"')
    await counts(10, 3, 0)  # the reset: the count comes back as 0, the counters do not
    html = await browser.wait_for('data-count="0"')
    assert "Check the count" not in html
    await counts(12, 3, 2)
    html = await browser.wait_for('data-count="2"')
    assert "Check the count" not in html
    await counts(12, 3, 6)
    await browser.wait_for("in \u2212 out since the count was 0 = 2, count = 6")

    async def stored() -> bool:
        return await LatestHeadcount.objects.filter(
            entity_id=space, kind=Kind.HEAD_COUNT, in_at_zero=10, out_at_zero=3, value=6
        ).aexists()

    for _ in range(200):  # the history writer flushes in batches
        if await stored():
            break
        await asyncio.sleep(0.05)
    assert await stored(), "the mark is stored with the latest count"
    # What a restarted bridge and the occupancy report start from.
    state = await sync_to_async(load_state)(building)
    assert state.zero_counters[space] == CountersAtZero(10, 3)
    report_building = await Building.objects.aget(id=building)
    places = await sync_to_async(reports.places_of)(report_building)
    warnings = await sync_to_async(reports.integrity_warnings)(report_building, places)
    assert warnings[space].text == "in \u2212 out since the count was 0 = 2, count = 6"


# --- "Reset count" --------------------------------------------------------------------------


def reset_form(target: str, *, key: str | None = None, confirm: bool = True) -> dict[str, Any]:
    data = {"target": target, "idempotency_key": key or secrets.token_urlsafe(12)}
    if confirm:
        data["confirm"] = "on"
    return data


@pytest.fixture
async def counting(hq, people, running_bridge, subscriber):
    """Headquarters' bridge subscribed, and a subscriber on every head_count topic."""
    bridge = await running_bridge()
    await subscribed(bridge, hq[Scope.BUILDING])
    watcher = await sync_to_async(subscriber)(*HEAD_COUNT_TOPICS)
    return bridge, watcher


async def publishes(watcher, count: int, timeout: float = 5) -> list[tuple[str, Any]]:
    await until(lambda: len(watcher.messages) >= count, timeout, f"{count} publishes")
    return [(m.topic, json.loads(m.payload)) for m in watcher.messages]


@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("scope", [Scope.SPACE, Scope.AREA, Scope.BUILDING])
async def test_an_operator_resets_a_count_with_the_contracts_payload_audited_and_confirmed(
    hq, people, counting, scope
):
    _, watcher = counting
    building, place = hq[Scope.BUILDING], hq[scope]
    client = await as_user(people.operator)
    response = await client.post(f"/buildings/{building}/reset/", reset_form(f"{scope}:{place}"))

    assert response.status_code == 200
    assert "Reset count of" in response.content.decode()
    [(topic, payload)] = await publishes(watcher, 1)
    assert topic == f"{scope.segment}/{place}/meta/head_count"
    assert payload == RESET
    assert watcher.messages[0].payload == b'{"name":"headcount","value":0}'
    [attempt] = await attempts()
    assert attempt.username == "olivia" and attempt.target_type == scope.value
    assert attempt.topic == topic and json.loads(attempt.payload) == RESET
    assert attempt.outcome == ActionAttempt.ACKNOWLEDGED
    # The broker hands the 0 back on the place's head_count topic: confirmed.

    async def confirmed() -> bool:
        row = await ActionAttempt.objects.aget(id=attempt.id)
        return row.confirmation == Confirmation.CONFIRMED

    for _ in range(100):
        if await confirmed():
            break
        await asyncio.sleep(0.05)
    row = await ActionAttempt.objects.aget(id=attempt.id)
    assert row.confirmation == Confirmation.CONFIRMED
    assert row.confirmation_text()["text"] == "confirmed: 1 of 1 place"


@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
async def test_a_reset_is_asked_first_and_a_double_click_publishes_once(hq, people, counting):
    _, watcher = counting
    building, space = hq[Scope.BUILDING], hq[Scope.SPACE]
    client = await as_user(people.operator)
    url = f"/buildings/{building}/reset/"
    asked = await client.post(url, reset_form(f"space:{space}", confirm=False))
    assert asked.status_code == 200
    assert "Reset the count of Open Office to 0?" in asked.content.decode()
    await asyncio.sleep(0.3)
    assert watcher.messages == [] and await attempts() == []

    form = reset_form(f"space:{space}", key="same-key")
    first = await client.post(url, form)
    second = await client.post(url, form)
    assert first.status_code == second.status_code == 200
    await publishes(watcher, 1)
    await asyncio.sleep(0.3)
    assert len(watcher.messages) == 1 and len(await attempts()) == 1
    activity = (await client.get(f"/buildings/{building}/activity/")).content.decode()
    assert "<strong>reset count</strong>" in activity


@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("who", ["viewer", "support", "outsider"])
async def test_a_reset_is_refused_to_anyone_but_an_operator_and_the_refusal_audited(
    hq, people, counting, who
):
    _, watcher = counting
    building, space = hq[Scope.BUILDING], hq[Scope.SPACE]
    user = getattr(people, who)
    client = await as_user(user)
    response = await client.post(f"/buildings/{building}/reset/", reset_form(f"space:{space}"))
    assert response.status_code == 403
    await asyncio.sleep(0.3)
    assert watcher.messages == []
    [refused] = await attempts()
    assert refused.outcome == ActionAttempt.REFUSED and refused.username == user.username
    assert refused.reason == "not an operator of this building"
    assert refused.target_id == space and refused.topic == ""


@pytest.mark.django_db
def test_operators_see_reset_count_on_every_card_and_viewers_do_not(hq, people):
    operator, viewer = Client(), Client()
    operator.force_login(people.operator)
    viewer.force_login(people.viewer)
    url = f"/buildings/{hq[Scope.BUILDING]}/"
    html = operator.get(url).content.decode()
    for scope in (Scope.BUILDING, Scope.SPACE, Scope.AREA):
        assert f'name="target" value="{scope}:{hq[scope]}"' in html
    assert html.count(">Reset count</button>") == 3
    assert "Reset count" not in viewer.get(url).content.decode()


# --- the nightly reset ----------------------------------------------------------------------


def at(zone: zoneinfo.ZoneInfo, *parts: int, fold: int = 0) -> datetime:
    """A wall-clock time in ``zone`` as the UTC instant the bridge's clock gives."""
    return datetime(*parts, tzinfo=zone, fold=fold).astimezone(UTC)


TWO = time(2, 0)
HALF_ONE = time(1, 30)


@pytest.mark.parametrize(
    ("reset_at", "zone", "now", "last", "due"),
    [
        (None, LONDON, at(LONDON, 2026, 6, 1, 2, 0), None, None),  # off
        (TWO, LONDON, at(LONDON, 2026, 6, 1, 1, 59), None, None),  # not yet
        (TWO, LONDON, at(LONDON, 2026, 6, 1, 2, 0), None, date(2026, 6, 1)),  # BST
        (TWO, LONDON, at(LONDON, 2026, 6, 1, 2, 0), date(2026, 6, 1), None),  # done already
        (TWO, LONDON, at(LONDON, 2026, 6, 1, 2, 59), date(2026, 5, 31), date(2026, 6, 1)),
        (TWO, LONDON, at(LONDON, 2026, 6, 1, 3, 0), date(2026, 5, 31), None),  # too late
        (TWO, LONDON, at(LONDON, 2026, 1, 15, 2, 0), None, date(2026, 1, 15)),  # GMT
        # Clocks go forward at 01:00 GMT on 29 March 2026: 01:30 never happens, and the
        # reset is done as the clock jumps to 02:00 BST.
        (HALF_ONE, LONDON, at(LONDON, 2026, 3, 29, 0, 59), None, None),
        (HALF_ONE, LONDON, datetime(2026, 3, 29, 1, 0, tzinfo=UTC), None, date(2026, 3, 29)),
        # Clocks go back at 02:00 BST on 25 October 2026: 01:30 happens twice, reset once.
        (HALF_ONE, LONDON, at(LONDON, 2026, 10, 25, 1, 30), None, date(2026, 10, 25)),
        (HALF_ONE, LONDON, at(LONDON, 2026, 10, 25, 1, 30, fold=1), date(2026, 10, 25), None),
        # New York: 02:30 does not exist on 8 March 2026, 01:30 happens twice on 1 November.
        (time(2, 30), NEW_YORK, at(NEW_YORK, 2026, 3, 8, 3, 0), None, date(2026, 3, 8)),
        (HALF_ONE, NEW_YORK, at(NEW_YORK, 2026, 11, 1, 1, 30, fold=1), date(2026, 11, 1), None),
        # Local, not UTC: 02:00 in New York is 07:00 UTC in winter.
        (TWO, NEW_YORK, datetime(2026, 1, 15, 2, 0, tzinfo=UTC), None, None),
        (TWO, NEW_YORK, datetime(2026, 1, 15, 7, 0, tzinfo=UTC), None, date(2026, 1, 15)),
        # A reset just before midnight is still due a little after it, for the night before.
        (time(23, 45), LONDON, at(LONDON, 2026, 6, 2, 0, 15), None, date(2026, 6, 1)),
    ],
)
def test_the_nightly_reset_is_due_once_a_local_night_through_dst(reset_at, zone, now, last, due):
    assert nightly_due(reset_at, zone, now, last) == due


def test_each_night_of_a_dst_change_is_reset_exactly_once():
    """A fake clock stepping a minute at a time over both changes of a London year."""
    for start in (datetime(2026, 3, 28, 12, tzinfo=UTC), datetime(2026, 10, 24, 12, tzinfo=UTC)):
        done: list[date] = []
        last = None
        now = start
        while now < start + timedelta(days=2):
            night = nightly_due(HALF_ONE, LONDON, now, last)
            if night is not None:
                done.append(night)
                last = night
            now += timedelta(minutes=1)
        first = start.date() + timedelta(days=1)
        assert done == [first, first + timedelta(days=1)]


@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
async def test_the_bridge_resets_every_place_at_the_local_time_once_even_after_a_restart(
    hq, running_bridge, subscriber
):
    building = hq[Scope.BUILDING]
    await Building.objects.filter(id=building).aupdate(
        timezone="Europe/London", nightly_reset_at=TWO
    )
    watcher = await sync_to_async(subscriber)(*HEAD_COUNT_TOPICS)
    clock = {"now": at(LONDON, 2026, 3, 29, 0, 59)}  # the night the clocks go forward

    def now() -> datetime:
        return clock["now"]

    bridge = await running_bridge(nightly_every=0.05, clock=now)
    await subscribed(bridge, building)
    await asyncio.sleep(0.3)
    assert watcher.messages == []

    clock["now"] = at(LONDON, 2026, 3, 29, 2, 0)  # past the clocks going forward
    found = await publishes(watcher, 3)
    assert sorted(found) == sorted(
        [
            (f"buildings/{building}/meta/head_count", RESET),
            (f"spaces/{hq[Scope.SPACE]}/meta/head_count", RESET),
            (f"areas/{hq[Scope.AREA]}/meta/head_count", RESET),
        ]
    )
    rows = await attempts()
    assert len(rows) == 3
    assert {r.username for r in rows} == {"system"} and {r.user_id for r in rows} == {None}
    assert {r.idempotency_key.split(":")[1] for r in rows} == {"2026-03-29"}

    async def acknowledged() -> list[ActionAttempt]:
        return await attempts(outcome=ActionAttempt.ACKNOWLEDGED)

    for _ in range(100):
        if len(await acknowledged()) == 3:
            break
        await asyncio.sleep(0.05)
    assert len(await acknowledged()) == 3

    # A restart the same night: the new bridge reads the night off the audit rows.
    bridge.stop()
    await asyncio.sleep(0.5)
    again = await running_bridge(nightly_every=0.05, clock=now)
    await subscribed(again, building)
    clock["now"] = at(LONDON, 2026, 3, 29, 2, 30)
    await asyncio.sleep(0.5)
    assert len(watcher.messages) == 3 and len(await attempts()) == 3

    clock["now"] = at(LONDON, 2026, 3, 30, 2, 0, 5)  # the next night
    await publishes(watcher, 6)
    assert len(await attempts()) == 6


@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
async def test_with_several_workers_only_the_holder_of_a_building_resets_it(
    running_bridge, subscriber, redis_url
):
    from dashboard.bridge.leases import Leases
    from tests.factories import make_building

    for n in range(4):
        await sync_to_async(make_building)(f"Building {n}")
    await Building.objects.aupdate(timezone="America/New_York", nightly_reset_at=TWO)
    watcher = await sync_to_async(subscriber)(*HEAD_COUNT_TOPICS)
    clock = {"now": at(NEW_YORK, 2026, 11, 1, 0, 0)}
    workers = [
        await running_bridge(
            leases=Leases(redis_url, name, 2.0), nightly_every=0.05, clock=lambda: clock["now"]
        )
        for name in ("w1", "w2")
    ]
    await until(lambda: all(len(w.buildings) == 2 for w in workers), 10, "the buildings split")
    for worker in workers:
        for building_id in worker.buildings:
            await subscribed(worker, building_id)

    clock["now"] = at(NEW_YORK, 2026, 11, 1, 2, 0)  # the night the clocks go back
    await publishes(watcher, 12)  # 4 buildings of 3 places each
    await asyncio.sleep(0.5)
    assert len(watcher.messages) == 12 and len(await attempts()) == 12
    for worker in workers:
        reset = {b for b, night in worker._last_night.items() if night == date(2026, 11, 1)}
        assert reset == set(worker.buildings)


@pytest.mark.django_db
def test_an_admin_sets_a_buildings_nightly_reset_time_in_local_time(hq):
    from django.contrib.auth.models import User

    admin = Client()
    admin.force_login(User.objects.create_superuser("root", password="x"))
    url = f"/admin/dashboard/building/{hq[Scope.BUILDING]}/change/"
    html = admin.get(url).content.decode()
    assert 'name="nightly_reset_at"' in html
    assert "Local time of the nightly headcount reset; empty = off." in html
    form = {"id": hq[Scope.BUILDING], "name": "Headquarters", "timezone": "Europe/London"}
    form |= {"opening_days": ["0", "1", "2", "3", "4"], "opening_time": "08:00"}
    form |= {"closing_time": "18:00", "report_recipients": ""}
    form |= {"nightly_reset_at": "02:30", "roles-TOTAL_FORMS": 0, "roles-INITIAL_FORMS": 0}
    response = admin.post(url, form)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Building.objects.get(id=hq[Scope.BUILDING]).nightly_reset_at == time(2, 30)
