"""``python -m bench.tile_render [--devices N] [--before REV]``: µs per tile, before and after.

The bridge renders one tile per changed value: at 10,000 devices nearly every message is a
tile of its own (``dashboard/bridge/fanout.py``), so a tile's render is a share of ingest.
This renders every device's value tile (``meta``) and every space's card (``headcount``) of
a generated building through the real path (``fragments.render_tile``), and the same
contexts through Django's engine with the fragment as it was at ``--before`` (the last commit
whose fragments were Django templates), in one process, alternating, so both see the same
machine. Prints the minimum and median of the rounds, in µs per tile.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
import zoneinfo
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BEFORE = "cec4138"  # the fragments as Django templates
KINDS = ("meta", "headcount")  # fragments without includes: their old text renders alone


def setup() -> None:
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "gooee_site.settings",
            "SECRET_KEY": "insecure-key-for-benchmarks",
            "DEBUG": "false",
        }
    )
    import django

    django.setup()


def building(devices: int) -> tuple[Any, Any, dict[str, list[Any]]]:
    """A building's inventory and live state: every device with a lamp's three values, a
    space per ten devices with its headcount; the tiles of each kind."""
    from dashboard.live import tiles
    from dashboard.live.buildings import BuildingInventory, Entity
    from dashboard.live.state import HeadcountValue, LiveState, MetaValue

    inventory = BuildingInventory(uuid.uuid4(), "Bench", 1, zone=zoneinfo.ZoneInfo("Europe/London"))
    state = LiveState(inventory.id)
    now = datetime.now(UTC)
    found: dict[str, list[Any]] = {kind: [] for kind in KINDS}
    for n in range(devices):
        space_id = uuid.UUID(int=n // 10 + 1)
        if n % 10 == 0:
            inventory.spaces[space_id] = Entity(space_id, f"Room {n // 10}", capacity=20)
            count = HeadcountValue("space", space_id, "head_count", 7, now)
            state.headcounts[(space_id, "head_count")] = count
            found["headcount"].append(tiles.headcount(space_id))
        device_id = uuid.uuid4()
        inventory.devices[device_id] = Entity(device_id, f"Lamp {n}", space_id=space_id)
        state.meta[device_id] = {
            name: MetaValue(device_id, name, value, name, unit, "", now)
            for name, value, unit in (("dim", 80, "%"), ("power", 0.41, "W"), ("onoff", 1, ""))
        }
        found["meta"].append(tiles.meta(device_id, "dim"))
    return inventory, state, found


def git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout


def django_fragment(template: str, before: str) -> Any:
    """The fragment's text at ``before``, compiled by Django's engine."""
    from django.template import engines

    return engines["django"].from_string(git("show", f"{before}:templates/{template}"))


def rounds(paths: dict[str, Callable[[], object]], count: int) -> dict[str, list[float]]:
    """Seconds per call of each path, ``count`` rounds, the paths taking turns."""
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(count):
        for name, run in paths.items():
            began = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - began)
    return times


def measure_kind(
    kind: str, batch: list[Any], state: Any, inventory: Any, before: str, count: int
) -> None:
    from dashboard.live import fragments, tiles

    make = fragments.CONTEXTS[kind]
    contexts = [make(tile, state, inventory) for tile in batch]
    old = django_fragment(tiles.KINDS[kind].template, before)
    new = fragments.render_tile(batch[0], state, inventory)
    # The same bytes but for the entities the two escape quotes with (a headcount card's
    # times now carry the building's offset, as its page showed them, not the server's).
    same = old.render(contexts[0]).replace("&#x27;", "&#39;").replace("&quot;", "&#34;")
    if kind == "meta" and same != new:
        print(f"  {kind}: the two engines' HTML differs", file=sys.stderr)
    paths: dict[str, Callable[[], object]] = {
        "context only": lambda: [make(t, state, inventory) for t in batch],
        "django template": lambda: [old.render(c) for c in contexts],
        "render_tile, django (before)": lambda: [
            old.render(make(t, state, inventory)) for t in batch
        ],
        "render_tile, jinja2 (after)": lambda: [
            fragments.render_tile(t, state, inventory) for t in batch
        ],
    }
    for name, seconds in rounds(paths, count).items():
        per = [s / len(batch) * 1e6 for s in seconds]
        print(f"  {kind:9} {name:30} {min(per):7.1f} / {statistics.median(per):7.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tile_render", description=__doc__)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--before", default=BEFORE, help=f"default {BEFORE}")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    setup()
    inventory, state, found = building(args.devices)
    print(f"{args.devices} devices, µs per tile: min / median of {args.rounds} rounds")
    for kind in KINDS:
        measure_kind(kind, found[kind], state, inventory, args.before, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
