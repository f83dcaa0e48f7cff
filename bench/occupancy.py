"""Scenario 8, occupancy: server time for a building's occupancy report over a month.

A building of 500 places (the building, spaces and areas, each with a capacity) gets 30 days
of per-minute rollups (21.6 million rows) and the matching hour rows, written straight into
the served SQLite file as the history writer would have left them: a working-day profile,
one place in ten going over its capacity at the busiest hours. The day rows the report reads
(15,000) are then made from the hour rows by ``manage.py rebuild_occupancy_days``, the
statement the writer runs after each batch, timed apart. The report of those 30 days
is then fetched over loopback with a logged-in session and timed to its last byte (the
median of a few renders; the first, warming caches, is not counted). Baseline: the login
page from the same server at the same moments.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import statistics
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bench.figures import Figure, Target, figure
from bench.harness import Stack
from bench.render import time_page

ZONE = "Europe/London"
ROW_COLUMNS = (
    "building_id, scope, entity_id, bucket, count_min, count_max, count_sum, count_n, "
    "count_last, count_max_at, in_increment, out_increment, in_last, out_last"
)
# How full a place is, as a share of its capacity, by local hour on a working day.
WORKDAY = [0, 0, 0, 0, 0, 0, 0.02, 0.1, 0.45, 0.7, 0.8, 0.75, 0.6, 0.7, 0.8, 0.7, 0.5, 0.25]
WORKDAY += [0.08, 0.03, 0.01, 0, 0, 0]
WEEKEND = [share / 8 for share in WORKDAY]


@dataclass
class Occupancy:
    places: int
    days: int
    minute_rows: int
    fill_seconds: float
    days_seconds: float
    page_ms: list[float]
    login_ms: list[float]
    page_bytes: int

    def summary(self) -> dict[str, Any]:
        return {
            "places": self.places,
            "days": self.days,
            "minute_rows": self.minute_rows,
            "fill_seconds": round(self.fill_seconds, 1),
            "days_seconds": round(self.days_seconds, 1),
            "page_ms_median": statistics.median(self.page_ms),
            "page_ms_all": self.page_ms,
            "login_ms_median": statistics.median(self.login_ms),
            "page_bytes": self.page_bytes,
        }


def setup(places: int) -> None:
    """Run in ``manage.py shell``: a building of ``places`` places and a viewer's session;
    prints {"building", "session", "places": [[scope, hex id, capacity], ...]}."""
    from bench.dbsetup import make_sessions
    from dashboard.models import Area, Building, Space

    building = Building.objects.create(name="Occupancy bench", timezone=ZONE)
    spaces = [
        Space(building=building, name=f"Space {n:03}", capacity=20 + n % 41)
        for n in range(places * 4 // 5)
    ]
    areas = [
        Area(building=building, name=f"Area {n:03}", capacity=5 + n % 11)
        for n in range(places - 1 - len(spaces))
    ]
    Space.objects.bulk_create(spaces)
    Area.objects.bulk_create(areas)
    rows = [["building", building.id.hex, None]]
    rows += [["space", s.id.hex, s.capacity] for s in spaces]
    rows += [["area", a.id.hex, a.capacity] for a in areas]
    (session,) = make_sessions(str(building.id), 1)
    print(json.dumps({"building": str(building.id), "session": session, "places": rows}))


def _stamp(moment: datetime) -> str:
    """How Django stores a datetime in SQLite: naive UTC, a space before the time."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")


def _minutes(first: date, days: int) -> list[tuple[int, int, str, float, int]]:
    """Each minute of the days: its number, its hour's, its stored stamp, how full places
    are then (by the local hour and weekday), and whether it is an odd minute."""
    zone = ZoneInfo(ZONE)
    start = datetime.combine(first, datetime.min.time(), tzinfo=zone).astimezone(UTC)
    rows = []
    for n in range(days * 24 * 60):
        moment = start + timedelta(minutes=n)
        local = moment.astimezone(zone)
        share = (WORKDAY if local.weekday() < 5 else WEEKEND)[local.hour]
        rows.append((n, n // 60, _stamp(moment), share, n % 2))
    return rows


# The rows are made inside SQLite from two small tables, the places and the minutes, not in
# Python: 21.6 million rows as Python tuples took most of the 679 s the fill used to take.
# A place's minute: its level (its size times the hour's share) plus a jitter of 0..2 by
# minute and place; the peak one higher every other minute, two readings a minute, one in
# and one out every other minute. Written place by place in time order, so the (entity,
# bucket) index only ever appends.
LEVEL = "CAST(p.size * m.share AS INTEGER) + (m.n * 7 + p.jitter) % 3"
MINUTE_ROWS = f"""
INSERT INTO dashboard_occupancyminute ({ROW_COLUMNS})
SELECT :building, scope, entity, stamp, v, v + odd, 2 * v + odd, 2, v, stamp, odd, odd,
       NULL, NULL
FROM (SELECT p.scope, p.entity, m.stamp, m.odd, {LEVEL} AS v
      FROM bench_place p CROSS JOIN bench_minute m ORDER BY p.n, m.n)
"""
# Each hour row merges its 60 minutes as the writer does; the peak was first reached at the
# earliest minute holding it (the minute of the largest peak * 64 + 63 - minute).
HOUR_ROWS = f"""
INSERT INTO dashboard_occupancyhour ({ROW_COLUMNS})
SELECT :building, scope, entity, hour_stamp, low, high, total, readings, last,
       (SELECT stamp FROM bench_minute WHERE n = hour * 60 + 63 - (key & 63)),
       ins, ins, NULL, NULL
FROM (SELECT pn, scope, entity, hour, hour_stamp, min(v) AS low, max(v + odd) AS high,
             sum(2 * v + odd) AS total, 2 * count(*) AS readings,
             max(CASE WHEN n % 60 = 59 THEN v END) AS last,
             max((v + odd) * 64 + 63 - n % 60) AS key, sum(odd) AS ins
      FROM (SELECT p.n AS pn, p.scope, p.entity, hh.h AS hour, hh.stamp AS hour_stamp,
                   m.n, m.odd, {LEVEL} AS v
            FROM bench_place p CROSS JOIN bench_hour hh CROSS JOIN bench_minute m
            ON m.h = hh.h)
      GROUP BY pn, hour)
"""


def _generators(db: sqlite3.Connection, places: list[list[Any]], first: date, days: int) -> None:
    """The temporary tables the rows are made from: the minutes and hours, the places
    (numbered in entity order; the building holds about everyone; one place in ten fills
    beyond its capacity)."""
    db.execute(
        "CREATE TEMP TABLE bench_minute"
        " (n INTEGER PRIMARY KEY, h INTEGER, stamp TEXT, share REAL, odd INTEGER)"
    )
    db.executemany("INSERT INTO bench_minute VALUES (?, ?, ?, ?, ?)", _minutes(first, days))
    db.execute("CREATE INDEX temp.bench_minute_h ON bench_minute (h)")
    db.execute("CREATE TEMP TABLE bench_hour (h INTEGER PRIMARY KEY, stamp TEXT)")
    db.execute("INSERT INTO bench_hour SELECT h, stamp FROM bench_minute WHERE n % 60 = 0")
    db.execute(
        "CREATE TEMP TABLE bench_place"
        " (n INTEGER PRIMARY KEY, scope TEXT, entity TEXT, size REAL, jitter INTEGER)"
    )
    ordered = sorted(enumerate(places), key=lambda item: item[1][1])
    db.executemany(
        "INSERT INTO bench_place VALUES (?, ?, ?, ?, ?)",
        [
            (rank, scope, entity, (capacity or 40 * len(places)) * (1.15 if k % 10 == 3 else 0.9),
             k * 13 % 3)
            for rank, (k, (scope, entity, capacity)) in enumerate(ordered)
        ],
    )  # fmt: skip


def fill(db_path: str, building: str, places: list[list[Any]], first: date, days: int) -> int:
    """Write the rollups into the (stopped) server's database; the minute rows written.

    The building indexes are dropped while writing and made again after: building them
    sorted once is much faster than keeping them up to date row by row.
    """
    db = sqlite3.connect(db_path, isolation_level=None, timeout=120)
    try:
        # The server is stopped: no reader needs the write-ahead log while the rows go in.
        # Another scenario's process may still have the file open (the smoke run, all
        # scenarios on one stack): then the rows go through the log, only slower.
        with contextlib.suppress(sqlite3.OperationalError):
            db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        db.execute("PRAGMA cache_size=-400000")
        db.execute("PRAGMA temp_store=MEMORY")
        db.execute("PRAGMA threads=2")  # the index builds' sorts, on both cores
        tables = ("dashboard_occupancyminute", "dashboard_occupancyhour")
        indexes = db.execute(
            "SELECT name, sql FROM sqlite_master WHERE type='index' AND sql IS NOT NULL "
            f"AND tbl_name IN {tables}"
        ).fetchall()
        for name, _ in indexes:
            db.execute(f'DROP INDEX "{name}"')
        _generators(db, places, first, days)
        db.execute("BEGIN")
        values = {"building": uuid.UUID(building).hex}
        db.execute(MINUTE_ROWS, values)
        db.execute(HOUR_ROWS, values)
        db.execute("COMMIT")
        for _, sql in indexes:
            db.execute(sql)
        # Sampled statistics: a full ANALYZE reads every index of 21.6 million rows.
        db.execute("PRAGMA analysis_limit=1000")
        db.execute("ANALYZE")
        db.execute("PRAGMA journal_mode=WAL")
        (written,) = db.execute(
            "SELECT count(*) FROM bench_place CROSS JOIN bench_minute"
        ).fetchone()
    finally:
        db.close()
    return int(written)


async def measure(stack: Stack, places: int, days: int, repeats: int) -> Occupancy:
    assert stack.served is not None
    script = f"from bench.occupancy import setup; setup({places})"
    made = json.loads(stack.served.manage("shell", "-c", script).strip().splitlines()[-1])
    today = datetime.now(ZoneInfo(ZONE)).date()
    first = today - timedelta(days=days)
    stack.served.stop()  # the rollups go straight into the file, as one writer
    started = time.monotonic()
    rows = await asyncio.to_thread(
        fill, str(stack.db_path()), made["building"], made["places"], first, days
    )
    fill_seconds = time.monotonic() - started
    started = time.monotonic()
    rebuild = ("rebuild_occupancy_days", "--building", made["building"])
    await asyncio.to_thread(stack.served.manage, *rebuild)
    days_seconds = time.monotonic() - started
    served = stack.served
    served.start(served.command, *served.args, ready=served.ready)
    last = first + timedelta(days=days - 1)
    page = f"/buildings/{made['building']}/occupancy/?from={first}&to={last}"
    page_ms, login_ms, size = await time_page(served.port, page, made["session"], repeats)
    return Occupancy(places, days, rows, fill_seconds, days_seconds, page_ms, login_ms, size)


def figures(result: Occupancy) -> list[Figure]:
    return [
        figure(
            f"occupancy.report@{result.places}places-{result.days}d",
            statistics.median(result.page_ms),
            "ms",
            statistics.median(result.login_ms),
            Target("value", "<", 300),
        )
    ]
