"""``python -m bench.run [--smoke] [--only SCENARIO ...] [--out PATH]``: every scenario, one
results file (``bench/results/latest.json``), the same as a table on stdout.

The full run takes about ten minutes on two cores; ``--smoke`` runs every scenario
at toy sizes in about 33 seconds so the harness cannot rot (``tests/test_bench_smoke.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from bench import (
    broadcast,
    confirm,
    freshness,
    growth,
    ingest,
    memory,
    mqtt_read,
    occupancy,
    render,
)
from bench.experiments import SERVER_VARIANTS
from bench.figures import Figure, table, write_results
from bench.harness import Stack, machine_info, workdir
from bench.scaled import ScaledStack

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"
SCENARIOS = (
    "ingest",
    "freshness",
    "render",
    "mqttread",
    "memory",
    "growth",
    "confirm",
    "broadcast",
    "occupancy",
)
SCALED = "redis-2web"  # figure suffix for the scaled-out layout (bench/scaled.py)


@dataclass(frozen=True)
class Scale:
    ingest_devices: int
    ingest_seconds: float
    ingest_pending: int  # actions awaiting confirmation in the ingest scenario's third phase
    fresh_devices: int
    fresh_clients: int
    fresh_rate: float
    fresh_seconds: float
    memory_clients: int
    memory_cycles: int
    memory_settle: float
    render_devices: int
    render_repeats: int
    growth_devices: tuple[int, ...]
    growth_clients: tuple[int, ...]
    growth_seconds: float
    confirm_trials: int
    broadcast_pages: tuple[int, ...]
    occupancy_places: int
    occupancy_days: int
    occupancy_repeats: int
    mqtt_messages: int
    mqtt_rounds: int
    # Served settings beyond harness.SERVE_SETTINGS: the smoke run waits less for the bridge
    # to pick a building up and to store its state.
    serve_settings: dict[str, str] = field(default_factory=dict)


FULL = Scale(
    ingest_devices=500,
    ingest_seconds=30,
    ingest_pending=100,
    fresh_devices=500,
    fresh_clients=100,
    fresh_rate=2000,
    fresh_seconds=20,
    memory_clients=1000,
    memory_cycles=10,
    memory_settle=1.5,
    render_devices=1000,
    render_repeats=10,
    growth_devices=(100, 1000, 10000),
    growth_clients=(10, 100, 1000),
    growth_seconds=10,
    confirm_trials=20,
    broadcast_pages=(100, 1000),
    occupancy_places=500,
    occupancy_days=30,
    occupancy_repeats=7,
    mqtt_messages=20000,
    mqtt_rounds=5,
)
SMOKE = Scale(
    ingest_devices=20,
    ingest_seconds=1,
    ingest_pending=10,
    fresh_devices=20,
    fresh_clients=4,
    fresh_rate=200,
    fresh_seconds=1,
    memory_clients=4,
    memory_cycles=2,
    memory_settle=0.3,
    render_devices=20,
    render_repeats=2,
    growth_devices=(10, 20),
    growth_clients=(2, 4),
    growth_seconds=1,
    confirm_trials=2,
    broadcast_pages=(4,),
    occupancy_places=20,
    occupancy_days=2,
    occupancy_repeats=2,
    mqtt_messages=2000,
    mqtt_rounds=2,
    serve_settings={"HISTORY_FLUSH_SECONDS": "0.25", "INVENTORY_POLL_SECONDS": "0.25"},
)


def log(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


class Runner:
    """Runs the chosen scenarios on one stack; each adds figures and details."""

    def __init__(self, stack: Stack, scale: Scale, profile_dir: Path | None) -> None:
        self.stack, self.scale, self.profile_dir = stack, scale, profile_dir
        self.figures: list[Figure] = []
        self.details: dict[str, Any] = {"scale": asdict(scale), "serve_settings": stack.settings}
        self.measured = growth.Measured()
        self.window_ms = float(stack.settings["LIVE_COALESCE_MS"])

    def profile(self, name: str) -> Path | None:
        return self.profile_dir / f"profile-{name}.txt" if self.profile_dir else None

    async def ingest(self) -> None:
        s = self.scale
        log(
            f"1. ingest: {s.ingest_devices} devices, {s.ingest_seconds:g} s per phase, "
            "then without the rollup step, "
            f"then with {s.ingest_pending} actions awaiting confirmation"
        )
        result, extra = await ingest.measure(
            self.stack,
            s.ingest_devices,
            s.ingest_seconds,
            self.profile("ingest-bridge"),
            pending=s.ingest_pending,
            without_rollups=True,
        )
        self.measured.ingest[s.ingest_devices] = result
        self.figures += ingest.figures(result)
        self.details["ingest"] = {**result.as_dict(), "workers": extra}

    async def freshness(self) -> None:
        s = self.scale
        log(
            f"2. freshness: {s.fresh_clients} pages, {s.fresh_rate:g} msg/s, "
            f"{s.fresh_devices} devices, {s.fresh_seconds:g} s"
        )
        fresh = await freshness.measure(
            self.stack,
            s.fresh_devices,
            s.fresh_clients,
            s.fresh_rate,
            s.fresh_seconds,
            self.profile("freshness-server"),
        )
        self.measured.fresh[s.fresh_clients] = fresh
        self.figures += freshness.freshness_figures(fresh, self.window_ms)
        self.details["freshness"] = fresh.summary()
        log(f"3. bandwidth baseline: {s.fresh_clients} MQTT-over-WebSocket clients")
        baseline = await freshness.measure_baseline(
            self.stack, s.fresh_devices, s.fresh_clients, s.fresh_rate, s.fresh_seconds
        )
        self.measured.bandwidth = baseline
        self.figures += freshness.bandwidth_figures(fresh, baseline)
        self.details["bandwidth_baseline"] = asdict(baseline)

    async def render(self) -> None:
        s = self.scale
        log(f"5. render: {s.render_devices} devices")
        result = await render.measure(self.stack, s.render_devices, s.render_repeats)
        self.measured.render[s.render_devices] = result
        self.figures += render.figures(result)
        self.details["render"] = result.summary()

    async def mqttread(self) -> None:
        s = self.scale
        log(f"10. MQTT read: {s.mqtt_messages} PUBLISH packets, paho's read and the bridge's")
        result = mqtt_read.measure(s.mqtt_messages, s.mqtt_rounds)
        self.figures += mqtt_read.figures(result)
        self.details["mqtt_read"] = result.summary()

    async def memory(self) -> None:
        s = self.scale
        points = sorted({*s.growth_clients, s.memory_clients})
        log(f"4. memory: {s.memory_clients} pages, {s.memory_cycles} cycles")
        result = await memory.measure(
            self.stack, s.fresh_devices, s.memory_clients, s.memory_cycles, points, s.memory_settle
        )
        self.measured.memory = result
        self.figures += memory.figures(result, s.memory_clients)
        self.details["memory"] = result.summary()

    async def growth(self) -> None:
        s = self.scale
        log(f"6. growth: devices {s.growth_devices}, pages {s.growth_clients}")
        more, self.details["growth"] = await growth.run(
            self.stack,
            self.measured,
            list(s.growth_devices),
            list(s.growth_clients),
            s.growth_seconds,
            s.fresh_devices,
            s.fresh_rate,
            self.window_ms,
            max(2, s.render_repeats // 2),
            s.memory_settle,
        )
        self.figures += more
        failed = self.details["growth"]["failed"]
        if failed:  # the other sizes' figures are kept; the run still reports the failure
            raise RuntimeError(f"growth sizes failed: {failed}")

    async def confirm(self) -> None:
        trials = self.scale.confirm_trials
        log(f"7. confirm: {trials} actions, last lamp's report to confirmed on a page")
        result = await confirm.measure(self.stack, trials)
        self.figures += confirm.figures(result)
        self.details["confirm"] = result.summary()

    async def broadcast(self) -> None:
        s = self.scale
        results = self.details.setdefault("broadcast", {})
        for pages in s.broadcast_pages:
            log(f"8. broadcast: {pages} pages in {broadcast.PROCESSES} processes, then bare")
            result = await broadcast.measure(
                self.stack,
                s.fresh_devices,
                pages,
                s.fresh_rate,
                s.growth_seconds,
                self.window_ms,
                profile=self.profile(f"broadcast-{pages}-server"),
            )
            self.figures += broadcast.figures(result, self.window_ms)
            results[str(pages)] = result.summary()

    async def occupancy(self) -> None:
        s = self.scale
        log(
            f"9. occupancy: report of {s.occupancy_places} places over {s.occupancy_days} days "
            "of minute rollups"
        )
        result = await occupancy.measure(
            self.stack, s.occupancy_places, s.occupancy_days, s.occupancy_repeats
        )
        self.figures += occupancy.figures(result)
        self.details["occupancy"] = result.summary()


async def run(
    scale: Scale,
    only: set[str],
    profile_dir: Path | None = None,
    scale_out: bool = False,
    server_variant: str = "as-is",
) -> tuple[list[Figure], dict[str, Any], list[str]]:
    """Every chosen scenario in order; one that fails is reported and the rest still run."""
    directory = workdir()
    settings = scale.serve_settings
    stack = (
        ScaledStack(directory, settings, server_variant)
        if scale_out
        else Stack(directory, server_variant, settings)
    )
    errors: list[str] = []
    try:
        log(f"starting mosquitto and the dashboard in {directory}")
        started = time.monotonic()
        stack.start()
        runner = Runner(stack, scale, profile_dir)
        timings = runner.details.setdefault("seconds", {"start": time.monotonic() - started})
        for name in SCENARIOS:
            if name not in only:
                continue
            started = time.monotonic()
            try:
                await getattr(runner, name)()
            except Exception:
                log(f"{name} failed:\n{traceback.format_exc()}")
                errors.append(f"{name}: {traceback.format_exc(limit=3)}")
            timings[name] = round(time.monotonic() - started, 1)
        runner.details["errors"] = errors
        runner.details["render_state_published_again"] = render.REPUBLISHED
        if scale_out:
            runner.figures = [replace(f, name=f"{f.name}@{SCALED}") for f in runner.figures]
            runner.details["layout"] = SCALED
        return runner.figures, runner.details, errors
    finally:
        try:
            stack.stop()
        except RuntimeError:
            # A server that would not stop is an error of the run; its figures still count.
            log(f"stopping failed:\n{traceback.format_exc()}")
            errors.append(f"stop: {traceback.format_exc(limit=3)}")
        shutil.rmtree(directory, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="toy sizes, about 33 s")
    parser.add_argument("--only", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"default {RESULTS}")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy the bridge (ingest) and the server (freshness, broadcast); profile-*.txt beside --out",
    )
    parser.add_argument(
        "--scale-out",
        action="store_true",
        help="scenarios 2-3 on two web processes and a bridge worker with Redis and PostgreSQL; "
        "8 with its pages on one of them",
    )
    parser.add_argument(
        "--ingest-devices", type=int, help="scenario 1 at this many devices (10000: the issue's)"
    )
    parser.add_argument(
        "--server-variant",
        choices=SERVER_VARIANTS,
        default="as-is",
        help="every dashboard process with this variant of bench/experiments.py; its records "
        "go to files named after --out (trace, collections, stalls: the variant's docstring)",
    )
    args = parser.parse_args(argv)
    if args.server_variant != "as-is":
        os.environ["BENCH_TRACE"] = str(args.out.resolve().with_suffix(".trace"))
    if args.scale_out and set(args.only) - {"freshness", "broadcast"}:
        parser.error("--scale-out runs scenarios 2, 3 and 8 only: add --only freshness broadcast")
    os.chdir(Path(__file__).resolve().parent.parent)
    machine = machine_info()
    started = time.monotonic()
    scale = SMOKE if args.smoke else FULL
    if args.ingest_devices:
        scale = replace(scale, ingest_devices=args.ingest_devices)
    profiles = args.out.resolve().parent if args.profile else None
    figures, details, errors = asyncio.run(
        run(scale, set(args.only), profiles, args.scale_out, args.server_variant)
    )
    machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    machine["run_seconds"] = round(time.monotonic() - started, 1)
    machine["mode"] = "smoke" if args.smoke else "full"
    write_results(args.out, machine, figures, details)
    print(table(figures))
    print(f"\nwrote {args.out} ({machine['run_seconds']} s)")
    for error in errors:
        print(f"FAILED {error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
