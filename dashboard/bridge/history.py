"""Batched history writes: records queue in memory, one thread writes them in batches.

The event loop never waits on the database. If the database is unavailable the
batch is retried; past ``max_buffer`` queued records the oldest are dropped,
counted and logged.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from django.db import close_old_connections, connections

from dashboard.bridge import store

logger = logging.getLogger(__name__)


class HistoryWriter:
    def __init__(self, interval: float, max_buffer: int = 200_000, batch_size: int = 5_000) -> None:
        self._interval = interval
        self._buffer: deque[tuple[uuid.UUID, object]] = deque()
        self._max_buffer = max_buffer
        self._batch_size = batch_size
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="history")
        self.written = 0
        self.dropped = 0
        self.failures = 0

    def add(self, building_id: uuid.UUID, record: object) -> None:
        if len(self._buffer) >= self._max_buffer:
            self._buffer.popleft()
            self.dropped += 1
            if self.dropped in (1, 10, 100) or self.dropped % 10_000 == 0:
                logger.error("history buffer full: %d records dropped so far", self.dropped)
        self._buffer.append((building_id, record))

    @property
    def pending(self) -> int:
        return len(self._buffer)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.flush()

    async def flush(self) -> None:
        """Write everything queued so far, in batches; keep what failed for the next try."""
        loop = asyncio.get_running_loop()
        while self._buffer:
            count = min(len(self._buffer), self._batch_size)
            batch = [self._buffer.popleft() for _ in range(count)]
            try:
                self.written += await loop.run_in_executor(self._executor, _write, batch)
            except Exception as exc:
                self.failures += 1
                logger.warning("history write failed, will retry: %s", exc)
                self._buffer.extendleft(reversed(batch))
                return

    async def close(self) -> None:
        """Final flush, then release the writer thread and its database connection."""
        await self.flush()
        await asyncio.get_running_loop().run_in_executor(self._executor, connections.close_all)
        self._executor.shutdown(wait=True)


def _write(batch: list[tuple[uuid.UUID, object]]) -> int:
    close_old_connections()  # a database that went away is reconnected, not reused
    return store.write_batch(batch)
