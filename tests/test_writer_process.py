"""History written by a child process, as ``serve`` and ``run_bridge`` do by default.

The child reads its database from the environment, like the served processes; here that
is a migrated SQLite file of this test's own (the test database lives in memory).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pytest

from dashboard.bridge.history import HistoryWriter
from dashboard.live.state import MetaValue
from tests.served import ServedDashboard


@pytest.fixture(scope="module")
def database(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, uuid.UUID, uuid.UUID]]:
    """A migrated database file with a building and its lamp; the environment points at it."""
    served = ServedDashboard(tmp_path_factory.mktemp("writer"), "")
    hq = served.prepare()
    before = {k: os.environ.get(k) for k in ("DATABASE_URL", "SECRET_KEY")}
    os.environ.update({k: served.env[k] for k in before})
    db = Path(served.env["DATABASE_URL"].removeprefix("sqlite:///"))
    yield db, uuid.UUID(hq["building"]), uuid.UUID(hq["device"])
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def samples(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT name, value FROM dashboard_metasample ORDER BY id").fetchall()


def reading(device: uuid.UUID, value: int) -> MetaValue:
    now = datetime.now(UTC)
    return MetaValue(device, "als", value, "ALS", "lux", now.isoformat(), now)


async def test_a_child_process_writes_history_and_stops_with_the_bridge(database):
    db, building, lamp = database
    writer = HistoryWriter(60, separate_process=True)
    for value in range(3):
        writer.add(building, reading(lamp, value))
    await writer.flush()
    child = writer._process.pid
    assert child is not None and child != os.getpid()
    assert samples(db)[-3:] == [("als", "0"), ("als", "1"), ("als", "2")]

    writer.add(building, reading(lamp, 3))
    await writer.close()  # the last records are written before the child exits
    assert samples(db)[-1] == ("als", "3")
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == "zombie"


async def test_a_writer_process_that_died_is_replaced_for_the_next_batch(database):
    db, building, lamp = database
    writer = HistoryWriter(60, separate_process=True)
    writer.add(building, reading(lamp, 10))
    await writer.flush()
    psutil.Process(writer._process.pid).kill()
    await asyncio.sleep(0.2)

    writer.add(building, reading(lamp, 11))
    await writer.flush()
    assert writer.pending == 0
    assert samples(db)[-2:] == [("als", "10"), ("als", "11")]
    await writer.close()
