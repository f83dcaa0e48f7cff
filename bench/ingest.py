"""Scenario 1, ingest: how many messages per second the bridge turns into live state.

A publisher floods the building's devices' meta (QoS 1, as fast as the broker acknowledges)
for the duration. The bridge runs in its own process (``bench.workers bridge``) with the
baseline, a bare paho subscriber that only ``json.loads`` (``bench.workers subscriber``),
subscribed to the same topics of the same broker at the same time: one stream, both
consumers. Each consumer's figure is the messages it turned into state while the publisher
ran, divided by the time it ran; the broker queues without limit, so a consumer that cannot
keep up falls behind and drains afterwards, and "dropped" is what never arrived.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.figures import Figure, Target, figure
from bench.harness import Stack, Worker, building_topics, write_inventory

STALL_SECONDS = 15.0
SEED_BASE = 1000


@dataclass
class IngestResult:
    devices: int
    published: int
    publish_seconds: float
    publisher_rate: float
    bridge_rate: float
    baseline_rate: float
    bridge_missing: int
    baseline_missing: int
    bridge_drain_seconds: float | None
    baseline_drain_seconds: float | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def count_at(samples: dict[str, Any], building: str, t: float) -> float:
    """A consumer's count for the building at time t, interpolated between samples."""
    times = samples["t"]
    values = [c.get(building, 0) for c in samples["counts"]]
    i = bisect.bisect_left(times, t)
    if i <= 0:
        return float(values[0])
    if i >= len(times):
        return float(values[-1])
    t0, t1 = times[i - 1], times[i]
    v0, v1 = values[i - 1], values[i]
    return v0 + (v1 - v0) * (t - t0) / (t1 - t0) if t1 > t0 else float(v1)


def reached_at(samples: dict[str, Any], building: str, target: int) -> float | None:
    for t, counts in zip(samples["t"], samples["counts"], strict=True):
        if counts.get(building, 0) >= target:
            return t
    return None


class IngestBench:
    """One bridge worker and one baseline subscriber over every ingest building."""

    def __init__(self, stack: Stack, device_counts: list[int]) -> None:
        self.stack = stack
        self.directory = stack.directory / "ingest"
        self.directory.mkdir(exist_ok=True)
        self.buildings: dict[int, tuple[str, list[str]]] = {}
        self.final: dict[str, Any] = {}
        inventories, topics = [], {}
        for devices in sorted(set(device_counts)):
            path, data = write_inventory(self.directory, devices, SEED_BASE + devices)
            b = data["buildings"][0]
            self.buildings[devices] = (b["id"], [d["id"] for d in b["devices"]])
            inventories.append(str(path))
            topics[b["id"]] = building_topics(data)
        self.inventories = inventories
        self.topics_file = self.directory / "topics.json"
        self.topics_file.write_text(json.dumps(topics))

    async def start(self) -> None:
        db = self.directory / "bridge.sqlite3"
        shutil.copy(self.stack.template_db, db)
        broker = self.stack.broker
        self.bridge = await Worker.start(
            "bridge worker",
            "bench.workers",
            "bridge",
            "--broker",
            broker.url,
            "--db",
            str(db),
            "--inventory",
            *self.inventories,
        )
        self.baseline = await Worker.start(
            "baseline subscriber",
            "bench.workers",
            "subscriber",
            "--port",
            str(broker.port),
            "--topics",
            str(self.topics_file),
        )
        await self.bridge.expect("READY", timeout=300)
        await self.baseline.expect("READY", timeout=300)

    async def phase(self, devices: int, duration: float) -> IngestResult:
        """Flood the building of ``devices`` devices for ``duration`` seconds; both rates."""
        building, device_ids = self.buildings[devices]
        devices_file = self.directory / f"devices-{devices}.json"
        devices_file.write_text(json.dumps(device_ids))
        before = {
            "bridge": (await self.bridge.ask("COUNT")).get(building, 0),
            "baseline": (await self.baseline.ask("COUNT")).get(building, 0),
        }
        await self.bridge.ask("SAMPLES")  # start the sample series here
        await self.baseline.ask("SAMPLES")
        pub = await run_publisher(
            self.stack, devices_file, self.directory / f"times-{devices}.bin", duration, rate=0
        )
        published = pub["published"]
        await self.wait_drained(building, before, published, duration)
        samples = {
            "bridge": await self.bridge.ask("SAMPLES"),
            "baseline": await self.baseline.ask("SAMPLES"),
        }
        start, end = pub["start"], pub["end"]
        rates, missing, drain = {}, {}, {}
        for name, data in samples.items():
            got = count_at(data, building, end) - count_at(data, building, start)
            rates[name] = got / (end - start)
            final = data["counts"][-1].get(building, 0) - before[name]
            missing[name] = published - final
            done = reached_at(data, building, before[name] + published)
            drain[name] = max(0.0, done - end) if done is not None else None
        return IngestResult(
            devices=devices,
            published=published,
            publish_seconds=end - start,
            publisher_rate=pub["rate"],
            bridge_rate=rates["bridge"],
            baseline_rate=rates["baseline"],
            bridge_missing=missing["bridge"],
            baseline_missing=missing["baseline"],
            bridge_drain_seconds=drain["bridge"],
            baseline_drain_seconds=drain["baseline"],
        )

    async def wait_drained(
        self, building: str, before: dict[str, int], published: int, duration: float
    ) -> None:
        """Until both consumers have every message, or one stops making progress."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 4 * duration + 60
        last: dict[str, tuple[int, float]] = {}
        while loop.time() < deadline:
            done = True
            for name, worker in (("bridge", self.bridge), ("baseline", self.baseline)):
                count = (await worker.ask("COUNT")).get(building, 0) - before[name]
                seen = last.get(name)
                if seen is None or count != seen[0]:
                    last[name] = (count, loop.time())
                elif loop.time() - seen[1] > STALL_SECONDS:
                    continue  # stalled: what it has is all it will get
                done = done and count >= published
            stalled = all(loop.time() - t > STALL_SECONDS for _, t in last.values())
            if done or stalled:
                return
            await asyncio.sleep(0.25)

    async def close(self) -> dict[str, Any]:
        self.final = {
            "bridge": await self.bridge.ask("STOP", timeout=300),
            "baseline": await self.baseline.ask("STOP", timeout=60),
        }
        await self.bridge.close()
        await self.baseline.close()
        return self.final


async def run_publisher(
    stack: Stack, devices_file: Path, times_file: Path, duration: float, rate: float
) -> dict[str, Any]:
    """Run ``bench.publisher`` to the end; its result (with ``start``/``end`` times)."""
    worker = await Worker.start(
        "publisher",
        "bench.publisher",
        "--port",
        str(stack.broker.port),
        "--devices",
        str(devices_file),
        "--duration",
        str(duration),
        "--rate",
        str(rate),
        "--times",
        str(times_file),
    )
    try:
        await worker.expect("START", timeout=60)
        return json.loads(await worker.expect("=", timeout=duration + 180))
    finally:
        await worker.close()


def figures(result: IngestResult, history_dropped: int, prefix: str = "ingest") -> list[Figure]:
    return [
        figure(
            f"{prefix}.rate@{result.devices}dev",
            result.bridge_rate,
            "msg/s",
            result.baseline_rate,
            Target("ratio", ">=", 0.5),
        ),
        figure(
            f"{prefix}.dropped@{result.devices}dev",
            float(result.bridge_missing + history_dropped),
            "msg",
            float(result.baseline_missing),
            Target("value", "==", 0),
        ),
    ]
