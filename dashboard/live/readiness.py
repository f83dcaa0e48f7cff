"""What the web side may know of the bridge for ``/readyz``, without importing it.

A bridge running in this process registers here and keeps its buildings' session statuses
in it (the same ``ConnectionStatus`` objects the sessions update). Buildings run by bridge
workers elsewhere are known from their leases in Redis: the lease keys and the workers'
heartbeats are named here, where both the bridge (dashboard/bridge/leases.py) and the web
side read them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

import redis

from dashboard.live.state import ConnectionStatus

LEASE_PREFIX = "gooee:bridge"
WORKERS = f"{LEASE_PREFIX}:workers"  # sorted set: worker -> time of its last heartbeat


def lease_key(building_id: uuid.UUID) -> str:
    return f"{LEASE_PREFIX}:lease:{building_id}"


@dataclass
class LocalBridge:
    """One bridge running in this process: its buildings' sessions, once it has started them."""

    synced: bool = False  # the buildings were read (and leases claimed) at least once
    sessions: dict[uuid.UUID, ConnectionStatus] = field(default_factory=dict)


_running: list[LocalBridge] = []


def register(bridge: LocalBridge) -> None:
    _running.append(bridge)


def unregister(bridge: LocalBridge) -> None:
    if bridge in _running:
        _running.remove(bridge)


def local_bridge() -> LocalBridge | None:
    """The bridges running in this process, as one; None when none runs here (web only)."""
    if not _running:
        return None
    merged = LocalBridge(synced=all(b.synced for b in _running))
    for bridge in _running:
        merged.sessions.update(bridge.sessions)
    return merged


def fresh_lease_holders(
    url: str, building_ids: Iterable[uuid.UUID], period: float, timeout: float = 2.0
) -> set[uuid.UUID]:
    """The buildings whose lease is held by a worker that heartbeat within ``period``."""
    ids = list(building_ids)
    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        pipe = client.pipeline(transaction=False)
        pipe.zrangebyscore(WORKERS, time.time() - period, "+inf")
        for building_id in ids:
            pipe.get(lease_key(building_id))
        alive, *holders = pipe.execute()
    finally:
        client.close()
    live = set(alive)
    return {b for b, holder in zip(ids, holders, strict=True) if holder in live}
