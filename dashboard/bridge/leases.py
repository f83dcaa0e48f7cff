"""Which bridge worker runs which building: leases in Redis, spread by rendezvous hashing.

Every worker heartbeats into a sorted set; a worker counts as alive while its heartbeat is
younger than one lease period. Every worker computes the same assignment from the live
workers and the buildings: rendezvous hashing with a load bound, so buildings spread evenly
(no worker gets more than its share, rounded up) and few move when a worker joins or leaves.
A worker runs a building only while it holds the building's lease key (SET NX PX, renewed
well within the period); when a worker dies its leases expire and the new owners take over.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
import uuid
from collections.abc import Iterable

from redis import asyncio as aioredis

# The key names live where the web side's readiness check reads them too.
from dashboard.live.readiness import WORKERS, lease_key

logger = logging.getLogger(__name__)

# Compare-and-act: only the holder may renew or release its lease.
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


def assign(buildings: Iterable[uuid.UUID], workers: Iterable[str]) -> dict[uuid.UUID, str]:
    """Which live worker runs each building: the same answer on every worker."""
    workers = sorted(workers)
    buildings = sorted(buildings, key=str)
    if not workers:
        return {}
    share = math.ceil(len(buildings) / len(workers))
    load = dict.fromkeys(workers, 0)
    owners = {}
    for building_id in buildings:

        def weight(worker: str, building_id: uuid.UUID = building_id) -> bytes:
            return hashlib.sha256(f"{worker}/{building_id}".encode()).digest()

        chosen = next(w for w in sorted(workers, key=weight, reverse=True) if load[w] < share)
        load[chosen] += 1
        owners[building_id] = chosen
    return owners


class Leases:
    """One worker's view of the leases: heartbeat, claim, renew, release."""

    def __init__(self, url: str, worker: str, period: float = 10.0) -> None:
        self.worker = worker
        self.period = period
        self._redis = aioredis.from_url(url)
        self._renew = self._redis.register_script(_RENEW)
        self._release = self._redis.register_script(_RELEASE)

    @staticmethod
    def key(building_id: uuid.UUID) -> str:
        return lease_key(building_id)

    async def heartbeat(self) -> list[str]:
        """Say this worker is alive; return every live worker (this one included)."""
        now = time.time()
        pipe = self._redis.pipeline()
        pipe.zadd(WORKERS, {self.worker: now})
        pipe.zremrangebyscore(WORKERS, "-inf", now - self.period)
        pipe.zrange(WORKERS, 0, -1)
        *_, workers = await pipe.execute()
        return [w.decode() for w in workers]

    async def claim(self, building_id: uuid.UUID) -> bool:
        """Take the building's lease if nobody holds it (or this worker already does)."""
        ms = int(self.period * 1000)
        if await self._redis.set(self.key(building_id), self.worker, nx=True, px=ms):
            return True
        return bool(await self._renew(keys=[self.key(building_id)], args=[self.worker, ms]))

    async def renew(self, building_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
        """Extend the leases held; return the buildings whose lease this worker lost."""
        ms = int(self.period * 1000)
        lost = set()
        for building_id in building_ids:
            if not await self._renew(keys=[self.key(building_id)], args=[self.worker, ms]):
                lost.add(building_id)
        return lost

    async def release(self, building_id: uuid.UUID) -> None:
        await self._release(keys=[self.key(building_id)], args=[self.worker])

    async def leave(self, building_ids: Iterable[uuid.UUID]) -> None:
        """A clean stop: give every lease back at once so others need not wait for expiry."""
        for building_id in building_ids:
            await self.release(building_id)
        await self._redis.zrem(WORKERS, self.worker)
        await self._redis.aclose()
