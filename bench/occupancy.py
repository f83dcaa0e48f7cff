"""Scenario 8, occupancy: server time for a building's occupancy report over a month.

A building of 500 places (the building, spaces and areas, each with a capacity) gets 30 days
of per-minute rollups (21.6 million rows) and the matching hour rows, written straight into
the served SQLite file as the history writer would have left them: a working-day profile,
one place in ten going over its capacity at the busiest hours. The report of those 30 days
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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import repeat
from operator import add
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
    page_ms: list[float]
    login_ms: list[float]
    page_bytes: int

    def summary(self) -> dict[str, Any]:
        return {
            "places": self.places,
            "days": self.days,
            "minute_rows": self.minute_rows,
            "fill_seconds": round(self.fill_seconds, 1),
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


def _rows(
    building: str, places: list[list[Any]], first: date, days: int
) -> Iterator[tuple[Iterable[tuple[Any, ...]], list[tuple[Any, ...]]]]:
    """Each place's minute rows and hour rows over the days."""
    zone = ZoneInfo(ZONE)
    start = datetime.combine(first, datetime.min.time(), tzinfo=zone).astimezone(UTC)
    minutes = days * 24 * 60
    moments = [start + timedelta(minutes=m) for m in range(minutes)]
    stamps = [_stamp(m) for m in moments]
    shares = []
    for moment in moments:
        local = moment.astimezone(zone)
        shares.append((WORKDAY if local.weekday() < 5 else WEEKEND)[local.hour])
    odd = [m % 2 for m in range(minutes)]
    jitters = [[(m * 7 + k) % 3 for m in range(minutes)] for k in range(3)]
    for n, (scope, entity, capacity) in enumerate(places):
        # The building holds about everyone; one place in ten fills beyond its capacity.
        size = (capacity or 40 * len(places)) * (1.15 if n % 10 == 3 else 0.9)
        levels = {share: int(size * share) for share in set(shares)}
        values = list(map(add, map(levels.__getitem__, shares), jitters[n * 13 % 3]))
        peaks = list(map(add, values, odd))
        sums = list(map(add, values, peaks))
        # zip builds the rows in C: 43,200 a place.
        minute_rows = zip(
            repeat(building), repeat(scope), repeat(entity), stamps, values, peaks, sums,
            repeat(2), values, stamps, odd, odd, repeat(None), repeat(None),
        )  # fmt: skip
        hour_rows = []
        for h in range(0, minutes, 60):
            hour = peaks[h : h + 60]
            peak = max(hour)
            hour_rows.append(
                (building, scope, entity, stamps[h], min(values[h : h + 60]), peak,
                 sum(sums[h : h + 60]), 120, values[h + 59], stamps[h + hour.index(peak)],
                 30, 30, None, None)
            )  # fmt: skip
        yield minute_rows, hour_rows


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
        tables = ("dashboard_occupancyminute", "dashboard_occupancyhour")
        indexes = db.execute(
            "SELECT name, sql FROM sqlite_master WHERE type='index' AND sql IS NOT NULL "
            f"AND tbl_name IN {tables}"
        ).fetchall()
        for name, _ in indexes:
            db.execute(f'DROP INDEX "{name}"')
        building_hex = uuid.UUID(building).hex
        written = 0
        db.execute("BEGIN")
        for minute_rows, hour_rows in _rows(building_hex, places, first, days):
            marks = ", ".join("?" * 14)
            db.executemany(
                f"INSERT INTO dashboard_occupancyminute ({ROW_COLUMNS}) VALUES ({marks})",
                minute_rows,
            )
            db.executemany(
                f"INSERT INTO dashboard_occupancyhour ({ROW_COLUMNS}) VALUES ({marks})", hour_rows
            )
            written += len(hour_rows) * 60
        db.execute("COMMIT")
        for _, sql in indexes:
            db.execute(sql)
        db.execute("ANALYZE")
        db.execute("PRAGMA journal_mode=WAL")
    finally:
        db.close()
    return written


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
    served = stack.served
    served.start(served.command, *served.args, ready=served.ready)
    last = first + timedelta(days=days - 1)
    page = f"/buildings/{made['building']}/occupancy/?from={first}&to={last}"
    page_ms, login_ms, size = await time_page(served.port, page, made["session"], repeats)
    return Occupancy(places, days, rows, fill_seconds, page_ms, login_ms, size)


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
