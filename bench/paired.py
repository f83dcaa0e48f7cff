"""Paired A/B: two servers on one broker take the same stream at the same moments.

``python -m bench.paired (--against DIR | --variant NAME) [--runs N] [--rate R] [--seconds S]``

On these shared machines one server's CPU for the same stream moves by a quarter between
runs minutes apart (docs/benchmarks.md, "2026-12-05"), more than most changes save. Two
servers measured side by side meet the same machine: server A is this checkout's ``manage.py
serve``; server B is another checkout's (``--against``, say a ``git worktree`` of the commit
before a change) or this one with a server variant of bench/experiments.py (``--variant``).
Each has its own database with the same building (500 devices, scenario 8's) and one page;
the publisher streams scenario 8's values to the building, and both servers' CPU seconds
over each stream (and its settling) are printed, with B/A. ``--runs`` streams; an A/A run
(``--against .``) shows the method's own spread (0.96-1.04 per stream, 1.006 over three).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

import tests.served
from bench import broadcast
from bench.clients import PageClient, close_all, open_pages
from bench.freshness import final_share, publish_stream, settle, stats_of
from bench.harness import Stack, VariantServed, quiet
from tests.served import ServedDashboard


class CheckoutServed(ServedDashboard):
    """``serve`` from another checkout of the project (its code, this machine's virtualenv)."""

    def __init__(self, checkout: Path, directory: Path, mqtt_url: str, **settings: Any) -> None:
        super().__init__(directory, mqtt_url, **settings)
        self.checkout = checkout

    def manage(self, *args: str) -> str:
        with self._rooted():
            return super().manage(*args)

    def start(self, command: str = "serve", *args: str, **kwargs: Any) -> ServedDashboard:
        with self._rooted():
            return super().start(command, *args, **kwargs)

    @contextlib.contextmanager
    def _rooted(self) -> Iterator[None]:
        # ServedDashboard runs ROOT / "manage.py" in ROOT (as VariantServed, bench/harness.py).
        real, tests.served.ROOT = tests.served.ROOT, self.checkout
        try:
            yield
        finally:
            tests.served.ROOT = real


def cpu(pid: int) -> float:
    return sum(psutil.Process(pid).cpu_times()[:2])


async def measure(args: argparse.Namespace) -> list[tuple[float, float]]:
    """(A, B) CPU seconds per stream."""
    directory = Path(tempfile.mkdtemp(prefix="gooee-paired-"))
    stack = Stack(directory).start()
    other: ServedDashboard | None = None
    pages: list[PageClient] = []
    try:
        building = stack.add_building(500, broadcast.SEED, 2)
        # Its own client ids: the broker would otherwise hand A's sessions to B and back.
        settings = {**stack.settings, "MQTT_CLIENT_ID_PREFIX": "gooee-paired-b"}
        (directory / "b").mkdir()
        if args.against is not None:
            other = CheckoutServed(
                args.against.resolve(), directory / "b", stack.broker.url, **settings
            )
        else:
            other = VariantServed(directory / "b", stack.broker.url, args.variant, **settings)
        other.migrate()
        # The same building from the same inventory file: the same ids, its own sessions.
        script = f"from bench.dbsetup import setup; setup({str(building.inventory_file)!r}, 1)"
        sessions = json.loads(other.manage("shell", "-c", script).strip().splitlines()[-1])
        other.start()
        assert other.process is not None
        pages += await open_pages(stack.url, building.id, building.sessions[:1])
        pages += await open_pages(other.url, building.id, sessions["sessions"][:1])
        for page in pages:
            await broadcast.until_bridged(stack, building, page)
        pids = (stack.server_pid, other.process.pid)
        results = []
        for run in range(args.runs):
            await stack.until_quiet()
            await quiet(pids[1])
            began = [cpu(pid) for pid in pids]
            stream = await publish_stream(stack, building, args.rate, args.seconds, f"paired-{run}")
            await settle(pages, stream)
            a, b = (cpu(pid) - start for pid, start in zip(pids, began, strict=True))
            # A server that did not show the stream did not do the same work.
            for side, stats in zip("AB", await stats_of(pages), strict=True):
                if final_share(stats.latest, stream.last) < 100.0:
                    raise SystemExit(f"server {side}'s page did not show every final value")
            results.append((a, b))
            print(f"stream {run + 1}: A {a:.2f} s, B {b:.2f} s, B/A {_ratio(b, a)}", flush=True)
        return results
    finally:
        await close_all(pages)
        if other is not None:
            other.stop()
        stack.stop()


def _ratio(b: float, a: float) -> str:
    return f"{b / a:.3f}" if a else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.paired", description=__doc__)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--against", type=Path, help="server B from this checkout")
    which.add_argument("--variant", help="server B: this checkout with a server variant")
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--rate", type=float, default=2000.0, help="messages/s (scenario 8's)")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    results = asyncio.run(measure(args))
    a, b = (sum(side) for side in zip(*results, strict=True))
    print(f"over {len(results)} streams: A {a:.2f} s, B {b:.2f} s, B/A {_ratio(b, a)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
