"""Scenario 4, memory: the server's resident memory per connected idle page, and whether it
comes back when pages leave.

On a freshly started server (the building's live state loaded, a few pages opened and closed
first so one-time costs are paid), pages are opened up to each checkpoint; the growth of the
server's RSS divided by the pages open is the cost per page. Then all pages close and open
again, ``cycles`` times; the RSS with all of them open should stay flat. The baseline is
Mosquitto's RSS growth per idle MQTT-over-WebSocket client subscribed to the building's
topics: what the same pages would cost the broker if browsers talked to it straight.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from bench.clients import PageClient, close_all, open_mqtt_clients, open_pages
from bench.figures import Figure, Target, figure
from bench.freshness import SEED
from bench.harness import BenchBroker, Building, Stack, quiet, rss

SETTLE = 1.5  # seconds after the last page connected or left, before RSS is read (full run)
WARM_UP_PAGES = 10
KB = 1024


@dataclass
class Memory:
    checkpoints: dict[int, float] = field(default_factory=dict)  # pages -> KB per page
    baseline: dict[int, float] = field(default_factory=dict)  # clients -> KB per client
    start_rss_mb: float = 0.0
    connected_rss_mb: list[float] = field(default_factory=list)  # per cycle, all pages open
    idle_rss_mb: list[float] = field(default_factory=list)  # per cycle, after they left

    def summary(self) -> dict[str, Any]:
        return dict(self.__dict__)


async def until_served(stack: Stack, building: Building) -> None:
    """Open and close one page until it gets its snapshot: the restarted bridge is up."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 120
    while True:
        page = PageClient(stack.url, building.id, building.sessions[0])
        try:
            await page.open(timeout=5)
            return
        except TimeoutError:
            if loop.time() > deadline:
                raise
        finally:
            await page.close()


async def measure(
    stack: Stack,
    devices: int,
    clients: int,
    cycles: int,
    checkpoints: list[int],
    settle: float = SETTLE,
) -> Memory:
    building = stack.add_building(devices, SEED, clients)
    stack.restart_server()
    await until_served(stack, building)
    warm = await open_pages(stack.url, building.id, building.sessions[:WARM_UP_PAGES])
    await close_all(warm)
    await quiet(stack.server_pid)
    pid = stack.server_pid
    result = Memory(start_rss_mb=rss(pid) / 2**20)
    start = rss(pid)
    pages: list[PageClient] = []
    try:
        for point in sorted(p for p in checkpoints if p <= clients):
            pages += await open_pages(stack.url, building.id, building.sessions[len(pages) : point])
            await asyncio.sleep(settle)
            result.checkpoints[point] = (rss(pid) - start) / point / KB
        for cycle in range(cycles):
            if cycle > 0:
                pages = await open_pages(stack.url, building.id, building.sessions[:clients])
                await asyncio.sleep(settle)
            result.connected_rss_mb.append(rss(pid) / 2**20)
            await close_all(pages)
            pages = []
            await asyncio.sleep(settle)
            result.idle_rss_mb.append(rss(pid) / 2**20)
    finally:
        await close_all(pages)
    result.baseline = await broker_cost(building, clients, checkpoints, settle)
    return result


async def broker_cost(
    building: Building, clients: int, checkpoints: list[int], settle: float
) -> dict[int, float]:
    """Mosquitto's RSS growth per idle MQTT-over-WebSocket client, at each checkpoint.

    A Mosquitto of its own: dropping a thousand clients' two million subscriptions keeps a
    broker busy for minutes, which the next scenario must not share.
    """
    broker = BenchBroker().start()
    opened: list[Any] = []
    cost = {}
    try:
        pid, port = broker.pid, broker.ws_port
        assert pid is not None and port is not None
        start = rss(pid)
        for point in sorted(p for p in checkpoints if p <= clients):
            opened += await open_mqtt_clients(port, building.topics, point - len(opened))
            await asyncio.sleep(settle)
            cost[point] = (rss(pid) - start) / point / KB
    finally:
        with contextlib.suppress(Exception):
            await close_all(opened)
        broker.stop()
    return cost


def figures(result: Memory, clients: int) -> list[Figure]:
    connected = result.connected_rss_mb
    first = connected[0] if connected else None
    # The first round's close leaves the process a few MB above it for good (the allocator
    # keeps what 1,000 pages' teardown used), and later rounds stay at that level. Both are
    # judged: the last round against the first, as always, and against the second, where a
    # leak shows alone, without that one-time step.
    second = connected[1] if len(connected) > 1 else first
    return [
        figure(
            f"memory.per_idle_client@{clients}",
            result.checkpoints.get(clients),
            "KB",
            result.baseline.get(clients),
            Target("value", "<=", 64),
        ),
        *(
            figure(
                f"memory.rss_after_{len(connected)}_cycles{against}",
                connected[-1] if connected else None,
                "MB",
                baseline,
                Target("ratio", "<", limit),
            )
            for against, baseline, limit in (("", first, 1.05), ("_from_round_2", second, 1.02))
        ),
    ]
