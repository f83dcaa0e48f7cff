"""The bridge's own channel: requests from pages for the buildings this process holds."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from channels.layers import get_channel_layer

from dashboard.live import layer

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[None] | None]


class Inbox:
    """One channel per bridge process, a member of ``bridge.<building>`` for each it holds."""

    def __init__(self, handle: Handler) -> None:
        self._handle = handle
        self._layer = get_channel_layer()
        self.channel: str | None = None
        self._joined: dict[uuid.UUID, float] = {}
        self._unwatch: Callable[[], None] | None = None

    async def open(self) -> None:
        if self._layer is not None:
            self.channel = await layer.new_channel()
            # Redis flushed or restarted: rejoin every building's group within seconds.
            self._unwatch = layer.Membership.watch(self._rejoin)

    async def _rejoin(self) -> None:
        for building_id in list(self._joined):
            await self.join(building_id)

    async def join(self, building_id: uuid.UUID) -> None:
        if self.channel is None:
            return
        await self._layer.group_add(layer.bridge_group(building_id), self.channel)
        self._joined[building_id] = time.monotonic()

    async def leave(self, building_id: uuid.UUID) -> None:
        if self.channel is None or self._joined.pop(building_id, None) is None:
            return
        await self._layer.group_discard(layer.bridge_group(building_id), self.channel)

    def close(self) -> None:
        if self._unwatch is not None:
            self._unwatch()

    async def run(self) -> None:
        """Handle requests until cancelled; one bad request never stops the loop."""
        if self.channel is None:
            return
        while True:
            try:
                message = await self._layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Redis restarting or a dropped connection: keep listening, never go deaf.
                logger.exception("bridge channel receive failed; retrying in 1 s")
                await asyncio.sleep(1)
                continue
            try:
                result = self._handle(message)
                if result is not None:
                    await result
            except Exception:
                logger.exception("could not handle %s", message.get("type"))
