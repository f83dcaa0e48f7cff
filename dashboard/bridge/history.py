"""Batched history writes: records queue in memory; a thread or a child process writes them.

The event loop never waits on the database. With ``hold``, while a working writer is behind
the bridge stops reading the broker (``behind``). If the database is unavailable the
batch is retried; past ``max_buffer`` queued records the oldest readings are dropped,
counted and logged (and the outage's total once writes resume). Alarms, actions and
rejections are dropped only when no reading is left to drop: under a flood of readings
a reading is replaced by the next one within seconds, an alarm or an audit row is not.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from django.db import close_old_connections, connections

from dashboard.bridge.writer_process import WriterProcess
from dashboard.live import metrics, store
from dashboard.live.state import HeadcountValue, MetaValue, ZeroMark

logger = logging.getLogger(__name__)

Queued = tuple[uuid.UUID, object]

# A writer that finished a batch within HOLD_STALE seconds is working, only slower than the
# broker; past that it may hang on the database, and live values must not wait for it.
HOLD_STALE = 1.0

# Records dropped first when the buffer is full. ZeroMark goes with the headcounts because
# it is written onto the row of the count queued before it.
READINGS = (MetaValue, HeadcountValue, ZeroMark)


class HistoryWriter:
    def __init__(
        self,
        interval: float,
        max_buffer: int = 200_000,
        batch_size: int = 5_000,
        *,
        separate_process: bool = False,
        hold: bool = False,
    ) -> None:
        """``hold``: ask the bridge to stop reading the broker while this writer is behind
        (``behind``; settings.HISTORY_HOLD)."""
        self._interval = interval
        # A child process writes, or this process's writer thread (see writer_process.py).
        self._process = WriterProcess() if separate_process else None
        self._write = self._process.write if self._process is not None else _write
        self._readings: deque[Queued] = deque()
        self._others: deque[Queued] = deque()
        self._in_flight = 0  # records of the batch being written
        self._max_buffer = max_buffer
        self._batch_size = batch_size
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="history")
        self.written = 0
        self.dropped = 0
        self.failures = 0
        self._failing = False  # the last write failed
        self.peak = 0  # most records pending at an interval's start: how far behind it got
        self._hold = hold
        self._hold_above = max_buffer // 2
        self._holding = False
        self._progress_at = time.monotonic()  # when a batch was last written, or began
        # (failures, dropped) when writes began to fail or records to be dropped
        self._outage: tuple[int, int] | None = None
        # One flush at a time: a batch written after a later one would roll the latest
        # values (and alarm counts) back to older ones.
        self._flushing = asyncio.Lock()

    def add(self, building_id: uuid.UUID, record: object) -> None:
        queue = self._readings if isinstance(record, READINGS) else self._others
        queue.append((building_id, record))
        self._trim()

    @property
    def _queued(self) -> int:
        return len(self._readings) + len(self._others)

    def _trim(self) -> None:
        while self._queued > self._max_buffer:
            if self._outage is None:
                self._outage = (self.failures, self.dropped)
            (self._readings or self._others).popleft()
            self.dropped += 1
            metrics.HISTORY_DROPPED.inc()
            if self.dropped in (1, 10, 100) or self.dropped % 10_000 == 0:
                logger.error("history buffer full: %d records dropped so far", self.dropped)

    def behind(self) -> bool:
        """Whether the bridge should stop reading from the broker for now: holding is on,
        the writer works, and half the buffer is waiting for it.

        A flood the writer cannot keep up with then waits at the broker (QoS 1: unread
        messages stay queued there) instead of filling the buffer until readings are
        dropped. A writer that fails or hangs is not waited for: live values keep flowing
        and the buffer's bound drops the oldest readings, as it always did.
        """
        holding = (
            self._hold
            and self.pending >= self._hold_above
            and not self._failing
            # Writing a batch for under HOLD_STALE, or between batches for under an interval
            # more: a writer at work, not one hanging on the database.
            and time.monotonic() - self._progress_at
            < HOLD_STALE + (0 if self._in_flight else self._interval)
        )
        if holding and not self._holding:
            metrics.HISTORY_HOLDS.inc()
        self._holding = holding
        return holding

    @property
    def pending(self) -> int:
        """Records not written yet: queued, or in the batch being written."""
        return self._queued + self._in_flight

    async def run(self) -> None:
        """Once an interval, write what has queued by then; back to back while behind.

        Records that arrive during a write wait for the next interval: writing them at once
        turned a steady stream into a batch of a few dozen records every 25 ms, each with
        its thread hop, pickle and database transaction (docs/benchmarks.md, "2026-12-04,
        night").
        """
        loop = asyncio.get_running_loop()
        due = loop.time() + self._interval
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            due = loop.time() + self._interval
            metrics.HISTORY_PENDING.set(self.pending)
            self.peak = max(self.peak, self.pending)
            async with self._flushing:
                await self._flush(self._queued)

    async def flush(self) -> None:
        """Write everything queued, also what arrives meanwhile; keep what failed for the next try."""
        async with self._flushing:
            await self._flush()

    async def _flush(self, upto: int | None = None) -> None:
        """Write queued records in batches: all of them, or about the first ``upto``."""
        loop = asyncio.get_running_loop()
        left = upto
        while self._queued and (left is None or left > 0):
            # Alarms, actions and rejections first: the writer may fall behind the readings.
            others = _take(self._others, self._batch_size)
            readings = _take(self._readings, self._batch_size - len(others))
            batch = others + readings
            self._in_flight = len(batch)
            self._progress_at = time.monotonic()
            if left is not None:
                left -= len(batch)
            try:
                self.written += await loop.run_in_executor(self._executor, self._write, batch)
                self._progress_at, self._failing = time.monotonic(), False
            except Exception as exc:
                if self._outage is None:
                    self._outage = (self.failures, self.dropped)
                self.failures += 1
                self._failing = True
                logger.warning("history write failed, will retry: %s", exc)
                # Records kept coming while the batch was out: the buffer's bound holds.
                self._others.extendleft(reversed(others))
                self._readings.extendleft(reversed(readings))
                self._trim()
                return
            finally:
                self._in_flight = 0
        if self._outage is not None:  # writes work again: say what was lost
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
        if self._queued:
            lost = self._queued
            self._readings.clear()
            self._others.clear()
            self.dropped += lost
            metrics.HISTORY_DROPPED.inc(lost)
            logger.error("history: %d records not written, the database is unavailable", lost)
        finish = self._process.stop if self._process is not None else connections.close_all
        await asyncio.get_running_loop().run_in_executor(self._executor, finish)
        self._executor.shutdown(wait=True)


def _take(queue: deque[Queued], count: int) -> list[Queued]:
    """The first ``count`` records of ``queue`` (fewer if it holds fewer), removed from it."""
    return [queue.popleft() for _ in range(min(count, len(queue)))]


def _write(batch: list[Queued]) -> int:
    close_old_connections()  # a database that went away is reconnected, not reused
    return store.write_batch(batch)
