"""Half an hour of a building's ordinary day: the dashboard neither leaks nor stumbles.

Twenty people keep the page of a 300-device building open while its devices report a few
hundred values a second, which is the order of what the demo's simulator makes a building
send. The values come from the benchmark's publisher (each one a sequence number, so every
value can be checked) to ``manage.py serve`` as deployed, with the product's timings. Once a
minute the server's resident memory is read. At the end the memory is flat after warm-up,
the server printed no error, and every page shows every device's final value.

``SOAK_MINUTES`` (default 30) sets the length; ``make soak`` runs it (docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from bench.clients import PageClient, close_all, open_pages
from bench.freshness import SEED, Stream, publish_stream, settle, until_bridged
from bench.harness import Stack, machine_info
from tests.reliability import (
    pages_missing_final_values,
    served_stack,
    server_output,
    trouble_in,
)

pytestmark = [pytest.mark.soak, pytest.mark.broker]

MINUTES = float(os.environ.get("SOAK_MINUTES", "30"))
DEVICES = 300
RATE = 300.0  # device meta messages per second, all devices together
PAGES = 20
SAMPLE_EVERY = 60.0  # seconds between two readings of the server's RSS
FLAT = 0.05  # memory may move this much (relative) after warm-up
RESULTS = Path(__file__).resolve().parent.parent / "bench" / "results" / "soak.json"


def warm_up_minutes(minutes: float) -> float:
    """Live state, caches and the allocator settle in the first minutes."""
    return 5.0 if minutes >= 20 else minutes / 4


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (minute, value) points."""
    xs, ys = [x for x, _ in points], [y for _, y in points]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread if spread else 0.0


@dataclass
class Soak:
    minutes: float
    rss_mb: list[tuple[float, float]] = field(default_factory=list)  # (minute, MB)
    cpu_per_minute: list[float] = field(default_factory=list)  # server CPU s/s, each minute
    published: int = 0
    publish_rate: float = 0.0
    errors: list[str] = field(default_factory=list)
    missing_final_values: dict[int, float] = field(default_factory=dict)
    cut_off: int = 0
    reconnects: int = 0
    resyncs: int = 0
    machine: dict[str, Any] = field(default_factory=dict)

    @property
    def after_warm_up(self) -> tuple[float, float]:
        warm = warm_up_minutes(self.minutes)
        return next(p for p in self.rss_mb if p[0] >= warm - 1e-6)

    @property
    def last(self) -> tuple[float, float]:
        return self.rss_mb[-1]

    @property
    def growth_since_warm_up(self) -> float:
        """Last reading against the first after warm-up, relative."""
        return self.last[1] / self.after_warm_up[1] - 1

    @property
    def last_window_drift(self) -> float:
        """The last ten minutes' trend (fitted slope times the window), relative to the first
        reading after warm-up."""
        window = min(10.0, self.minutes - warm_up_minutes(self.minutes))
        points = [p for p in self.rss_mb if p[0] >= self.last[0] - window - 1e-6]
        return slope_per_minute(points) * window / self.after_warm_up[1]

    def summary(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "after_warm_up": self.after_warm_up,
            "growth_since_warm_up": self.growth_since_warm_up,
            "last_window_drift": self.last_window_drift,
        }


async def watch_memory(pid: int, publishing: asyncio.Task[Stream], soak: Soak) -> None:
    """Read the server's RSS (and CPU) once a minute while the devices publish."""
    server = psutil.Process(pid)
    began = time.monotonic()
    cpu = sum(server.cpu_times()[:2])
    minute = 0
    while True:
        soak.rss_mb.append((minute, server.memory_info().rss / 2**20))
        if publishing.done():
            return
        minute += 1
        due = began + minute * SAMPLE_EVERY
        await asyncio.wait({publishing}, timeout=max(0.0, due - time.monotonic()))
        if publishing.done() and time.monotonic() < due - 5:
            return  # the run ended between two readings; the last one came before
        now_cpu = sum(server.cpu_times()[:2])
        soak.cpu_per_minute.append((now_cpu - cpu) / SAMPLE_EVERY)
        cpu = now_cpu


async def an_ordinary_day(stack: Stack, soak: Soak) -> None:
    building = stack.add_building(DEVICES, SEED, PAGES)
    pages: list[PageClient] = []
    try:
        pages = await open_pages(stack.url, building.id, building.sessions[:PAGES])
        await until_bridged(stack, building, pages[0])
        publishing = asyncio.create_task(
            publish_stream(stack, building, RATE, soak.minutes * 60, "soak")
        )
        await watch_memory(stack.server_pid, publishing, soak)
        stream = await publishing
        await settle(pages, stream)
        soak.published = len(stream.times)
        soak.publish_rate = soak.published / (stream.end - stream.start)
        soak.missing_final_values = pages_missing_final_values(pages, stream)
        soak.cut_off = sum(p.stats.cut_off for p in pages)
        soak.reconnects = sum(p.stats.connects - 1 for p in pages)
        soak.resyncs = sum(p.stats.resyncs for p in pages)
    finally:
        await close_all(pages)


async def test_half_an_hour_of_an_ordinary_day_leaves_memory_flat_and_every_page_current(
    tmp_path: Path,
) -> None:
    soak = Soak(minutes=MINUTES, machine=machine_info())
    with served_stack(tmp_path) as stack:
        await an_ordinary_day(stack, soak)
        soak.errors = trouble_in(server_output(stack))
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(soak.summary(), indent=1))
        print("soak:", json.dumps(soak.summary()), flush=True)

    assert soak.publish_rate > 0.9 * RATE, "the publisher could not keep the nominal rate"
    assert soak.growth_since_warm_up < FLAT, soak.rss_mb
    assert abs(soak.last_window_drift) < FLAT, soak.rss_mb
    assert soak.errors == []
    assert soak.missing_final_values == {}
