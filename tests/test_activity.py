"""The activity log: who tried which action on what, and how it went, as a page and as CSV."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client

from dashboard.contract.topics import Scope
from dashboard.models import ActionAttempt, Building

pytestmark = pytest.mark.django_db

XSS = "<script>alert(1)</script>"
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
HEADER = [
    "created_at",
    "username",
    "building_id",
    "target_type",
    "target_id",
    "target_name",
    "topic",
    "payload",
    "outcome",
    "reason",
    "acknowledged_at",
    "seen_at",
    "confirmation",  # whether the lamps followed: text, those that did not, those late
    "not_followed",
    "followed_late",
    "time_zone",
]


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def payload(kind: str, target_type: str, target_id, **value) -> str:
    return json.dumps(
        {
            "name": f"{kind} from the dashboard",
            "type": kind,
            "target_type": target_type,
            "target_id": str(target_id),
            "value": value,
        },
        separators=(",", ":"),
    )


def attempt(building, who, target_type, target_id, target_name, kind, outcome, at, **extra):
    fields = {
        "building_id": building,
        "user": who if not isinstance(who, str) else None,
        "username": who if isinstance(who, str) else who.username,
        "target_type": target_type,
        "target_id": target_id,
        "target_name": target_name,
        "topic": f"{target_type}s/{target_id}/actions",
        "payload": payload(kind, target_type, target_id, transition_time=5),
        "outcome": outcome,
        "created_at": at,
        **extra,
    }
    return ActionAttempt.objects.create(**fields)


@pytest.fixture
def log(hq, people):
    """A morning at Headquarters: Olivia dims and switches, Victor tries and is refused."""
    building, space, lamp = hq[Scope.BUILDING], hq[Scope.SPACE], hq[Scope.DEVICE]
    entries = {
        "dim office": attempt(
            building,
            people.operator,
            "space",
            space,
            "Open Office",
            "dim",
            ActionAttempt.SEEN,
            NOW - timedelta(hours=3),
            payload=payload("dim", "space", space, level=40, transition_time=5),
            acknowledged_at=NOW - timedelta(hours=3) + timedelta(seconds=1),
            seen_at=NOW - timedelta(hours=3) + timedelta(seconds=2),
        ),
        "lamp off": attempt(
            building,
            people.operator,
            "device",
            lamp,
            "Lamp 1",
            "off",
            ActionAttempt.FAILED,
            NOW - timedelta(hours=2),
            reason="broker did not acknowledge within 5 s",
        ),
        "victor refused": attempt(
            building,
            people.viewer,
            "space",
            space,
            "Open Office",
            "off",
            ActionAttempt.REFUSED,
            NOW - timedelta(hours=1),
            topic="",
            reason="victor is not an operator of Headquarters",
        ),
        "lamp on": attempt(
            building,
            people.operator,
            "device",
            lamp,
            "Lamp 1",
            "on",
            ActionAttempt.ACKNOWLEDGED,
            NOW - timedelta(minutes=10),
            acknowledged_at=NOW - timedelta(minutes=10) + timedelta(seconds=1),
        ),
    }
    elsewhere = Building.objects.get(name="Elsewhere")
    attempt(
        elsewhere.id,
        people.outsider,
        "space",
        space,
        "Somewhere else",
        "off",
        ActionAttempt.SEEN,
        NOW,
    )
    return entries


def url(hq, csv_export: bool = False) -> str:
    building = hq[Scope.BUILDING]
    return (
        f"/buildings/{building}/activity.csv" if csv_export else f"/buildings/{building}/activity/"
    )


def rows_on(html: str) -> list[int]:
    """Ids of the attempts listed on a page, in the order shown."""
    return [int(found) for found in re.findall(r'<tr id="attempt-row-(\d+)"', html)]


def ids(log, *names: str) -> list[int]:
    return [log[name].id for name in names]


def page(client: Client, hq, **params) -> str:
    response = client.get(url(hq), params)
    assert response.status_code == 200
    return response.content.decode()


def csv_rows(response) -> list[list[str]]:
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    text = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(text)))


def test_the_log_needs_a_login(client, hq):
    for address in (url(hq), url(hq, csv_export=True)):
        response = client.get(address)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")


def test_an_outsider_is_refused_and_an_unknown_building_is_not_found(hq, people):
    outsider = logged_in(people.outsider)
    assert outsider.get(url(hq)).status_code == 403
    assert outsider.get(url(hq, csv_export=True)).status_code == 403
    unknown = "00000000-0000-4000-8000-000000000000"
    viewer = logged_in(people.viewer)
    assert viewer.get(f"/buildings/{unknown}/activity/").status_code == 404
    assert viewer.get(f"/buildings/{unknown}/activity.csv").status_code == 404


def test_a_viewer_sees_who_did_what_newest_first(hq, people, log):
    html = page(logged_in(people.viewer), hq)
    assert rows_on(html) == ids(log, "lamp on", "victor refused", "lamp off", "dim office")
    assert "Activity · Headquarters" in html
    assert f'href="/buildings/{hq[Scope.BUILDING]}/"' in html  # back to the building
    assert "Somewhere else" not in html  # another building's log
    dim = re.search(rf'<tr id="attempt-row-{log["dim office"].id}".*?</tr>', html, re.S)
    row = dim.group(0)
    assert "olivia" in row and "Open Office" in row and "(space)" in row
    assert "<strong>dim</strong>" in row and "level 40" in row and "over 5 s" in row
    assert "<details><summary>Payload</summary><pre" in row
    assert "&quot;level&quot;:40" in row  # the exact payload, as text
    assert '<span class="outcome outcome-seen">seen</span>' in row
    assert '<time datetime="2026-03-10T09:00:00+00:00">2026-03-10 09:00:00 UTC</time>' in row


def test_times_are_shown_in_the_buildings_time_zone_not_the_servers(hq, people, log, settings):
    settings.TIME_ZONE = "America/New_York"
    Building.objects.filter(pk=hq[Scope.BUILDING]).update(timezone="Europe/Amsterdam")
    html = page(logged_in(people.viewer), hq)
    assert '<time datetime="2026-03-10T10:00:00+01:00">2026-03-10 10:00:00 CET</time>' in html
    assert "Times in Europe/Amsterdam" in html


def test_filters_narrow_the_log_by_user_target_and_outcome(hq, people, log):
    client = logged_in(people.operator)
    html = page(client, hq, user="victor")
    assert rows_on(html) == ids(log, "victor refused")
    assert '<option value="victor" selected>victor</option>' in html

    html = page(client, hq, target=str(hq[Scope.DEVICE]))
    assert rows_on(html) == ids(log, "lamp on", "lamp off")
    assert f'<option value="{hq[Scope.DEVICE]}" selected>Lamp 1 (device)</option>' in html

    html = page(client, hq, outcome="refused")
    assert rows_on(html) == ids(log, "victor refused")

    html = page(client, hq, user="olivia", target=str(hq[Scope.SPACE]), outcome="seen")
    assert rows_on(html) == ids(log, "dim office")

    html = page(client, hq, user="nobody")
    assert rows_on(html) == []
    assert "No action attempts match these filters." in html


def test_the_filter_form_offers_only_what_is_in_this_buildings_log(hq, people, log):
    html = page(logged_in(people.viewer), hq)
    users = re.search(r'<select id="activity-user".*?</select>', html, re.S).group(0)
    assert re.findall(r"<option[^>]*>([^<]*)</option>", users) == ["Anyone", "olivia", "victor"]
    targets = re.search(r'<select id="activity-target".*?</select>', html, re.S).group(0)
    assert re.findall(r"<option[^>]*>([^<]*)</option>", targets) == [
        "Any target",
        "Lamp 1 (device)",
        "Open Office (space)",
    ]
    outcomes = re.search(r'<select id="activity-outcome".*?</select>', html, re.S).group(0)
    assert re.findall(r'<option value="([^"]*)"', outcomes) == [
        "",
        "pending",
        "refused",
        "failed",
        "acknowledged",
        "seen",
    ]


def test_dates_narrow_the_log_to_whole_days(hq, people, log):
    client = logged_in(people.viewer)
    yesterday = attempt(
        hq[Scope.BUILDING],
        people.operator,
        "device",
        hq[Scope.DEVICE],
        "Lamp 1",
        "on",
        ActionAttempt.SEEN,
        NOW - timedelta(days=1),
    )
    everything_today = ids(log, "lamp on", "victor refused", "lamp off", "dim office")
    assert rows_on(page(client, hq, **{"from": "2026-03-10"})) == everything_today
    assert rows_on(page(client, hq, to="2026-03-09")) == [yesterday.id]
    html = page(client, hq, **{"from": "2026-03-09", "to": "2026-03-09"})
    assert rows_on(html) == [yesterday.id]
    assert 'name="from" value="2026-03-09"' in html


def test_bad_parameters_are_ignored_with_a_message_not_an_error(hq, people, log):
    client = logged_in(people.viewer)
    everything = ids(log, "lamp on", "victor refused", "lamp off", "dim office")
    for params, message in (
        ({"outcome": "nonsense"}, "Ignored “Outcome”"),
        ({"target": "not-a-uuid"}, "Ignored “Target”"),
        ({"from": "yesterday"}, "Ignored “From”"),
        ({"to": "2026-02-30"}, "Ignored “To”"),
        ({"to": "9999-12-31"}, "Ignored “To”"),
        ({"from": "0001-01-01"}, "Ignored “From”"),
        ({"user": "x" * 500}, "Ignored “User”"),
    ):
        html = page(client, hq, **params)
        assert rows_on(html) == everything, params
        assert message in html, params
    for bad_page in ("abc", "0", "-1", "999", ""):
        assert rows_on(page(client, hq, page=bad_page)) == everything
    html = page(client, hq, **{"from": "2026-03-11", "to": "2026-03-10"})
    assert rows_on(html) == []
    assert "“From” is after “To”" in html
    response = client.get(url(hq, csv_export=True), {"outcome": "nonsense", "page": "abc"})
    assert len(csv_rows(response)) == 1 + len(everything)


def test_a_long_log_comes_in_pages_of_100_that_keep_the_filters(hq, people):
    building, lamp = hq[Scope.BUILDING], hq[Scope.DEVICE]
    ActionAttempt.objects.bulk_create(
        ActionAttempt(
            building_id=building,
            user=people.operator,
            username="olivia",
            target_type="device",
            target_id=lamp,
            target_name="Lamp 1",
            payload=payload("on", "device", lamp),
            outcome=ActionAttempt.SEEN,
            created_at=NOW - timedelta(minutes=n),
        )
        for n in range(150)
    )
    client = logged_in(people.viewer)
    first = page(client, hq, user="olivia")
    assert len(rows_on(first)) == 100
    assert "Page 1 of 2" in first
    assert '<a href="?user=olivia&amp;page=2" rel="next">Older</a>' in first
    second = page(client, hq, user="olivia", page="2")
    assert len(rows_on(second)) == 50
    assert set(rows_on(first)).isdisjoint(rows_on(second))
    assert '<a href="?user=olivia&amp;page=1" rel="prev">Newer</a>' in second


def test_the_export_link_carries_the_filters(hq, people, log):
    html = page(logged_in(people.viewer), hq, user="olivia", outcome="seen", page="1")
    building = hq[Scope.BUILDING]
    assert f'<a href="/buildings/{building}/activity.csv?user=olivia&amp;outcome=seen"' in html


def test_the_csv_holds_exactly_the_filtered_attempts(hq, people, log):
    client = logged_in(people.viewer)
    response = client.get(url(hq, csv_export=True), {"target": str(hq[Scope.DEVICE])})
    assert response.streaming
    building = hq[Scope.BUILDING]
    assert response["Content-Disposition"] == f'attachment; filename="activity-{building}.csv"'
    rows = csv_rows(response)
    assert rows[0] == HEADER
    lamp_on, lamp_off = log["lamp on"], log["lamp off"]
    assert rows[1:] == [
        [
            "2026-03-10T11:50:00+00:00",
            "olivia",
            str(building),
            "device",
            str(hq[Scope.DEVICE]),
            "Lamp 1",
            lamp_on.topic,
            lamp_on.payload,
            "acknowledged",
            "",
            "2026-03-10T11:50:01+00:00",
            "",
            *["", "", ""],  # no lamps followed: written without any
            "UTC",
        ],
        [
            "2026-03-10T10:00:00+00:00",
            "olivia",
            str(building),
            "device",
            str(hq[Scope.DEVICE]),
            "Lamp 1",
            lamp_off.topic,
            lamp_off.payload,
            "failed",
            "broker did not acknowledge within 5 s",
            "",
            "",
            *["", "", ""],
            "UTC",
        ],
    ]
    everything = csv_rows(client.get(url(hq, csv_export=True)))
    assert [row[0] for row in everything[1:]] == [
        "2026-03-10T11:50:00+00:00",
        "2026-03-10T11:00:00+00:00",
        "2026-03-10T10:00:00+00:00",
        "2026-03-10T09:00:00+00:00",
    ]
    assert json.loads(everything[-1][7])["value"] == {"level": 40, "transition_time": 5}


def test_what_operators_typed_is_shown_as_text_never_as_markup(hq, people):
    attempt(
        hq[Scope.BUILDING],
        XSS,
        "space",
        hq[Scope.SPACE],
        XSS,
        "dim",
        ActionAttempt.REFUSED,
        NOW,
        payload=json.dumps({"type": XSS, "name": XSS, "value": {"level": XSS}}),
        reason=XSS,
    )
    html = page(logged_in(people.viewer), hq)
    assert XSS not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "alert(1)" in html and "<script>" not in html


def test_an_unreadable_payload_is_shown_as_it_is(hq, people):
    for raw in ("not json", "[1, 2]", '{"type": 3, "value": "high"}', "{" * 5000):
        attempt(
            hq[Scope.BUILDING],
            people.operator,
            "space",
            hq[Scope.SPACE],
            "Open Office",
            "dim",
            ActionAttempt.FAILED,
            NOW,
            payload=raw,
        )
    attempt(
        hq[Scope.BUILDING],
        people.operator,
        "device",
        hq[Scope.DEVICE],
        "Lamp 1",
        "dim",
        ActionAttempt.SEEN,
        NOW,
        topic=f"devices/{hq[Scope.DEVICE]}/actions/dim",
        payload='{"value": {"level": 12.5}}',
    )
    html = page(logged_in(people.viewer), hq)
    assert html.count('<span class="muted">unreadable</span>') == 4
    assert re.search(r"<strong>dim</strong>\s*· level 12.5", html)  # type from its topic
    assert "not json" in html


def test_a_formula_in_a_cell_is_defused_for_spreadsheets(hq, people):
    for n, reason in enumerate(("=cmd|' /C calc'!A0", "+1", "-1", "@SUM(A1)", "\tx", "plain")):
        attempt(
            hq[Scope.BUILDING],
            "=HYPERLINK(evil)" if n == 0 else "olivia",
            "space",
            hq[Scope.SPACE],
            "Open Office",
            "off",
            ActionAttempt.REFUSED,
            NOW - timedelta(minutes=n),
            reason=reason,
        )
    rows = csv_rows(logged_in(people.viewer).get(url(hq, csv_export=True)))
    assert [row[9] for row in rows[1:]] == [
        "'=cmd|' /C calc'!A0",
        "'+1",
        "'-1",
        "'@SUM(A1)",
        "'\tx",
        "plain",
    ]
    assert rows[1][1] == "'=HYPERLINK(evil)"


def test_the_page_has_headings_and_labelled_fields(hq, people, log):
    html = page(logged_in(people.viewer), hq)
    assert "<h1>" in html and '<section aria-labelledby="activity-heading">' in html
    for field_id in re.findall(r'<(?:input|select)[^>]* id="([^"]+)"', html):
        assert f'<label for="{field_id}">' in html
    for label in ("User", "Target", "Outcome", "From", "To"):
        assert f">{label}</label>" in html
    assert '<button type="submit">Filter</button>' in html
    assert ">Export CSV</a>" in html


def test_staff_read_the_log_in_the_admin_but_cannot_change_it(admin_client, log):
    response = admin_client.get("/admin/dashboard/actionattempt/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "victor is not an operator of Headquarters" in html
    assert "/admin/dashboard/actionattempt/add/" not in html
    assert not response.context["cl"].model_admin.has_add_permission(response.wsgi_request)
    assert admin_client.get("/admin/dashboard/actionattempt/add/").status_code == 403
    one = log["lamp off"]
    detail = admin_client.get(f"/admin/dashboard/actionattempt/{one.id}/change/")
    assert detail.status_code == 200  # read only: no save button
    assert 'name="_save"' not in detail.content.decode()
    assert admin_client.post(f"/admin/dashboard/actionattempt/{one.id}/delete/").status_code == 403
    assert ActionAttempt.objects.filter(id=one.id).exists()
    searched = admin_client.get("/admin/dashboard/actionattempt/", {"q": "not an operator"})
    assert searched.context["cl"].result_count == 1


@pytest.mark.django_db(transaction=True)
async def test_served_by_daphne_the_csv_streams_asynchronously(async_client, hq, people, log):
    await async_client.aforce_login(people.viewer)
    response = await async_client.get(url(hq, csv_export=True), {"user": "victor"})
    assert response.status_code == 200
    assert response.is_async
    text = b"".join([chunk async for chunk in response.streaming_content]).decode()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == HEADER
    assert [row[1] for row in rows[1:]] == ["victor"]
