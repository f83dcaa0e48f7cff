"""``python -m bench.rollups [--days N] [--every S]``: what the rollups cost and what they save.

In one process, on a database of its own (a temporary SQLite file, or ``DATABASE_URL``):

- write: the history writer's CPU time per batch (``store.write_batch``, 5,000 records: device
  meta and headcounts, as the bridge queues them) with rollups, against batches of the same
  traffic with the rollup step left out, alternating so that both see the same machine; and
  the same for the ingest scenario's traffic (bench/ingest.py: 500 devices taking turns, one
  ``bench_seq`` number each, arriving at INGEST_RATE messages/s);
- chart: the building page's headcount chart (``page_data.headcount_trend``, 8 spaces, a
  reading every 30 s) after one day of history and after ``--days`` days; baseline: the chart
  as it was, from the raw samples of the day, at the same moments.

Prints the figures as the bench's table (bench/figures.py). Not part of ``bench.run``: it
needs no broker nor server.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.figures import Target, figure, table

SPACES = 8  # page_data.TREND_SPACES: a line each
BATCH = 5_000
REPEATS = 20
INGEST_DEVICES = 500  # bench/run.py's FULL.ingest_devices
INGEST_RATE = 8_000  # messages/s: about what the bridge takes in the ingest scenario


def setup() -> None:
    if not os.environ.get("DATABASE_URL"):
        path = os.path.join(tempfile.mkdtemp(prefix="bench-rollups-"), "db.sqlite3")
        os.environ["DATABASE_URL"] = f"sqlite:///{path}"
    os.environ.setdefault("SECRET_KEY", "bench-rollups")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gooee_site.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def building() -> tuple[uuid.UUID, list[uuid.UUID], list[uuid.UUID]]:
    from dashboard import models

    hq = models.Building.objects.create(name="Bench tower")
    spaces = [models.Space.objects.create(building=hq, name=f"Floor {n}") for n in range(SPACES)]
    devices = [models.Device.objects.create(building=hq, name=f"Lamp {n}") for n in range(10)]
    return hq.id, [s.id for s in spaces], [d.id for d in devices]


def traffic(
    hq: uuid.UUID, spaces: list[uuid.UUID], devices: list[uuid.UUID], start: datetime, every: int
) -> Any:
    """Batches of BATCH records from ``start`` on: every ``every`` seconds a headcount and in
    counter of each place, and three meta (two numbers, an on/off) of each device."""
    from dashboard.live.state import HeadcountValue, MetaValue

    places = [("building", hq), *(("space", s) for s in spaces)]
    at, batch, n = start, [], 0
    while True:
        n += 1
        for scope, place in places:
            batch.append((hq, HeadcountValue(scope, place, "head_count", n % 40, at)))
            batch.append((hq, HeadcountValue(scope, place, "headcount_in", n, at)))
        for device in devices:
            batch.append((hq, MetaValue(device, "dim", n % 100, "", "%", "", at)))
            batch.append((hq, MetaValue(device, "temperature", 20 + n % 7 / 2, "", "C", "", at)))
            batch.append((hq, MetaValue(device, "onoff", n % 2 == 0, "", "", "", at)))
        if len(batch) >= BATCH:
            yield batch, at
            batch = []
        at += timedelta(seconds=every)


def ingest_traffic(hq: uuid.UUID, start: datetime) -> Any:
    """Batches of BATCH records as the ingest scenario's flood queues them: its devices in
    turn (bench/publisher.py's shuffled order makes no difference to the buckets), each
    message one ``bench_seq`` item whose value is the sequence number."""
    from dashboard import models
    from dashboard.live.state import MetaValue

    devices = [
        models.Device.objects.create(building_id=hq, name=f"Bench {n}").id
        for n in range(INGEST_DEVICES)
    ]
    seq, step = 0, timedelta(seconds=1 / INGEST_RATE)
    while True:
        batch = []
        for _ in range(BATCH):
            seq += 1
            at = start + seq * step
            batch.append(
                (hq, MetaValue(devices[seq % len(devices)], "bench_seq", seq, "", "", "", at))
            )
        yield batch, at


def timed(fn: Any, *args: Any, clock: Any = time.perf_counter) -> float:
    started = clock()
    fn(*args)
    return (clock() - started) * 1000


def cpu_timed(fn: Any, *args: Any) -> float:
    """CPU milliseconds of this process (SQLite runs in it): what other processes on a busy
    machine take does not count, as it does in wall time."""
    return timed(fn, *args, clock=time.process_time)


def raw_trend(inventory: Any, now: datetime) -> None:
    """The chart's query before rollups: every raw head_count sample of the day."""
    from django.utils import timezone

    from dashboard import models

    local = timezone.localtime(now, inventory.zone)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    ids = [inventory.id, *inventory.spaces]
    buckets: dict[int, dict[uuid.UUID, int]] = defaultdict(dict)
    for entity_id, value, at in (
        models.HeadcountSample.objects.filter(
            building_id=inventory.id,
            kind="head_count",
            entity_id__in=ids,
            received_at__gte=midnight,
        )
        .order_by("received_at")
        .values_list("entity_id", "value", "received_at")
    ):
        buckets[int(at.timestamp()) // 60 * 60][entity_id] = value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30, help="0: the write figures only")
    parser.add_argument("--batches", type=int, default=20, help="timed per reading rate")
    args = parser.parse_args(argv)
    setup()
    from dashboard import page_data
    from dashboard.live.building_store import load_building

    hq, spaces, devices = building()
    inventory = load_building(hq)
    assert inventory is not None
    now = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    figures = []
    # Writing: a reading of each series every 5 s (a busy building: 12 a bucket), and every
    # 60 s (the worst case: each reading a minute row of its own), a year back, out of the way.
    # And the ingest scenario's flood, two years back.
    shapes = {
        f"{every}s": traffic(hq, spaces, devices, now - timedelta(days=365 - every), every)
        for every in (5, 60)
    }
    shapes["ingest"] = ingest_traffic(hq, now - timedelta(days=730))
    for shape, batches in shapes.items():
        writes: dict[bool, list[float]] = {True: [], False: []}
        for n, (batch, _) in zip(range(args.batches), batches, strict=False):
            write(batch, rolled_up=n % 2 == 0, times=writes)
        figures.append(
            figure(
                f"rollups.write_batch@{shape}",
                statistics.median(writes[True]),
                "ms CPU",
                statistics.median(writes[False]),
                Target("ratio", "<=", 1.05),
            )
        )
        print(f"[bench] rollups: writes at {shape} timed", file=sys.stderr, flush=True)
    if not args.days:
        print(table(figures))
        return 0
    charts: dict[int, tuple[float, float]] = {}
    # The chart: headcounts every 30 s; the last day first, measured; then the days before it,
    # measured again. The chart reads today only: any growth is the history around it.
    spans = (
        (1, now - timedelta(days=1), now),
        (args.days, now - timedelta(days=args.days), now - timedelta(days=1)),
    )
    for days, since, until in spans:
        for batch, at in traffic(hq, spaces, [], since, 30):
            if at >= until:
                break
            write(batch, rolled_up=True, times={True: [], False: []})
        chart = [timed(page_data.headcount_trend, inventory, now) for _ in range(REPEATS)]
        before = [timed(raw_trend, inventory, now) for _ in range(REPEATS)]
        charts[days] = statistics.median(chart), statistics.median(before)
        print(f"[bench] rollups: {days} days of history written", file=sys.stderr, flush=True)
    one, full = charts[1], charts[args.days]
    figures += [
        # Baseline: the chart as it was, from the day's raw samples.
        figure("rollups.chart@1d", one[0], "ms", one[1]),
        figure(f"rollups.chart@{args.days}d", full[0], "ms", full[1]),
        # Flat: after a month of history against after a day.
        figure(
            f"rollups.chart_growth@{args.days}d", full[0], "ms", one[0], Target("ratio", "<=", 1.5)
        ),
    ]
    print(table(figures))
    return 0


def write(
    batch: list[tuple[uuid.UUID, Any]], rolled_up: bool, times: dict[bool, list[float]]
) -> None:
    """One batch through the writer's store, timed, with or without its rollup step; the
    batches written without get rolled up after, untimed, so the charts see every reading."""
    from dashboard.live import rollups, store

    if rolled_up:
        times[True].append(cpu_timed(store.write_batch, batch))
        return
    real = rollups.write
    rollups.write = lambda *a, **k: 0  # type: ignore[assignment]
    try:
        times[False].append(cpu_timed(store.write_batch, batch))
    finally:
        rollups.write = real  # type: ignore[assignment]
    real(*_readings(batch))


def _readings(batch: list[tuple[uuid.UUID, Any]]) -> tuple[list[Any], list[Any]]:
    from dashboard.live.state import HeadcountValue

    heads = [
        (b, v.scope, v.entity_id, v.kind, v.value, v.received_at)
        for b, v in batch
        if isinstance(v, HeadcountValue)
    ]
    meta = [
        (v.device_id, v.name, v.value, v.received_at)
        for _, v in batch
        if not isinstance(v, HeadcountValue)
    ]
    return heads, meta


if __name__ == "__main__":
    sys.exit(main())
