"""Coalesced fan-out of a building's changed tiles to its browsers.

Within one window only the latest state of each tile is rendered, once, and sent
to the building's group in a single message; a change during a flush is sent in
the next window, so the final value always goes out. Pages that (re)connect ask
for a snapshot: every tile, rendered once per window however many pages ask.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable

from dashboard.bridge import tiles
from dashboard.bridge.tiles import Tile

logger = logging.getLogger(__name__)

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
        self._dirty: dict[Tile, None] = {}  # an ordered set
        self._snapshot_requests: list[tuple[str, tuple[str, ...]]] = []
        self._wake = asyncio.Event()
        self._since = 0.0  # when the first change still waiting for a flush came
        # A page compares (stream, seq): a new stream means this bridge restarted.
        self.stream = secrets.token_hex(4)
        self.seq: dict[str, int] = dict.fromkeys(tiles.AUDIENCES, 0)
        self.flushes = 0
        self.snapshots = 0

    def changed(self, tile: Tile) -> None:
        if not self._dirty and not self._snapshot_requests:
            self._since = time.monotonic()
        self._dirty[tile] = None
        self._wake.set()

    def request_snapshot(self, reply_to: str, audiences: Iterable[str]) -> None:
        """Queue every tile of ``audiences`` for one page, sent at the next flush."""
        wanted = tuple(a for a in audiences if a in self.seq)
        if not self._dirty and not self._snapshot_requests:
            self._since = time.monotonic()
        self._snapshot_requests.append((reply_to, wanted))
        self._wake.set()

    async def run(self) -> None:
        """Flush forever, one window after the first change of each batch.

        The window counts from the change itself, not from the end of the flush it arrived
        during, so no value waits longer than a window plus one flush.
        """
        while True:
            await self._wake.wait()
            delay = self._since + self._window - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        dirty, self._dirty = self._dirty, {}
        requests, self._snapshot_requests = self._snapshot_requests, []
        if dirty:
            by_audience: dict[str, list[str]] = {}
            for tile in dirty:
                # A device's whole list supersedes its single values in the same window.
                if tile[0] == "meta" and tiles.device(tile[1]) in dirty:
                    continue
                self._render_into(by_audience, tile)
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
            self.snapshots += 1

    def _render_into(self, by_audience: dict[str, list[str]], tile: Tile) -> None:
        audience = tiles.KINDS[tile[0]].audience
        try:
            by_audience.setdefault(audience, []).append(self._render(tile))
        except Exception:
            logger.exception("could not render tile %s of building %s", tile[0], self.building_id)
