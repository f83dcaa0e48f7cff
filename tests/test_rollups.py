"""Headcounts and numeric meta rolled up per minute and per hour by the history writer.

The rollups are checked against the raw samples the same writer stored, computed here
independently: a chart or report read from them says what the raw rows say.
"""

from __future__ import annotations

import importlib
import random
import re
import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from django.test import Client

from dashboard import page_data
from dashboard.bridge.history import HistoryWriter
from dashboard.contract.topics import Scope
from dashboard.live import rollups
from dashboard.live.building_store import load_building
from dashboard.live.state import HeadcountValue, MetaValue
from dashboard.live.store import prune_history, write_batch
from dashboard.models import (
    Building,
    Device,
    HeadcountSample,
    MetaHour,
    MetaMinute,
    MetaSample,
    OccupancyDay,
    OccupancyHour,
    OccupancyMinute,
)
from tests.factories import PASSWORD, make_building, make_people

pytestmark = pytest.mark.django_db(transaction=True)

MONDAY = datetime(2026, 3, 2, tzinfo=UTC)
STEP = timedelta(seconds=20)  # the fast clock: a reading of each place every 20 s, for a day
OCCUPANCY_COLUMNS = (
    "count_min",
    "count_max",
    "count_sum",
    "count_n",
    "count_last",
    "count_max_at",
    "in_increment",
    "out_increment",
    "in_last",
    "out_last",
)


@pytest.fixture
def hq() -> dict[str, uuid.UUID]:
    return make_building()


def simulated_day(hq: dict[str, uuid.UUID]) -> list[object]:
    """A day of people coming and going through the building's door and its office's, with the
    office's counter reset (a device restart) at noon; the lamp's temperature and on/off."""
    rng = random.Random(19)
    places = {Scope.BUILDING: [0, 0, 0], Scope.SPACE: [0, 0, 0]}  # count, in, out
    records: list[object] = []
    at = MONDAY
    while at < MONDAY + timedelta(days=1):
        for scope, place in places.items():
            arriving = rng.randint(0, 3)
            leaving = rng.randint(0, min(3, place[0] + arriving))
            place[0] += arriving - leaving
            place[1] += arriving
            place[2] += leaving
            if scope == Scope.SPACE and at == MONDAY + timedelta(hours=12):
                place[1:] = [arriving, leaving]
            for kind, value in zip(rollups.KINDS, place, strict=True):
                records.append(HeadcountValue(scope, hq[scope], kind, value, at))
        if at.second == 0:
            temperature = round(20 + rng.random() * 5, 2)
            records.append(MetaValue(hq[Scope.DEVICE], "temperature", temperature, "", "C", "", at))
            records.append(MetaValue(hq[Scope.DEVICE], "onoff", rng.random() < 0.5, "", "", "", at))
        at += STEP
    return records


def expected_occupancy(width: int) -> dict[tuple[uuid.UUID, datetime], dict[str, Any]]:
    """The buckets as the raw samples say, computed without the rollup code."""
    rows: dict[tuple[uuid.UUID, datetime], dict[str, Any]] = {}
    previous: dict[tuple[uuid.UUID, str], int] = {}
    for entity_id, kind, value, at in HeadcountSample.objects.order_by(
        "received_at", "id"
    ).values_list("entity_id", "kind", "value", "received_at"):
        start = datetime.fromtimestamp(at.timestamp() // width * width, UTC)
        row = rows.setdefault(
            (entity_id, start),
            {
                "counts": [],
                "in_increment": 0,
                "out_increment": 0,
                "in_last": previous.get((entity_id, "headcount_in")),
                "out_last": previous.get((entity_id, "headcount_out")),
            },
        )
        if kind == "head_count":
            row["counts"].append((value, at))
            continue
        side = "in" if kind == "headcount_in" else "out"
        before = previous.get((entity_id, kind))
        if before is not None:
            row[f"{side}_increment"] += value - before if value >= before else value
        row[f"{side}_last"] = previous[(entity_id, kind)] = value
    for row in rows.values():
        counts = [value for value, _ in row.pop("counts")]
        row["count_max"] = max(counts)
        row["count_mean"] = sum(counts) / len(counts)
        row["count_min"] = min(counts)
        row["count_n"] = len(counts)
    return rows


def stored_occupancy(model: Any) -> dict[tuple[uuid.UUID, datetime], dict[str, Any]]:
    return {
        (row.entity_id, row.bucket): {
            "count_max": row.count_max,
            "count_mean": row.count_mean,
            "count_min": row.count_min,
            "count_n": row.count_n,
            "in_increment": row.in_increment,
            "out_increment": row.out_increment,
            "in_last": row.in_last,
            "out_last": row.out_last,
        }
        for row in model.objects.all()
    }


async def write_through_the_writer(building: uuid.UUID, records: list[object], every: int) -> None:
    """Through the bridge's own writer: a flush each ``every`` records, batches of 500."""
    writer = HistoryWriter(60, batch_size=500)
    for n, record in enumerate(records, 1):
        writer.add(building, record)
        if n % every == 0:
            await writer.flush()
    await writer.close()
    assert writer.dropped == 0 and writer.failures == 0


async def test_a_day_of_headcounts_rolls_up_to_minutes_and_hours_that_match_the_raw_samples(hq):
    records = simulated_day(hq)
    # 1,000 records a flush: batches end mid-minute and mid-hour, as a live writer's do.
    await write_through_the_writer(hq[Scope.BUILDING], records, every=1_000)

    minutes, hours = await _sync(
        lambda: (stored_occupancy(OccupancyMinute), stored_occupancy(OccupancyHour))
    )
    want_minutes, want_hours = await _sync(
        lambda: (expected_occupancy(rollups.MINUTE), expected_occupancy(rollups.HOUR))
    )
    assert len(minutes) == 2 * 24 * 60 and len(hours) == 2 * 24
    assert minutes == want_minutes  # max and mean exactly, and min, n, in/out increments
    assert hours == want_hours
    # The office's counter fell at noon: it counted on from 0, nothing was lost or negative.
    noon = await _sync(
        lambda: OccupancyHour.objects.get(
            entity_id=hq[Scope.SPACE], bucket=MONDAY + timedelta(hours=12)
        )
    )
    assert noon.in_increment > 0 and noon.out_increment > 0

    temperatures = await _sync(
        lambda: [
            (m.bucket, m.value_min, m.value_max, m.value_sum, m.value_n, m.value_last)
            for m in MetaMinute.objects.filter(name="temperature").order_by("bucket")
        ]
    )
    raw = await _sync(
        lambda: list(
            MetaSample.objects.filter(name="temperature")
            .order_by("received_at")
            .values_list("received_at", "value")
        )
    )
    assert len(temperatures) == len(raw) == 24 * 60  # a reading a minute: a row a minute
    assert [(at, v, v, v, 1, v) for at, v in raw] == temperatures
    # On/off is a state, not a number: no rollup, its timeline reads the raw samples.
    assert not await _sync(lambda: MetaMinute.objects.filter(name="onoff").exists())
    assert await _sync(lambda: MetaHour.objects.filter(name="temperature").count()) == 24


async def test_a_writer_restarted_mid_minute_loses_and_doubles_nothing(hq):
    building, space = hq[Scope.BUILDING], hq[Scope.SPACE]
    minute = MONDAY + timedelta(minutes=7)
    readings = [
        # count, in counter at each 10 s of the minute
        (3, 100),
        (5, 102),
        (4, 102),
        (9, 107),
        (2, 107),
        (6, 111),
    ]
    records: list[object] = []
    for n, (count, entered) in enumerate(readings):
        at = minute + timedelta(seconds=10 * n)
        records.append(HeadcountValue(Scope.SPACE, space, "head_count", count, at))
        records.append(HeadcountValue(Scope.SPACE, space, "headcount_in", entered, at))
    # The bridge stops after the first half of the minute; a new one writes the rest.
    await write_through_the_writer(building, records[:6], every=6)
    await write_through_the_writer(building, records[6:], every=6)

    row = await _sync(lambda: OccupancyMinute.objects.get(entity_id=space))
    assert (row.count_min, row.count_max, row.count_sum, row.count_n) == (2, 9, 29, 6)
    assert row.count_last == 6 and row.count_max_at == minute + timedelta(seconds=30)
    assert (row.in_increment, row.in_last) == (11, 111)  # 100 is where counting started
    hour = await _sync(lambda: OccupancyHour.objects.get(entity_id=space))
    assert (hour.count_max, hour.count_sum, hour.count_n, hour.in_increment) == (9, 29, 6, 11)


def test_a_minute_of_counts_alone_between_two_counter_readings_loses_no_increment(hq):
    space = hq[Scope.SPACE]
    for n, (kind, value) in enumerate(
        (("headcount_in", 10), ("head_count", 3), ("headcount_in", 15))
    ):  # three batches, three minutes
        at = MONDAY + timedelta(minutes=n)
        write_batch([(hq[Scope.BUILDING], HeadcountValue(Scope.SPACE, space, kind, value, at))])
    minutes = OccupancyMinute.objects.filter(entity_id=space).order_by("bucket")
    assert [(m.in_increment, m.in_last) for m in minutes] == [(0, 10), (0, 10), (5, 15)]
    assert OccupancyHour.objects.get(entity_id=space).in_increment == 5


def test_pruning_keeps_each_tier_for_its_own_window(hq):
    now = MONDAY
    ages = [timedelta(days=d) for d in (1, 29, 31, 34, 36, 700, 729, 731)]
    for age in ages:
        at = now - age
        write_batch(
            [
                (hq[Scope.BUILDING], HeadcountValue(Scope.SPACE, hq[Scope.SPACE], "head_count", 1, at)),
                (hq[Scope.BUILDING], MetaValue(hq[Scope.DEVICE], "temperature", 20.5, "", "C", "", at)),
            ]
        )  # fmt: skip

    removed = prune_history(30, now, minute_days=35, hour_days=730)

    def ages_of(model: Any) -> list[int]:
        return sorted((now - b).days for b in model.objects.values_list("bucket", flat=True))

    def raw_ages(model: Any) -> list[int]:
        return sorted((now - b).days for b in model.objects.values_list("received_at", flat=True))

    assert raw_ages(HeadcountSample) == raw_ages(MetaSample) == [1, 29]
    assert ages_of(OccupancyMinute) == ages_of(MetaMinute) == [1, 29, 31, 34]
    assert ages_of(OccupancyHour) == ages_of(MetaHour) == [1, 29, 31, 34, 36, 700, 729]
    assert removed["OccupancyMinute"] == removed["MetaMinute"] == 4
    assert removed["OccupancyHour"] == removed["MetaHour"] == 1


def test_the_backfill_migration_makes_the_rows_the_live_writer_made(hq, monkeypatch):
    rng = random.Random(7)
    at, entered = MONDAY, 0
    batches: list[list[tuple[uuid.UUID, object]]] = []
    for _ in range(40):  # batches of uneven sizes, a counter reset among them
        batch: list[tuple[uuid.UUID, object]] = []
        for _ in range(rng.randint(1, 30)):
            at += timedelta(seconds=rng.randint(1, 90))
            entered = rng.randint(0, 5) if rng.random() < 0.02 else entered + rng.randint(0, 4)
            for record in (
                HeadcountValue(Scope.AREA, hq[Scope.AREA], "head_count", rng.randint(0, 9), at),
                HeadcountValue(Scope.AREA, hq[Scope.AREA], "headcount_in", entered, at),
                MetaValue(hq[Scope.DEVICE], "als", rng.randint(0, 900), "", "lux", "", at),
                MetaValue(hq[Scope.DEVICE], "mode", "auto", "", "", "", at),
            ):
                batch.append((hq[Scope.BUILDING], record))
        batches.append(batch)
    for batch in batches:
        write_batch(batch)
    live = snapshot()
    assert live["OccupancyMinute"] and live["MetaHour"]

    migration = importlib.import_module("dashboard.migrations.0009_backfill_rollups")
    monkeypatch.setattr(migration, "CHUNK", 37)  # chunks end anywhere, as batches did
    migration.backfill_from(
        HeadcountSample.objects, MetaSample.objects, rollups.default_tables()
    )  # it starts by emptying the tables

    assert snapshot() == live


def test_the_day_rows_written_live_are_those_the_backfill_makes_from_the_hours(hq):
    from zoneinfo import ZoneInfo

    from django.apps import apps

    # New York, open 08:30-17:00 on weekdays: local days end at 04:00 or 05:00 UTC, and
    # the half hour puts the 08:00 hour in.
    Building.objects.filter(id=hq[Scope.BUILDING]).update(
        timezone="America/New_York", opening_time=time(8, 30), closing_time=time(17, 0)
    )
    rng = random.Random(11)
    at = datetime(2026, 3, 6, 20, tzinfo=UTC)  # Friday 15:00 in New York: over a weekend
    batches: list[list[tuple[uuid.UUID, object]]] = []
    while at < datetime(2026, 3, 10, 6, tzinfo=UTC):
        batch: list[tuple[uuid.UUID, object]] = []
        # Batches end anywhere in an hour: an hour's mean changes from one to the next.
        for _ in range(rng.randint(1, 40)):
            at += timedelta(seconds=rng.randint(20, 400))
            for scope in (Scope.BUILDING, Scope.SPACE, Scope.AREA):
                count = HeadcountValue(scope, hq[scope], "head_count", rng.randint(0, 60), at)
                batch.append((hq[Scope.BUILDING], count))
        batches.append(batch)
    for batch in batches:
        write_batch(batch)
    live = sorted(
        OccupancyDay.objects.values_list(
            "entity_id", "day", "peak", "peak_at", "open_sum", "open_hours"
        )
    )
    zone = ZoneInfo("America/New_York")
    days = {day for _, day, *_ in live}
    assert days == {datetime(2026, 3, d).date() for d in range(6, 11)}  # Friday to Monday 01:00
    assert {open_hours for *_, open_hours in live} >= {0, 9}  # weekend; 08:00-17:00 weekdays
    # Each day's peak is the largest hour of that local day, reached when that hour says.
    space = hq[Scope.SPACE]
    for _, day, peak, peak_at, *_ in (row for row in live if row[0] == space):
        hours = [
            h
            for h in OccupancyHour.objects.filter(entity_id=space)
            if h.bucket.astimezone(zone).date() == day
        ]
        assert peak == max(h.count_max for h in hours)
        assert peak_at == min(h.count_max_at for h in hours if h.count_max == peak)

    OccupancyDay.objects.all().delete()
    migration = importlib.import_module("dashboard.migrations.0013_backfill_occupancy_days")
    migration.backfill(apps, None)

    backfilled = sorted(
        OccupancyDay.objects.values_list(
            "entity_id", "day", "peak", "peak_at", "open_sum", "open_hours"
        )
    )
    assert backfilled == live


def snapshot() -> dict[str, list[tuple[Any, ...]]]:
    meta_columns = ("device_id", "name", "bucket", "value_min", "value_max", "value_sum")
    return {
        model.__name__: sorted(model.objects.values_list(*columns))
        for model, columns in (
            (OccupancyMinute, ("entity_id", "bucket", *OCCUPANCY_COLUMNS)),
            (OccupancyHour, ("entity_id", "bucket", *OCCUPANCY_COLUMNS)),
            (MetaMinute, (*meta_columns, "value_n", "value_last")),
            (MetaHour, (*meta_columns, "value_n", "value_last")),
        )
    }


def test_the_buildings_chart_reads_the_minute_rollups_not_raw_samples(hq):
    building = Building.objects.get(id=hq[Scope.BUILDING])  # its zone is UTC
    now = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    write_batch(
        [
            (building.id, HeadcountValue(Scope.BUILDING, building.id, "head_count", value, at))
            for value, at in ((4, now - timedelta(seconds=70)), (6, now), (8, now))
        ]
    )
    HeadcountSample.objects.all().delete()  # raw retention passed: the chart does not care
    inventory = load_building(building.id)
    assert inventory is not None
    trend = page_data.headcount_trend(inventory, now)
    noon = int(now.timestamp())
    assert trend["data"][0] == [noon - 120, noon]
    assert trend["data"][1] == [4, 8]  # each minute's last count


def test_the_device_page_charts_numbers_and_draws_states_as_a_timeline(hq):
    people = make_people(hq[Scope.BUILDING])
    now = datetime.now(UTC)
    device = hq[Scope.DEVICE]
    write_batch(
        [
            (hq[Scope.BUILDING], record)
            for n in range(6)
            for record in (
                MetaValue(device, "temperature", 20 + n, "", "C", "", now - timedelta(hours=n)),
                MetaValue(device, "onoff", n % 2 == 0, "", "", "", now - timedelta(hours=n)),
            )
        ]
    )
    client = Client()
    assert client.login(username=people.viewer.username, password=PASSWORD)
    html = client.get(f"/buildings/{hq[Scope.BUILDING]}/devices/{device}/").content.decode()
    charts = page_data.meta_charts(device, UTC, now)
    assert [c["name"] for c in charts["charts"]] == ["temperature"]
    assert charts["charts"][0]["minute"][2] == [25, 24, 23, 22, 21, 20]  # means, oldest first
    assert len(charts["charts"][0]["hour"][0]) == 6
    assert 'id="chart-temperature"' in html and 'id="meta-charts"' in html
    timeline = re.search(r'<svg class="timeline-bar".*?</svg>', html, re.S)
    assert timeline is not None
    assert timeline.group(0).count("<rect") == 6  # on, off, on, … each hour
    assert "state-on" in timeline.group(0) and "state-off" in timeline.group(0)
    # The raw rows are still there, folded away.
    assert re.search(r"<details class=\"raw-values\">\s*<summary>Raw values</summary>", html)


def test_only_finite_numbers_roll_up():
    assert [rollups.numeric(v) for v in (3, 2.5, True, "4", None, float("nan"), 10**400)] == [
        3.0,
        2.5,
        None,
        None,
        None,
        None,
        None,
    ]
    assert [rollups.rise(None, 50), rollups.rise(50, 53), rollups.rise(53, 2)] == [0, 3, 2]


async def _sync(fn: Any) -> Any:
    from asgiref.sync import sync_to_async
    from django.db import connections

    def call() -> Any:
        # The executor's thread outlives the test: a connection left open there would keep
        # PostgreSQL from dropping the test database (make test runs these tests there too).
        try:
            return fn()
        finally:
            connections.close_all()

    return await sync_to_async(call)()


def test_several_readings_a_minute_roll_up_to_the_minutes_and_hours_the_raw_samples_give(hq):
    """Readings of two devices every 7 s over three hours, written in shuffled batches: each
    minute and hour row holds its readings' min, max, sum, count and last, as computed here
    from the stored samples; each sample holds the value and moment it was given."""
    rng = random.Random(7)
    devices = [hq[Scope.DEVICE], Device.objects.create(building_id=hq[Scope.BUILDING]).id]
    readings = [
        MetaValue(device, "dim", value, "", "%", "", MONDAY + timedelta(seconds=7 * n))
        for n in range(3 * 3600 // 7)
        for device, value in zip(devices, (n % 101, rng.uniform(-5, 40)), strict=True)
    ]
    readings += [  # numbers whose text is not the plain one
        MetaValue(devices[0], "ratio", 1e-7, "", "", "", MONDAY),
        MetaValue(devices[0], "big", 10**30, "", "", "", MONDAY),
    ]
    odd = [  # states, text and JSON are stored as given, never rolled up
        MetaValue(devices[0], "mode", "eco", "", "", "", MONDAY),
        MetaValue(devices[0], "flags", {"a": [1, None]}, "", "", "", MONDAY),
        MetaValue(devices[0], "on", True, "", "", "", MONDAY),
    ]
    records = [(hq[Scope.BUILDING], value) for value in [*odd, *readings]]
    for start in range(0, len(records), 1_000):  # batches end mid-minute, mid-hour
        batch = records[start : start + 1_000]
        rng.shuffle(batch)  # within a batch, readings need not come in time order
        write_batch(batch)

    stored = list(MetaSample.objects.values_list("device_id", "name", "value", "received_at"))
    assert sorted(stored, key=repr) == sorted(
        ((v.device_id, v.name, v.value, v.received_at) for v in [*readings, *odd]), key=repr
    )
    for model, width in ((MetaMinute, rollups.MINUTE), (MetaHour, rollups.HOUR)):
        want: dict[tuple[Any, ...], list[float]] = {}
        for v in sorted(readings, key=lambda v: v.received_at):
            start = int(v.received_at.timestamp()) // width * width
            key = (v.device_id, v.name, datetime.fromtimestamp(start, UTC))
            want.setdefault(key, []).append(float(v.value))
        rows = {
            (r.device_id, r.name, r.bucket): (
                r.value_min,
                r.value_max,
                r.value_sum,
                r.value_n,
                r.value_last,
            )
            for r in model.objects.all()
        }
        assert rows.keys() == want.keys()
        for key, values in want.items():
            low, high, total, count, last = rows[key]
            assert (low, high, count, last) == (min(values), max(values), len(values), values[-1])
            assert total == pytest.approx(sum(values))
