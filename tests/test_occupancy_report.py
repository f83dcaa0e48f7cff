"""The occupancy report: a facility manager reads how full each place was, and exports it.

The rollup tables are filled here directly, as the history writer would have filled them.
Headquarters is in New York: on Tuesday 10 March 2026 it is UTC-4 (summer time began on the
8th), so 03:30 UTC on the 11th is 23:30 on the 10th there.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.test import Client

from dashboard.contract.topics import Scope
from dashboard.models import Building, LatestHeadcount, OccupancyHour, OccupancyMinute

pytestmark = pytest.mark.django_db

TUESDAY = "2026-03-10"
NONE = "\N{EN DASH}"  # what a cell without a figure shows


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def rollup(
    model, hq: dict, scope: Scope, start: str, low: int, high: int, total: int, n: int, **more
):
    """A row of a place (``start`` in UTC), as the rollup writer would leave it."""
    return model.objects.create(
        building_id=hq[Scope.BUILDING],
        scope=scope.value,
        entity_id=hq[scope],
        bucket=at(start),
        count_min=low,
        count_max=high,
        count_sum=total,
        count_n=n,
        count_last=high,
        count_max_at=more.pop("max_at", None) or at(start),
        **more,
    )


def hour(hq: dict, scope: Scope, start: str, low: int, high: int, total: int, n: int, **more):
    return rollup(OccupancyHour, hq, scope, start, low, high, total, n, **more)


def minute(hq: dict, scope: Scope, start: str, low: int, high: int) -> None:
    rollup(OccupancyMinute, hq, scope, start, low, high, low + high, 2)


@pytest.fixture
def tuesday(hq: dict) -> dict:
    """Headquarters in New York and its Tuesday: the Open Office (capacity 40) busy in the
    morning and at night, the building's own count in the morning, the Lobby (capacity 10)
    silent."""
    Building.objects.filter(id=hq[Scope.BUILDING]).update(timezone="America/New_York")
    # 09:00 and 10:00 local, open: means 30 and 50; over capacity all of 10:00.
    hour(hq, Scope.SPACE, "2026-03-10T13:00", 25, 35, 300, 10)
    hour(hq, Scope.SPACE, "2026-03-10T14:00", 44, 50, 200, 4, in_increment=12, out_increment=3)
    # 20:00 and 23:00 local, closed: the peak, received at 03:30 UTC on the 11th.
    hour(hq, Scope.SPACE, "2026-03-11T00:00", 2, 8, 50, 10)
    hour(hq, Scope.SPACE, "2026-03-11T03:00", 30, 55, 90, 2, max_at=at("2026-03-11T03:30"))
    # Wednesday 09:00 local.
    hour(hq, Scope.SPACE, "2026-03-11T13:00", 10, 20, 150, 10)
    hour(hq, Scope.BUILDING, "2026-03-10T13:00", 50, 70, 600, 10)
    # The minutes over capacity: two throughout, one only at some reading.
    minute(hq, Scope.SPACE, "2026-03-10T14:05", 41, 45)
    minute(hq, Scope.SPACE, "2026-03-10T14:06", 38, 42)
    minute(hq, Scope.SPACE, "2026-03-11T03:30", 41, 55)
    return hq


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def report(client: Client, hq: dict, **params: str):
    return client.get(f"/buildings/{hq[Scope.BUILDING]}/occupancy/", params)


def export(client: Client, hq: dict, **params: str) -> list[dict[str, str]]:
    response = client.get(f"/buildings/{hq[Scope.BUILDING]}/occupancy.csv", params)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return list(csv.DictReader(io.StringIO(body.decode())))


def row_of(response, entity_id: uuid.UUID) -> dict[str, Any]:
    return next(r for r in response.context["rows"] if r["place_id"] == entity_id)


def cell(html: str, entity_id: uuid.UUID, field: str) -> str:
    """The text of one cell of the places table."""
    row = re.search(rf'<tr id="place-{entity_id}".*?</tr>', html, re.S)
    assert row, f"no row for {entity_id}"
    found = re.search(rf'<td data-field="{field}"[^>]*>(.*?)</td>', row.group(0), re.S)
    assert found
    return re.sub(r"<[^>]+>", "", found.group(1)).strip()


@pytest.mark.parametrize("role", ["viewer", "operator", "support"])
def test_every_role_on_the_building_reads_the_report(tuesday, people, role):
    client = logged_in(getattr(people, role))
    response = report(client, tuesday, **{"from": TUESDAY, "to": TUESDAY})
    assert response.status_code == 200
    assert "Occupancy · Headquarters" in response.content.decode()
    assert export(client, tuesday, **{"from": TUESDAY, "to": TUESDAY})
    building_page = client.get(f"/buildings/{tuesday[Scope.BUILDING]}/").content.decode()
    assert f'href="/buildings/{tuesday[Scope.BUILDING]}/occupancy/"' in building_page


def test_an_outsider_is_refused_and_an_unknown_building_is_not_found(tuesday, people):
    outsider = logged_in(people.outsider)
    assert report(outsider, tuesday).status_code == 403
    assert outsider.get(f"/buildings/{tuesday[Scope.BUILDING]}/occupancy.csv").status_code == 403
    unknown = uuid.uuid4()
    viewer = logged_in(people.viewer)
    assert viewer.get(f"/buildings/{unknown}/occupancy/").status_code == 404
    assert viewer.get(f"/buildings/{unknown}/occupancy.csv").status_code == 404
    assert Client().get(f"/buildings/{tuesday[Scope.BUILDING]}/occupancy/").status_code == 302


def test_a_value_at_0330_utc_counts_on_the_previous_day_in_new_york(tuesday, people):
    viewer = logged_in(people.viewer)
    tue = report(viewer, tuesday, **{"from": TUESDAY, "to": TUESDAY})
    space = row_of(tue, tuesday[Scope.SPACE])
    assert space["peak"] == 55
    assert space["peak_at"].astimezone(tue.context["period"].zone).isoformat() == (
        "2026-03-10T23:30:00-04:00"
    )
    assert cell(tue.content.decode(), tuesday[Scope.SPACE], "peak_at") == "Tue 10 Mar 23:30"
    wed = report(viewer, tuesday, **{"from": "2026-03-11", "to": "2026-03-11"})
    assert row_of(wed, tuesday[Scope.SPACE])["peak"] == 20


def test_peak_average_and_utilisation_are_as_computed_by_hand(tuesday, people):
    viewer = logged_in(people.viewer)
    html_response = report(viewer, tuesday, **{"from": TUESDAY, "to": TUESDAY})
    html = html_response.content.decode()
    space = tuesday[Scope.SPACE]
    # Open 08:00-18:00: the hours at 09:00 (mean 30) and 10:00 (mean 50); the night's
    # readings are outside opening hours. Capacity 40.
    assert cell(html, space, "peak") == "55"
    assert cell(html, space, "average_open") == "40.0"
    assert cell(html, space, "peak_pct") == "137.5 %"
    assert cell(html, space, "average_pct") == "100.0 %"
    # A day is short: counted in minutes, two over at every reading, three at some.
    assert cell(html, space, "over_capacity") == "≥ 2 min, ≤ 3 min"
    building = tuesday[Scope.BUILDING]
    assert cell(html, building, "peak") == "70"
    assert cell(html, building, "average_open") == "60.0"
    assert cell(html, building, "peak_pct") == NONE  # a building has no capacity
    area = tuesday[Scope.AREA]
    assert [cell(html, area, f) for f in ("peak", "average_open", "peak_pct")] == [NONE] * 3
    # Over a week the time over capacity is in hours: 10:00 throughout, 23:00 at some point.
    week = report(viewer, tuesday, **{"from": "2026-03-09", "to": "2026-03-15"})
    week_html = week.content.decode()
    assert cell(week_html, space, "over_capacity") == "≥ 1 h, ≤ 2 h"
    assert cell(week_html, space, "average_open") == str(round((30 + 50 + 15) / 3, 1))


def latest(hq: dict, scope: Scope, **values: int) -> None:
    """A place's latest headcounts, as the history writer keeps them."""
    for kind, value in values.items():
        LatestHeadcount.objects.create(
            building_id=hq[Scope.BUILDING],
            scope=scope.value,
            entity_id=hq[scope],
            kind=kind,
            value=value,
            received_at=at("2026-03-10T14:00"),
        )


def warning_of(html: str, entity_id: uuid.UUID) -> str | None:
    """The integrity warning of a place's row, as read: None when it shows none."""
    row = re.search(rf'<tr id="place-{entity_id}".*?</tr>', html, re.S)
    assert row, f"no row for {entity_id}"
    found = re.search(r'<p class="integrity-warning"[^>]*>(.*?)</p>', row.group(0), re.S)
    return re.sub(r"<[^>]+>", "", found.group(1)).strip() if found else None


def test_a_count_that_disagrees_with_its_counters_is_named_on_the_report(tuesday, people):
    # The Open Office counted 10 in and 3 out, yet reports 12 people; the Lobby's agree.
    latest(tuesday, Scope.SPACE, headcount_in=10, headcount_out=3, head_count=12)
    latest(tuesday, Scope.AREA, headcount_in=8, headcount_out=3, head_count=5)
    viewer = logged_in(people.viewer)
    html = report(viewer, tuesday, **{"from": TUESDAY, "to": TUESDAY}).content.decode()
    assert warning_of(html, tuesday[Scope.SPACE]) == (
        "Check the count now: in \N{MINUS SIGN} out = 7, count = 12"
    )
    assert warning_of(html, tuesday[Scope.AREA]) is None
    assert warning_of(html, tuesday[Scope.BUILDING]) is None  # no headcounts at all


def test_the_csv_by_day_matches_the_page(tuesday, people):
    viewer = logged_in(people.viewer)
    week = {"from": "2026-03-09", "to": "2026-03-15"}
    rows = export(viewer, tuesday, **week)
    zone_column = "day (America/New_York)"
    assert next(iter(rows[0])) == zone_column and list(rows[0])[-1] == "time_zone"
    assert {r["time_zone"] for r in rows} == {"America/New_York"}
    assert len(rows) == 7 * 3  # every place every day
    for day in ("2026-03-10", "2026-03-11"):
        page = report(viewer, tuesday, **{"from": day, "to": day})
        for shown in page.context["rows"]:
            line = next(
                r for r in rows if r[zone_column] == day and r["place_id"] == str(shown["place_id"])
            )
            assert line["place"] == shown["place"]
            for field in ("peak", "average_open", "peak_pct", "average_pct", "over_capacity"):
                expected = "" if shown[field] is None else str(shown[field])
                assert line[field] == expected, (day, shown["place"], field)
            peak_at = shown["peak_at"]
            zone = page.context["period"].zone
            assert line["peak_at"] == (peak_at.astimezone(zone).isoformat() if peak_at else "")
    tuesday_space = next(
        r for r in rows if r[zone_column] == TUESDAY and r["place_id"] == str(tuesday[Scope.SPACE])
    )
    assert tuesday_space["peak_at"] == "2026-03-10T23:30:00-04:00"


def test_the_csv_by_hour_is_on_the_building_clock(tuesday, people):
    rows = export(
        logged_in(people.viewer), tuesday, **{"from": TUESDAY, "to": TUESDAY, "by": "hour"}
    )
    column = "hour (America/New_York)"
    assert [r[column] for r in rows] == [
        "2026-03-10T09:00:00-04:00",
        "2026-03-10T09:00:00-04:00",
        "2026-03-10T10:00:00-04:00",
        "2026-03-10T20:00:00-04:00",
        "2026-03-10T23:00:00-04:00",
    ]
    ten = rows[2]
    assert (ten["place"], ten["count_max"], ten["count_mean"], ten["in"], ten["out"]) == (
        "Open Office",
        "50",
        "50.0",
        "12",
        "3",
    )


def test_a_hostile_place_name_is_neutralised_in_the_csv(tuesday, people):
    from dashboard.models import Space

    Space.objects.filter(id=tuesday[Scope.SPACE]).update(name="=HYPERLINK(1)")
    rows = export(logged_in(people.viewer), tuesday, **{"from": TUESDAY, "to": TUESDAY})
    assert {r["place"] for r in rows if r["place_id"] == str(tuesday[Scope.SPACE])} == {
        "'=HYPERLINK(1)"
    }


def test_a_hostile_place_name_is_shown_as_text_on_the_page(tuesday, people):
    from dashboard.models import Space

    Space.objects.filter(id=tuesday[Scope.SPACE]).update(name='<img src=x onerror="alert(1)">')
    html = report(logged_in(people.viewer), tuesday, **{"from": TUESDAY, "to": TUESDAY})
    row = re.search(rf'<tr id="place-{tuesday[Scope.SPACE]}".*?</tr>', html.content.decode(), re.S)
    assert row and "<img" not in row.group(0)
    assert "&lt;img src=x onerror=" in row.group(0)


def test_the_default_is_the_last_seven_days_in_the_building_zone(tuesday, people):
    response = report(logged_in(people.viewer), tuesday)
    period = response.context["period"]
    today = datetime.now(period.zone).date()
    assert (period.first, period.last) == (today - timedelta(days=6), today)


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"from": "2026-13-01"}, "Ignored “From”: not a date (use YYYY-MM-DD)."),
        ({"to": "yesterday"}, "Ignored “To”: not a date (use YYYY-MM-DD)."),
        (
            {"from": "2026-03-12", "to": "2026-03-10"},
            "“From” is after “To”: showing the last 7 days instead.",
        ),
        (
            {"from": "2024-01-01", "to": "2026-03-10"},
            "A report covers at most 366 days: showing the last 7 days instead.",
        ),
        ({"space": "not-a-space"}, "Ignored “Space”: not a space of this building."),
    ],
)
def test_bad_filters_are_reported_and_a_sane_period_shown(tuesday, people, params, problem):
    response = report(logged_in(people.viewer), tuesday, **params)
    assert response.status_code == 200
    assert problem in response.context["filters"].problems
    assert problem.replace("“", "&ldquo;").replace("”", "&rdquo;") in response.content.decode() or (
        problem in response.content.decode()
    )
    period = response.context["period"]
    assert 1 <= (period.last - period.first).days + 1 <= 7


def test_the_heatmap_and_chart_of_a_chosen_space(tuesday, people):
    response = report(
        logged_in(people.viewer),
        tuesday,
        **{"from": TUESDAY, "to": TUESDAY, "space": str(tuesday[Scope.SPACE])},
    )
    building, space = response.context["heatmaps"]
    assert space.place.entity_id == tuesday[Scope.SPACE]
    # Tuesday 10:00 local is the space's busiest hour (mean 50), then 23:00 (45).
    assert [(c["weekday"], c["hour"], c["mean"]) for c in space.busiest[:2]] == [
        ("Tuesday", 10, 50.0),
        ("Tuesday", 23, 45.0),
    ]
    assert building.busiest[0]["hour"] == 9
    chart = response.context["chart"]
    assert chart["step"] == 60  # a day: minute rows
    assert chart["zone"] == "America/New_York"
    assert len(chart["data"]) == 1 + 2 * 2  # time, then mean and peak of each place
    assert "Open Office" in response.content.decode()


def yesterday_noon(zone_name: str) -> datetime:
    zone = ZoneInfo(zone_name)
    day = datetime.now(zone).date() - timedelta(days=1)
    return datetime.combine(day, datetime.min.time(), tzinfo=zone).replace(hour=12).astimezone(UTC)


def test_the_digest_goes_to_the_recipients_with_the_csv(hq, people, mailoutbox):
    from django.core.management import call_command

    Building.objects.filter(id=hq[Scope.BUILDING]).update(
        timezone="America/New_York", report_recipients="fm@example.com\nops@example.com\n"
    )
    noon = yesterday_noon("America/New_York")
    hour(hq, Scope.SPACE, noon.replace(tzinfo=None).isoformat(), 30, 48, 350, 10)
    out = io.StringIO()
    call_command("send_occupancy_report", stdout=out)
    (mail,) = mailoutbox
    assert mail.to == ["fm@example.com", "ops@example.com"]
    assert mail.subject.startswith("Occupancy of Headquarters, ")
    assert "Open Office: 48 (120.0 %)" in mail.body
    # Over 40 at some reading of that hour, not at all: the digest says no more than it knows.
    assert "Over capacity:\n- Open Office: up to 1 h\n" in mail.body
    ((name, body, kind),) = mail.attachments
    assert name.endswith(".csv") and kind == "text/csv"
    rows = list(csv.DictReader(io.StringIO(body)))
    assert len(rows) == 7 * 3  # the last 7 complete days, every place
    day = noon.astimezone(ZoneInfo("America/New_York")).date().isoformat()
    busy = next(
        r for r in rows if r["place"] == "Open Office" and r["day (America/New_York)"] == day
    )
    assert (busy["peak"], busy["average_open"], busy["peak_pct"]) == ("48", "35.0", "120.0")
    lines = out.getvalue().splitlines()
    assert f"Headquarters ({hq[Scope.BUILDING]}): sent to 2 recipient(s)" in lines
    skipped = [line for line in lines if line.startswith("Elsewhere")]
    assert len(skipped) == 1 and skipped[0].endswith("no report recipients, skipped")


def test_a_daily_digest_covers_yesterday_of_one_building(hq, people, mailoutbox):
    from django.core.management import call_command

    Building.objects.filter(id=hq[Scope.BUILDING]).update(report_recipients="fm@example.com")
    Building.objects.filter(name="Elsewhere").update(report_recipients="else@example.com")
    call_command(
        "send_occupancy_report",
        "--building",
        str(hq[Scope.BUILDING]),
        "--period",
        "day",
        stdout=io.StringIO(),
    )
    (mail,) = mailoutbox
    yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
    assert mail.subject == f"Occupancy of Headquarters, {yesterday}"
    assert len(list(csv.DictReader(io.StringIO(mail.attachments[0][1])))) == 3


def test_an_unknown_building_is_an_error(db):
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="no building"):
        call_command("send_occupancy_report", "--building", str(uuid.uuid4()))


def admin_form(hq: dict, **changes: Any) -> dict[str, Any]:
    form = {
        "id": str(hq[Scope.BUILDING]),
        "name": "Headquarters",
        "timezone": "Europe/London",
        "opening_days": ["0", "1", "2", "3", "4", "5"],
        "opening_time": "07:00",
        "closing_time": "19:30",
        "report_recipients": "fm@example.com\n\n ops@example.com ",
        "roles-TOTAL_FORMS": "0",
        "roles-INITIAL_FORMS": "0",
        "roles-MIN_NUM_FORMS": "0",
        "roles-MAX_NUM_FORMS": "1000",
    }
    return {**form, **changes}


def test_staff_set_opening_hours_and_recipients_in_the_admin(hq, admin_client):
    url = f"/admin/dashboard/building/{hq[Scope.BUILDING]}/change/"
    page = admin_client.get(url).content.decode()
    assert "Opening days" in page and "Report recipients" in page
    response = admin_client.post(url, admin_form(hq))
    assert response.status_code == 302, response.content.decode()[:2000]
    building = Building.objects.get(id=hq[Scope.BUILDING])
    assert building.opening_days == [0, 1, 2, 3, 4, 5]
    assert building.report_recipients == "fm@example.com\nops@example.com"
    assert (building.opening_time.hour, building.closing_time.minute) == (7, 30)


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"report_recipients": "fm@example.com\nnot an address"}, "is not an e-mail address"),
        ({"opening_days": ["7"]}, "Select a valid choice"),
        ({"closing_time": "06:00"}, "Closing time must be after opening time."),
    ],
)
def test_the_admin_refuses_bad_addresses_days_and_hours(hq, admin_client, changes, error):
    url = f"/admin/dashboard/building/{hq[Scope.BUILDING]}/change/"
    response = admin_client.post(url, admin_form(hq, **changes))
    assert response.status_code == 200
    assert error in response.content.decode()
    assert Building.objects.get(id=hq[Scope.BUILDING]).report_recipients == ""


def test_an_opening_hours_edit_in_the_admin_is_reflected_in_the_report(
    tuesday, people, admin_client, django_capture_on_commit_callbacks
):
    url = f"/admin/dashboard/building/{tuesday[Scope.BUILDING]}/change/"
    viewer = logged_in(people.viewer)
    space = tuesday[Scope.SPACE]
    before = report(viewer, tuesday, **{"from": TUESDAY, "to": TUESDAY}).content.decode()
    assert cell(before, space, "average_open") == "40.0"  # 09:00 and 10:00 (means 30, 50)

    # Opening at 10:00 from now on: only the 10:00 hour counts towards Tuesday's average.
    new_hours = admin_form(tuesday, timezone="America/New_York", opening_time="10:00")
    with django_capture_on_commit_callbacks(execute=True):  # the day rows, once committed
        assert admin_client.post(url, new_hours).status_code == 302
    after = report(viewer, tuesday, **{"from": TUESDAY, "to": TUESDAY}).content.decode()
    assert [cell(after, space, f) for f in ("average_open", "average_pct", "peak")] == [
        "50.0",
        "125.0 %",
        "55",
    ]
    week = export(viewer, tuesday, **{"from": "2026-03-09", "to": "2026-03-15"})
    tuesday_row = next(
        r for r in week if r["day (America/New_York)"] == TUESDAY and r["place_id"] == str(space)
    )
    assert (tuesday_row["average_open"], tuesday_row["open_hours"]) == ("50.0", "1")


def test_a_zone_edit_moves_the_hours_to_their_new_local_days(
    tuesday, people, admin_client, django_capture_on_commit_callbacks
):
    url = f"/admin/dashboard/building/{tuesday[Scope.BUILDING]}/change/"
    # To London (UTC in March): the 03:00 UTC hour of the 11th is Wednesday's there.
    with django_capture_on_commit_callbacks(execute=True):
        assert admin_client.post(url, admin_form(tuesday)).status_code == 302
    viewer = logged_in(people.viewer)
    space = tuesday[Scope.SPACE]
    tue = report(viewer, tuesday, **{"from": TUESDAY, "to": TUESDAY})
    assert cell(tue.content.decode(), space, "peak") == "50"
    assert cell(tue.content.decode(), space, "peak_at") == "Tue 10 Mar 14:00"
    wed = report(viewer, tuesday, **{"from": "2026-03-11", "to": "2026-03-11"})
    assert row_of(wed, space)["peak"] == 55
    # Open 07:00-19:30 in London: 13:00 and 14:00 UTC on Tuesday, 13:00 on Wednesday.
    assert row_of(tue, space)["average_open"] == 40.0
    assert row_of(wed, space)["average_open"] == 15.0


def test_hours_changed_straight_in_the_database_are_picked_up_by_the_rebuild(tuesday, people):
    from django.core.management import call_command

    # A bulk update sends no signal: the report keeps the hours its day rows were made with
    # until they are made again.
    Building.objects.filter(id=tuesday[Scope.BUILDING]).update(opening_days=[])
    viewer = logged_in(people.viewer)
    out = io.StringIO()
    call_command("rebuild_occupancy_days", "--building", str(tuesday[Scope.BUILDING]), stdout=out)
    assert out.getvalue().startswith(f"Headquarters ({tuesday[Scope.BUILDING]}): ")
    html = report(viewer, tuesday, **{"from": TUESDAY, "to": TUESDAY}).content.decode()
    assert cell(html, tuesday[Scope.SPACE], "average_open") == NONE  # closed every day now
    assert cell(html, tuesday[Scope.SPACE], "peak") == "55"
