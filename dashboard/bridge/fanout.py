"""Coalesced fan-out of a building's changed tiles to its browsers.

Within one window only the latest state of each tile is rendered, once, and sent
to the building's group in a single message; a change during a flush is sent in
the next window, so the final value always goes out.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable

from dashboard.bridge import tiles
from dashboard.bridge.tiles import Tile

logger = logging.getLogger(__name__)

Send = Callable[[uuid.UUID, str, str], Awaitable[None]]
Render = Callable[[Tile], str]


class Fanout:
    """Collects changed tiles of one building and flushes them every ``window`` seconds."""

    def __init__(self, building_id: uuid.UUID, render: Render, send: Send, window: float) -> None:
        self.building_id = building_id
        self._render = render
        self._send = send
        self._window = window
        self._dirty: dict[Tile, None] = {}  # an ordered set
        self._wake = asyncio.Event()
        self.flushes = 0

    def changed(self, tile: Tile) -> None:
        self._dirty[tile] = None
        self._wake.set()

    async def run(self) -> None:
        """Flush forever, one window after the first change of each batch."""
        while True:
            await self._wake.wait()
            await asyncio.sleep(self._window)
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        dirty, self._dirty = self._dirty, {}
        if not dirty:
            return
        by_audience: dict[str, list[str]] = {}
        for tile in dirty:
            # A device's whole list supersedes its single values in the same window.
            if tile[0] == "meta" and tiles.device(tile[1]) in dirty:
                continue
            audience = tiles.KINDS[tile[0]].audience
            try:
                by_audience.setdefault(audience, []).append(self._render(tile))
            except Exception:
                logger.exception(
                    "could not render tile %s of building %s", tile[0], self.building_id
                )
        for audience, parts in by_audience.items():
            await self._send(self.building_id, "".join(parts), audience)
        self.flushes += 1
