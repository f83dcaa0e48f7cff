"""Coalesced fan-out of a building's changed tiles to its browsers.

Within one window only the latest state of each tile is rendered, once, and sent
to the building's group in a single message; a change during a flush is sent in
the next window, so the final value always goes out. Flushes begin at most once a
window, and most tiles are rendered in the window's last part, ahead of the flush.
Pages that (re)connect ask for a snapshot: every tile, rendered once per window
however many pages ask.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable

from dashboard.live import metrics, tiles
from dashboard.live.tiles import Tile

logger = logging.getLogger(__name__)

# In a window's last quarter, what changed so far is rendered every 1/25 window, so the flush
# itself renders only what changed in the last step (docs/benchmarks.md, "Freshness").
RENDER_AHEAD = 0.25
RENDER_STEP = 0.04

# (building id, html, audience, stream, seq)
Send = Callable[[uuid.UUID, str, str, str, int], Awaitable[None]]
# (channel, building id, html, {audience: (stream, seq)})
Reply = Callable[[str, uuid.UUID, str, dict[str, tuple[str, int]]], Awaitable[None]]
Render = Callable[[Tile], str]
AllTiles = Callable[[str], Iterable[Tile]]


class Fanout:
    """Collects changed tiles of one building and flushes them every ``window`` seconds."""

    def __init__(
        self,
        building_id: uuid.UUID,
        render: Render,
        send: Send,
        window: float,
        *,
        all_tiles: AllTiles | None = None,
        reply: Reply | None = None,
    ) -> None:
        self.building_id = building_id
        self._render = render
        self._send = send
        self._window = window
        self._all_tiles = all_tiles
        self._reply = reply
        # Ordered: each changed tile, with its HTML once rendered ahead of the flush.
        self._dirty: dict[Tile, str | None] = {}
        # The devices whose whole value list is among them: it supersedes their single values.
        self._devices: set[uuid.UUID] = set()
        self._snapshot_requests: list[tuple[str, tuple[str, ...]]] = []
        self._wake = asyncio.Event()
        self._last_flush = -window  # when the last flush began
        # A page compares (stream, seq): a new stream means this bridge restarted.
        self.stream = secrets.token_hex(4)
        self.seq: dict[str, int] = dict.fromkeys(tiles.AUDIENCES, 0)
        self.flushes = 0
        self.failing = False
        self._stopping = False

    def changed(self, tile: Tile) -> None:
        self._dirty[tile] = None
        if tile.kind == "device":
            self._devices.add(tile.entity)
        elif self._devices and tile.kind == "meta" and tile.entity in self._devices:
            # A device's value list shows this value too: rendered early, it is out of date now.
            self._dirty[tiles.device(tile.entity)] = None
        self._wake.set()

    def request_snapshot(self, reply_to: str, audiences: Iterable[str]) -> None:
        """Queue every tile of ``audiences`` for one page, sent at the next flush."""
        wanted = tuple(a for a in audiences if a in self.seq)
        self._snapshot_requests.append((reply_to, wanted))
        self._wake.set()

    def stop(self) -> None:
        """Have ``run`` return; what is still dirty is left for a last ``flush``.

        A flag, not only a cancellation: a cancellation that reaches the channel layer
        mid-send can be lost there (seen once with Redis, when ``serve`` then never stopped).
        """
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        """Flush until stopped: at once when the last flush began a window ago, else when it has.

        Flushes begin at most once a window, whatever they take: under steady load a value
        waits at most a window plus its own flush, and a lone change goes out at once. Most
        of a window's tiles are rendered ``ahead`` of its end, so the flush renders only those
        changed since and rendering is mostly off the values' way to the pages.
        """
        ahead, step = self._window * RENDER_AHEAD, self._window * RENDER_STEP
        while not self._stopping:
            await self._wake.wait()
            due = self._last_flush + self._window
            while (left := due - time.monotonic()) > 0 and not self._stopping:
                if left > ahead:
                    await asyncio.sleep(left - ahead)
                else:
                    self.render_ahead()
                    await asyncio.sleep(min(left, step))
            if self._stopping:
                return
            self._wake.clear()
            self._last_flush = time.monotonic()
            try:
                with metrics.FANOUT_FLUSH_SECONDS.time():
                    await self.flush()
            except Exception:
                # The channel layer refused (Redis down, say): this window's frames are lost,
                # and pages see the gap in sequence numbers and ask for a snapshot. Logged
                # once per outage, not once a window.
                if not self.failing:
                    logger.exception("fan-out of building %s failing", self.building_id)
                self.failing = True
            else:
                if self.failing:
                    logger.warning("fan-out of building %s works again", self.building_id)
                self.failing = False

    def render_ahead(self) -> None:
        """Render the tiles changed so far; a tile changed again is rendered again at the flush."""
        devices = self._devices
        for tile, html in self._dirty.items():
            if html is None and tiles.KINDS[tile.kind].early and not _superseded(tile, devices):
                self._dirty[tile] = self._render_one(tile)

    async def flush(self) -> None:
        dirty, self._dirty = self._dirty, {}
        devices, self._devices = self._devices, set()
        requests, self._snapshot_requests = self._snapshot_requests, []
        if dirty:
            by_audience: dict[str, list[str]] = {}
            for tile, html in dirty.items():
                if _superseded(tile, devices):
                    continue
                audience = tiles.KINDS[tile.kind].audience
                by_audience.setdefault(audience, []).append(html or self._render_one(tile))
            for audience, parts in by_audience.items():
                self.seq[audience] += 1
                await self._send(
                    self.building_id, "".join(parts), audience, self.stream, self.seq[audience]
                )
            self.flushes += 1
        if requests:
            await self._answer(requests)

    async def _answer(self, requests: list[tuple[str, tuple[str, ...]]]) -> None:
        if self._all_tiles is None or self._reply is None:
            return
        rendered: dict[str, str] = {}
        for reply_to, audiences in requests:
            for audience in audiences:
                if audience not in rendered:
                    parts: dict[str, list[str]] = {}
                    for tile in self._all_tiles(audience):
                        self._render_into(parts, tile)
                    rendered[audience] = "".join(parts.get(audience, []))
            html = "".join(rendered[a] for a in audiences)
            positions = {a: (self.stream, self.seq[a]) for a in audiences}
            try:
                await self._reply(reply_to, self.building_id, html, positions)
            except Exception:  # a page that left meanwhile has a full or gone channel
                logger.info("snapshot for %s not delivered", reply_to, exc_info=True)

    def _render_into(self, by_audience: dict[str, list[str]], tile: Tile) -> None:
        by_audience.setdefault(tiles.KINDS[tile.kind].audience, []).append(self._render_one(tile))

    def _render_one(self, tile: Tile) -> str:
        try:
            return self._render(tile)
        except Exception:
            logger.exception("could not render tile %s of building %s", tile.kind, self.building_id)
            return ""


def _superseded(tile: Tile, devices: set[uuid.UUID]) -> bool:
    # A device's whole list supersedes its single values in the same window. Asked of every
    # changed tile: no set lookup (a UUID's hash is a Python call) while no list changed.
    return bool(devices) and tile.kind == "meta" and tile.entity in devices
