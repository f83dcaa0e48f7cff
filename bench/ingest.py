"""Scenario 1, ingest: how many messages per second the bridge turns into live state.

A publisher floods a generated building's devices' meta (QoS 1) for the duration, as fast
as the consumer under test takes it: never more than a few thousand messages ahead of it, so
the consumer always has work and the broker's queue stays short. Two phases, back to back,
with the identical publish sequence: the baseline, a bare paho subscriber on the same topics
that only ``json.loads`` each message (``bench.workers subscriber``), then the bridge in its
own process as ``run_bridge`` runs it (``bench.workers bridge``). Each figure is the messages the
consumer turned into state while the publisher ran, per second; "dropped" is what never
reached live state (or was dropped from the history buffer) once the publisher stopped.

With ``without_rollups``, another phase runs the bridge again on the same stream with the
history writer's rollup step switched off (the ``no-rollups`` variant, bench/experiments.py):
the rollups must add under 5 % to the ingest cost, so the plain bridge's rate against this
one's, measured in the same run, should be within noise of 1.0.

With ``pending``, a further phase runs the bridge again on the same stream with that many
operators' actions waiting for their lamps (``bench.workers bridge --pending``): most wait on
lamps that send nothing meanwhile, one in five on lamps the flood reports from, as when a
building's spaces were dimmed a moment ago. Confirmation must cost nothing per message for a
device with nothing pending (one dictionary lookup), so its ratio should match the plain one.

An open-loop flood read by both consumers at once was tried first: the publisher took a core
for itself, and the bridge's backlog (a quarter of a million messages after 10 s) took over
a minute to drain before "nothing dropped" could be checked.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.figures import Figure, Target, figure
from bench.harness import Stack, Worker, building_topics, write_inventory
from bench.profiling import Profile

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
    history_failures: int = 0  # batches the bridge failed to write (and retried)
    # The third phase's, with actions waiting for their lamps (0: not run)
    pending: int = 0
    pending_rate: float | None = None
    pending_missing: int = 0
    # The phase with the history writer's rollup step switched off (None: not run)
    no_rollups_rate: float | None = None
    no_rollups_missing: int = 0

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


async def measure(
    stack: Stack,
    devices: int,
    duration: float,
    profile: Path | None = None,
    variant: str = "as-is",
    pending: int = 0,
    without_rollups: bool = False,
) -> tuple[IngestResult, dict]:
    """The baseline's phase, then the bridge's, on the same generated building and stream;
    with ``without_rollups``, the bridge's again without the rollup step; with ``pending``, the bridge's again with that many actions awaiting confirmation; with
    ``profile``, py-spy records the (first) bridge phase there."""
    # Not "+": the directory goes into a DATABASE_URL, where "+" reads as a space.
    tag = f"ingest-{devices}-{variant.replace('+', '_')}-"
    directory = Path(tempfile.mkdtemp(prefix=tag, dir=stack.directory))
    path, data = write_inventory(directory, devices, SEED_BASE + devices)
    building = data["buildings"][0]["id"]
    devices_file = directory / "devices.json"
    devices_file.write_text(json.dumps([d["id"] for d in data["buildings"][0]["devices"]]))
    topics_file = directory / "topics.json"
    topics_file.write_text(json.dumps({building: building_topics(data)}))
    db = directory / "bridge.sqlite3"
    shutil.copy(stack.template_db, db)
    port = str(stack.broker.port)
    consumers = {
        "baseline": ("bench.workers", "subscriber", "--port", port, "--topics", str(topics_file)),
        "bridge": (
            "bench.workers",
            "bridge",
            "--broker",
            stack.broker.url,
            "--db",
            str(db),
            "--inventory",
            str(path),
            "--variant",
            variant,
        ),
    }
    if without_rollups:
        consumers["no-rollups"] = (*consumers["bridge"][:-1], f"{variant}+no-rollups")
    if pending:
        consumers["pending"] = (*consumers["bridge"], "--pending", str(pending))
    phases = {}
    for name, args in consumers.items():
        progress = directory / f"progress-{name}"
        worker = await Worker.start(name, *args, "--progress", str(progress))
        try:
            await worker.expect("READY", timeout=600)
            profiler = None
            if profile is not None and name == "bridge":
                profiler = await Profile(worker.pid, profile, duration).start()
            pub = await run_publisher(
                stack, devices_file, directory / f"times-{name}.bin", duration, 0, progress
            )
            if profiler is not None:
                await profiler.stop()
            await wait_drained(worker, building, pub["published"])
            samples = await worker.ask("SAMPLES")
            final = await worker.ask("STOP", timeout=300)
        finally:
            await worker.close()
        phases[name] = consume(samples, building, pub)
        phases[name]["final"] = final
    bridge, baseline = phases["bridge"], phases["baseline"]
    history = bridge["final"]["history"]
    result = IngestResult(
        devices=devices,
        published=bridge["published"],
        publish_seconds=bridge["seconds"],
        publisher_rate=bridge["publisher_rate"],
        bridge_rate=bridge["rate"],
        baseline_rate=baseline["rate"],
        bridge_missing=bridge["missing"] + history["dropped"],
        baseline_missing=baseline["missing"],
        bridge_drain_seconds=bridge["drain"],
        baseline_drain_seconds=baseline["drain"],
        history_failures=history["failures"],
    )
    extra = {"bridge": bridge["final"], "baseline": baseline["final"]}
    if without_rollups:
        bare = phases["no-rollups"]
        result.no_rollups_rate = bare["rate"]
        result.no_rollups_missing = bare["missing"] + bare["final"]["history"]["dropped"]
        extra["no-rollups"] = bare["final"]
    if pending:
        waited = phases["pending"]
        result.pending, result.pending_rate = pending, waited["rate"]
        result.pending_missing = waited["missing"] + waited["final"]["history"]["dropped"]
        extra["pending"] = waited["final"]
    return result, extra


def consume(samples: dict[str, Any], building: str, pub: dict[str, Any]) -> dict[str, Any]:
    """A consumer's rate while the publisher ran, what it missed, how long it took after."""
    start, end, published = pub["start"], pub["end"], pub["published"]
    got = count_at(samples, building, end) - count_at(samples, building, start)
    done = reached_at(samples, building, published)
    return {
        "published": published,
        "seconds": end - start,
        "publisher_rate": pub["rate"],
        "rate": got / (end - start),
        "missing": published - samples["counts"][-1].get(building, 0),
        "drain": max(0.0, done - end) if done is not None else None,
    }


async def wait_drained(worker: Worker, building: str, published: int) -> None:
    """Until the consumer has every message, or it stops making progress."""
    loop = asyncio.get_running_loop()
    last, since = -1, loop.time()
    while True:
        count = (await worker.ask("COUNT")).get(building, 0)
        if count >= published:
            return
        if count != last:
            last, since = count, loop.time()
        elif loop.time() - since > STALL_SECONDS:
            return
        await asyncio.sleep(0.1)


async def run_publisher(
    stack: Stack,
    devices_file: Path,
    times_file: Path,
    duration: float,
    rate: float,
    pace: Path | None = None,
    first_seq: int = 1,
) -> dict[str, Any]:
    """Run ``bench.publisher`` to the end; its result (with ``start``/``end`` times)."""
    extra = ["--pace", str(pace)] if pace else []
    extra += ["--first-seq", str(first_seq)]
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
        *extra,
    )
    try:
        await worker.expect("START", timeout=60)
        return json.loads(await worker.expect("=", timeout=duration + 180))
    finally:
        await worker.close()


def figures(result: IngestResult, prefix: str = "ingest") -> list[Figure]:
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
            float(result.bridge_missing),
            "msg",
            float(result.baseline_missing),
            Target("value", "==", 0),
        ),
        *no_rollups_figures(result, prefix),
        *pending_figures(result, prefix),
    ]


def no_rollups_figures(result: IngestResult, prefix: str) -> list[Figure]:
    """Without the rollup step: its rate against the bare baseline (beside the plain ratio),
    and the plain bridge's rate against it (the issue's "rollups add less than 5 %")."""
    if result.no_rollups_rate is None:
        return []
    name = f"{prefix}.rate@{result.devices}dev"
    return [
        figure(f"{name}-no-rollups", result.no_rollups_rate, "msg/s", result.baseline_rate),
        figure(
            f"{name}/no-rollups",
            result.bridge_rate,
            "msg/s",
            result.no_rollups_rate,
            Target("ratio", ">=", 0.95),
        ),
        figure(
            f"{prefix}.dropped@{result.devices}dev-no-rollups",
            float(result.no_rollups_missing),
            "msg",
            float(result.baseline_missing),
            Target("value", "==", 0),
        ),
    ]


def pending_figures(result: IngestResult, prefix: str) -> list[Figure]:
    """With actions awaiting confirmation: the rate against the same bare baseline (beside
    the plain ratio), and against the plain bridge phase (1.0: confirmation costs nothing)."""
    if not result.pending:
        return []
    name = f"{prefix}.rate@{result.devices}dev+{result.pending}pending"
    return [
        figure(
            name, result.pending_rate, "msg/s", result.baseline_rate, Target("ratio", ">=", 0.5)
        ),
        figure(f"{name}/plain", result.pending_rate, "msg/s", result.bridge_rate),
        figure(
            f"{prefix}.dropped@{result.devices}dev+{result.pending}pending",
            float(result.pending_missing),
            "msg",
            float(result.baseline_missing),
            Target("value", "==", 0),
        ),
    ]
