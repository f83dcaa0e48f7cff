"""Bridge workers share buildings through leases in a real Redis: spread, hand over, take over."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections import Counter
from typing import Any

import pytest
from redis import asyncio as aioredis

from dashboard.bridge.leases import Leases, assign
from dashboard.contract.topics import Kind, Scope, build_topic
from tests import seed
from tests.bridging import send, until
from tests.factories import make_building

pytestmark = [pytest.mark.broker, pytest.mark.django_db(transaction=True)]

# A Redis database of the suite's own, emptied before and after each test.
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
LEASE = 2.0


def test_every_worker_computes_the_same_even_assignment_and_few_buildings_move():
    buildings = [uuid.uuid4() for _ in range(90)]
    two = assign(buildings, ["w1", "w2"])
    assert assign(reversed(buildings), ["w2", "w1"]) == two
    assert sorted(Counter(two.values()).values()) == [45, 45]
    three = assign(buildings, ["w1", "w2", "w3"])
    assert sorted(Counter(three.values()).values()) == [30, 30, 30]
    moved = sum(1 for b in buildings if two[b] != three[b])
    assert moved <= 45  # a third of the buildings would be ideal; never most of them
    assert assign(buildings, []) == {}


@pytest.fixture
async def redis_db():
    redis = aioredis.from_url(REDIS_URL)
    try:
        await redis.ping()
    except OSError:
        pytest.fail(f"Redis not reachable at {REDIS_URL} (see README: tests need Redis)")
    await redis.flushdb()
    yield redis
    await redis.flushdb()
    await redis.aclose()


@pytest.fixture
def buildings(db) -> list[dict]:
    return [make_building(f"Building {n}") for n in range(4)]


def worker(name: str) -> Leases:
    return Leases(REDIS_URL, name, LEASE)


async def test_two_workers_split_the_buildings_and_a_dead_ones_are_taken_over(
    redis_db, buildings, running_bridge, publish
):
    first = await running_bridge(leases=worker("worker-1"))
    await until(lambda: len(first.buildings) == 4, 10, "the first worker to take all four")

    second = await running_bridge(leases=worker("worker-2"))
    await until(lambda: len(second.buildings) == 2, 10, "a split")
    await until(lambda: len(first.buildings) == 2, 10, "the first to hand two over")
    assert not set(first.buildings) & set(second.buildings)
    for building_id in second.buildings:
        holder = await redis_db.get(Leases.key(building_id))
        assert holder == b"worker-2"

    # worker-2 dies without a word: its leases run out, then worker-1 takes over.
    taken = set(second.buildings)
    second._stopping.set()
    second.leases.leave = _die  # a dead worker gives nothing back
    loop = asyncio.get_running_loop()
    died_at = loop.time()
    await until(lambda: len(first.buildings) == 4, LEASE * 4, "the takeover")
    assert loop.time() - died_at <= LEASE + 2  # within a lease period, plus one poll

    # Values published after the takeover reach live state on the survivor.
    building_id = next(iter(taken))
    device = next(iter(first.buildings[building_id].inventory.devices))
    await until(lambda: first.buildings[building_id].session.connected, 10, "reconnected")
    await asyncio.sleep(0.3)  # subscriptions
    await send(publish, build_topic(Scope.DEVICE, device, Kind.META), seed.DEVICE_META)
    await until(lambda: device in first.buildings[building_id].state.meta, 10, "the value")


async def _die(building_ids) -> None:
    return None


async def test_a_clean_stop_hands_buildings_over_at_once(redis_db, buildings, running_bridge):
    first = await running_bridge(leases=worker("worker-1"))
    leaving = worker("worker-2")
    left = asyncio.Event()
    give_back = leaving.leave

    async def leave(building_ids: Any) -> None:
        await give_back(building_ids)
        left.set()

    leaving.leave = leave  # type: ignore[method-assign]
    second = await running_bridge(leases=leaving)
    await until(lambda: len(first.buildings) == len(second.buildings) == 2, 10, "a split")
    second.stop()
    # It stops its sessions and writes its history first (on a busy machine that alone can
    # take a lease period); from when it gives the leases back, the handover is at once.
    await asyncio.wait_for(left.wait(), 10)
    await until(lambda: len(first.buildings) == 4, LEASE, "the handover, well before expiry")
