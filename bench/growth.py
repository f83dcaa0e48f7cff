"""Scenario 6, growth: the same figures at more devices and more pages, and the exponent k of
cost ~ work^k between the smallest and the largest size (1 is linear).

Devices: ingest rate (cost per message) and page render time. Pages: freshness, bytes per
page, the server's CPU per second of the stream, and memory. Sizes another scenario already
measured are reused, not measured twice. The bandwidth baseline is per subscriber and does
not depend on how many there are (each direct subscriber receives the whole stream), so the
one measured with scenario 3 serves every page count.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from bench import freshness, ingest, memory, render
from bench.figures import Figure, Target, figure
from bench.harness import Stack


@dataclass
class Measured:
    """Results by size, shared by the scenarios so growth can reuse them."""

    ingest: dict[int, ingest.IngestResult] = field(default_factory=dict)
    fresh: dict[int, freshness.Freshness] = field(default_factory=dict)
    bandwidth: freshness.Bandwidth | None = None
    render: dict[int, render.Render] = field(default_factory=dict)
    memory: memory.Memory | None = None


BASELINE_SUBSCRIBERS = 100  # the bandwidth baseline's, as in scenario 3 of a full run


def exponent(points: dict[int, float]) -> float | None:
    """k in cost ~ n^k from the smallest to the largest n."""
    valid = {n: c for n, c in points.items() if c and c > 0}
    if len(valid) < 2:
        return None
    lo, hi = min(valid), max(valid)
    return math.log(valid[hi] / valid[lo]) / math.log(hi / lo)


def exponent_figure(name: str, points: dict[int, float]) -> Figure:
    return figure(f"growth.exponent.{name}", exponent(points), "k", 1.0)


async def run(
    stack: Stack,
    measured: Measured,
    devices: list[int],
    clients: list[int],
    seconds: float,
    fresh_devices: int,
    rate: float,
    window_ms: float,
    render_repeats: int,
    settle: float,
) -> tuple[list[Figure], dict[str, Any]]:
    figures: list[Figure] = []
    failed: dict[str, str] = {}  # a size that failed is reported; the other sizes still run

    async def attempt(name: str, measure: Any) -> Any:
        try:
            return await measure
        except Exception as exc:
            failed[name] = f"{type(exc).__name__}: {exc}"
            return None

    for n in devices:
        if n not in measured.ingest:
            result = await attempt(f"ingest@{n}", ingest.measure(stack, n, seconds))
            if result is not None:
                measured.ingest[n] = result[0]
        if n in measured.ingest:
            figures += ingest.figures(measured.ingest[n], prefix="growth.ingest")[:1]
    for n in devices:
        if n not in measured.render:
            result = await attempt(f"render@{n}", render.measure(stack, n, render_repeats))
            if result is not None:
                measured.render[n] = result
        if n in measured.render:
            figures += render.figures(measured.render[n], "growth.render", target=False)
    if measured.bandwidth is None:
        # Per subscriber, whatever their number (scenario 3's, when it ran): 1,000 MQTT-over-
        # WebSocket subscribers at this rate would keep the broker busy for many minutes.
        measured.bandwidth = await freshness.measure_baseline(
            stack, fresh_devices, min(max(clients), BASELINE_SUBSCRIBERS), rate, seconds
        )
    for c in clients:
        if c not in measured.fresh:
            fresh = freshness.measure(stack, fresh_devices, c, rate, seconds)
            if (result := await attempt(f"freshness@{c}clients", fresh)) is not None:
                measured.fresh[c] = result
        if c not in measured.fresh:
            continue
        result = measured.fresh[c]
        figures += [
            f
            for f in freshness.freshness_figures(result, window_ms, f"@{c}clients")
            if "p99" in f.name or "final" in f.name
        ]
        figures += freshness.bandwidth_figures(result, measured.bandwidth, f"@{c}clients")[:1]
    if measured.memory is None or not set(clients) <= set(measured.memory.checkpoints):
        measured.memory = await memory.measure(
            stack, fresh_devices, max(clients), 1, clients, settle
        )
    for c in clients:
        figures.append(
            figure(
                f"growth.memory.per_idle_client@{c}",
                measured.memory.checkpoints.get(c),
                "KB",
                measured.memory.baseline.get(c),
                Target("value", "<=", 64),
            )
        )
    points = {
        "ingest_cost_per_message": {
            n: 1 / r.bridge_rate for n in devices if (r := measured.ingest.get(n)) and r.bridge_rate
        },
        "render_time": {
            n: statistics.median(measured.render[n].page_ms)
            for n in devices
            if n in measured.render
        },
        "server_cpu_vs_pages": {
            c: measured.fresh[c].server_cpu for c in clients if c in measured.fresh
        },
        "server_memory_vs_pages": {
            c: measured.memory.checkpoints[c] * c
            for c in clients
            if c in measured.memory.checkpoints
        },
    }
    figures += [exponent_figure(name, p) for name, p in points.items()]
    details = {
        "points": {name: {str(n): v for n, v in p.items()} for name, p in points.items()},
        "exponents": {name: exponent(p) for name, p in points.items()},
        "failed": failed,
    }
    return figures, details
