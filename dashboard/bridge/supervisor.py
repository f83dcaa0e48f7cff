"""The bridge: one session per building on one event loop, following the inventory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import sync_to_async

from dashboard import fragments, live
from dashboard.bridge import tiles
from dashboard.bridge.buildings import BuildingInventory, load_inventory, load_versions
from dashboard.bridge.fanout import Fanout, Send
from dashboard.bridge.history import HistoryWriter
from dashboard.bridge.ingest import ingest
from dashboard.bridge.session import BuildingSession, SessionConfig
from dashboard.bridge.state import ConnectionStatus, LiveState
from dashboard.bridge.store import load_state

logger = logging.getLogger(__name__)

STATUS_EVERY = 5.0  # seconds between status pushes caused by traffic alone


class BuildingBridge:
    """A building's session, live state and fan-out, wired together."""

    def __init__(
        self,
        inventory: BuildingInventory,
        state: LiveState,
        config: SessionConfig,
        history: HistoryWriter,
        send: Send,
        window: float,
        max_bytes: int,
    ) -> None:
        self.inventory = inventory
        self.state = state
        self._history = history
        self._max_bytes = max_bytes
        self._status_pushed = 0.0
        self.fanout = Fanout(inventory.id, self.render, send, window)
        self.session = BuildingSession(
            inventory.id, config, inventory.topics(), self.on_message, self.on_status
        )
        state.status = self.session.status
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self.session.run(), name=f"session-{self.inventory.id}"),
            asyncio.create_task(self.fanout.run(), name=f"fanout-{self.inventory.id}"),
        ]

    async def stop(self) -> None:
        await self.session.stop()
        for task in self._tasks:
            if task.get_name().startswith("fanout"):
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.fanout.flush()

    def update_inventory(self, inventory: BuildingInventory) -> None:
        previous, self.inventory = self.inventory, inventory
        self.session.set_topics(inventory.topics())
        # Re-render only devices that are new or renamed, not the whole building.
        for device_id, device in inventory.devices.items():
            if previous.devices.get(device_id) != device:
                self.fanout.changed(tiles.device(device_id))

    def on_message(self, topic: str, payload: bytes) -> None:
        now = datetime.now(UTC)
        ingest(self.state, self.inventory, topic, payload, now, self, max_bytes=self._max_bytes)
        if now.timestamp() - self._status_pushed > STATUS_EVERY:
            self._status_pushed = now.timestamp()
            self.fanout.changed(tiles.STATUS)

    def on_status(self, status: ConnectionStatus) -> None:
        self.fanout.changed(tiles.STATUS)

    # The ingest sink
    def changed(self, tile: tiles.Tile) -> None:
        self.fanout.changed(tile)

    def record(self, record: object) -> None:
        self._history.add(self.inventory.id, record)

    def render(self, tile: tiles.Tile) -> str:
        return fragments.render_tile(tile, self.state, self.inventory)


class Bridge:
    """Runs a session for each building (or the chosen ones) until stopped."""

    def __init__(
        self,
        config: SessionConfig,
        *,
        building_ids: list[uuid.UUID] | None = None,
        window: float = 0.25,
        poll_interval: float = 2.0,
        history_interval: float = 2.0,
        max_bytes: int = 256 * 1024,
        send: Send = live.broadcast,
    ) -> None:
        self.config = config
        self._only = building_ids
        self._window = window
        self._poll_interval = poll_interval
        self._max_bytes = max_bytes
        self._send = send
        self.history = HistoryWriter(history_interval)
        self.buildings: dict[uuid.UUID, BuildingBridge] = {}
        self._stopping = asyncio.Event()
        self.ready = asyncio.Event()  # set once every building's session has started

    async def run(self) -> None:
        history = asyncio.create_task(self.history.run(), name="history")
        try:
            while not self._stopping.is_set():
                try:
                    await self.sync_inventory()
                except Exception:
                    logger.exception("could not read the inventory; retrying")
                self.ready.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self._poll_interval)
        finally:
            await asyncio.gather(*(b.stop() for b in self.buildings.values()))
            history.cancel()
            await asyncio.gather(history, return_exceptions=True)
            await self.history.close()
            logger.info("bridge stopped; %d history records written", self.history.written)

    def stop(self) -> None:
        self._stopping.set()

    async def sync_inventory(self) -> None:
        """Start, update or stop building sessions to match the database."""
        versions = await _db(load_versions, self._only)
        for building_id in list(self.buildings):
            if building_id not in versions:
                logger.info("building %s removed; stopping its session", building_id)
                await self.buildings.pop(building_id).stop()
        for building_id, version in versions.items():
            running = self.buildings.get(building_id)
            if running is not None and running.inventory.version == version:
                continue
            inventory = await _db(load_inventory, building_id)
            if inventory is None:
                continue
            if running is not None:
                running.update_inventory(inventory)
                continue
            state = await _db(load_state, building_id)
            bridge = BuildingBridge(
                inventory,
                state,
                self.config,
                self.history,
                self._send,
                self._window,
                self._max_bytes,
            )
            self.buildings[building_id] = bridge
            bridge.start()
            logger.info(
                "building %s (%s): %d topics", inventory.name, building_id, len(inventory.topics())
            )


async def _db(func: Callable[..., Any], *args: Any) -> Any:
    return await sync_to_async(func, thread_sensitive=False)(*args)
