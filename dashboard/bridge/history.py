"""Batched history writes: records queue in memory; a thread or a child process writes them.

The event loop never waits on the database. If the database is unavailable the
batch is retried; past ``max_buffer`` queued records the oldest are dropped,
counted and logged (and the outage's total once writes resume).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from django.db import close_old_connections, connections

from dashboard.bridge.writer_process import WriterProcess
from dashboard.live import metrics, store

logger = logging.getLogger(__name__)


class HistoryWriter:
    def __init__(
        self,
        interval: float,
        max_buffer: int = 200_000,
        batch_size: int = 5_000,
        *,
        separate_process: bool = False,
    ) -> None:
        self._interval = interval
        # A child process writes, or this process's writer thread (see writer_process.py).
        self._process = WriterProcess() if separate_process else None
        self._write = self._process.write if self._process is not None else _write
        self._buffer: deque[tuple[uuid.UUID, object]] = deque()
        self._in_flight = 0  # records of the batch being written
        self._max_buffer = max_buffer
        self._batch_size = batch_size
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="history")
        self.written = 0
        self.dropped = 0
        self.failures = 0
        # (failures, dropped) when writes began to fail or records to be dropped
        self._outage: tuple[int, int] | None = None
        # One flush at a time: a batch written after a later one would roll the latest
        # values (and alarm counts) back to older ones.
        self._flushing = asyncio.Lock()

    def add(self, building_id: uuid.UUID, record: object) -> None:
        self._buffer.append((building_id, record))
        self._trim()

    def _trim(self) -> None:
        while len(self._buffer) > self._max_buffer:
            if self._outage is None:
                self._outage = (self.failures, self.dropped)
            self._buffer.popleft()
            self.dropped += 1
            metrics.HISTORY_DROPPED.inc()
            if self.dropped in (1, 10, 100) or self.dropped % 10_000 == 0:
                logger.error("history buffer full: %d records dropped so far", self.dropped)

    @property
    def pending(self) -> int:
        """Records not written yet: queued, or in the batch being written."""
        return len(self._buffer) + self._in_flight

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            metrics.HISTORY_PENDING.set(self.pending)
            await self.flush()

    async def flush(self) -> None:
        """Write everything queued so far, in batches; keep what failed for the next try."""
        async with self._flushing:
            await self._flush()

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._buffer:
            count = min(len(self._buffer), self._batch_size)
            batch = [self._buffer.popleft() for _ in range(count)]
            self._in_flight = count
            try:
                self.written += await loop.run_in_executor(self._executor, self._write, batch)
            except Exception as exc:
                if self._outage is None:
                    self._outage = (self.failures, self.dropped)
                self.failures += 1
                logger.warning("history write failed, will retry: %s", exc)
                # Records kept coming while the batch was out: the buffer's bound holds.
                self._buffer.extendleft(reversed(batch))
                self._trim()
                return
            finally:
                self._in_flight = 0
        if self._outage is not None:  # everything queued is written: say what was lost
            failures, dropped = self._outage
            self._outage = None
            logger.warning(
                "history caught up after %d failed writes; %d records dropped meanwhile "
                "(%d in all)",
                self.failures - failures,
                self.dropped - dropped,
                self.dropped,
            )

    async def close(self) -> None:
        """Final flush, then release the writer thread and its database connection."""
        await self.flush()
        if self._buffer:
            lost = len(self._buffer)
            self._buffer.clear()
            self.dropped += lost
            metrics.HISTORY_DROPPED.inc(lost)
            logger.error("history: %d records not written, the database is unavailable", lost)
        finish = self._process.stop if self._process is not None else connections.close_all
        await asyncio.get_running_loop().run_in_executor(self._executor, finish)
        self._executor.shutdown(wait=True)


def _write(batch: list[tuple[uuid.UUID, object]]) -> int:
    close_old_connections()  # a database that went away is reconnected, not reused
    return store.write_batch(batch)
