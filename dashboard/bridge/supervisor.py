"""The bridge: one session per building on one event loop, following the inventory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from asgiref.sync import sync_to_async

from dashboard.bridge.building import BuildingBridge
from dashboard.bridge.fanout import Send
from dashboard.bridge.history import HistoryWriter
from dashboard.bridge.inbox import Inbox
from dashboard.bridge.leases import Leases, assign
from dashboard.bridge.session import SessionConfig
from dashboard.live import layer, readiness, resets, store
from dashboard.live.building_store import load_building, load_versions
from dashboard.live.cloud_sync import SyncResult
from dashboard.live.load import load_batches, load_confirmations, load_state

logger = logging.getLogger(__name__)

RESYNC_STOP_WAIT = 20.0  # seconds a stopping bridge lets a building's re-sync finish


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
        history_process: bool = False,
        history_hold: bool = False,
        max_bytes: int = 256 * 1024,
        send: Send = layer.broadcast,
        notify_priority: int = 200,
        leases: Leases | None = None,
        resync: Callable[[uuid.UUID], object] | None = None,
        resync_every: float = 0.0,
        nightly_every: float = 30.0,
        reset_timeout: float = 5.0,
        reset_grace: float = 10.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        # Re-sync from the Gooee Cloud API every ``resync_every`` seconds (0: never): a blocking
        # function of a building id, run in a worker thread, raising on failure.
        self._resync = resync if resync_every > 0 else None
        self._resync_every = resync_every
        self._resync_due = time.monotonic() + resync_every
        self._resync_task: asyncio.Task[None] | None = None
        self._resync_failing: dict[uuid.UUID, str] = {}
        # The nightly headcount reset: looked for every ``nightly_every`` seconds on the wall
        # ``clock``; each reset's PUBACK timeout and the seconds its count has to come back.
        self._nightly_every = nightly_every
        self._nightly_check = 0.0
        self._nightly_task: asyncio.Task[None] | None = None
        self._last_night: dict[uuid.UUID, date | None] = {}
        self._reset_timeout = reset_timeout
        self._reset_grace = reset_grace
        self._clock = clock
        self._notify_priority = notify_priority
        self._only = building_ids
        self._window = window
        self.leases = leases
        # With leases the loop also renews them, well within one lease period.
        self._poll_interval = min(poll_interval, leases.period / 3) if leases else poll_interval
        self._max_bytes = max_bytes
        self._send = send
        self.history = HistoryWriter(
            history_interval, separate_process=history_process, hold=history_hold
        )
        self.inbox = Inbox(self.handle_request)
        self._requests: set[asyncio.Task[None]] = set()
        self.buildings: dict[uuid.UUID, BuildingBridge] = {}
        self._stopping = asyncio.Event()
        self.ready = asyncio.Event()  # set once every building's session has started
        self.local = readiness.LocalBridge()  # what /readyz in this process sees of it

    async def run(self) -> None:
        readiness.register(self.local)
        history = asyncio.create_task(self.history.run(), name="history")
        await self.inbox.open()
        inbox = asyncio.create_task(self.inbox.run(), name="inbox")
        try:
            while not self._stopping.is_set():
                try:
                    if self.leases is not None:
                        await self.keep_leases()
                    await self.sync_inventory()
                    self._maybe_resync()
                    self._maybe_nightly()
                except Exception:
                    logger.exception("could not read the inventory or reach Redis; retrying")
                self.ready.set()
                self.local.synced = True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self._poll_interval)
        finally:
            readiness.unregister(self.local)  # stopping: this process serves no building now
            inbox.cancel()
            if self._nightly_task is not None:
                await asyncio.gather(self._nightly_task, return_exceptions=True)
            if self._resync_task is not None:
                # Its thread cannot be cancelled: let the building in hand finish its write.
                await asyncio.wait({self._resync_task}, timeout=RESYNC_STOP_WAIT)
            self.inbox.close()
            await asyncio.gather(*(b.stop() for b in self.buildings.values()))
            if self.leases is not None:
                await self.history.flush()  # the next holder starts from what we saw
                await self.leases.leave(list(self.buildings))
            history.cancel()
            if await layer.cancel_until_done({inbox}):
                logger.warning("the bridge's inbox did not end when cancelled")
            await asyncio.gather(history, return_exceptions=True)
            await self.history.close()
            logger.info("bridge stopped; %d history records written", self.history.written)

    def stop(self) -> None:
        self._stopping.set()

    def _maybe_resync(self) -> None:
        """Start a re-sync of the buildings held here when one is due and none is running."""
        if self._resync is None or time.monotonic() < self._resync_due:
            return
        if self._resync_task is not None and not self._resync_task.done():
            return
        self._resync_due = time.monotonic() + self._resync_every
        self._resync_task = asyncio.create_task(self.resync(), name="cloud-resync")

    async def resync(self) -> None:
        """Re-sync every building this worker holds, one at a time, off the event loop.

        A building whose inventory changed gets a new ``inventory_version``, which the next
        pass of ``sync_inventory`` follows (new topics subscribed, gone ones unsubscribed).
        """
        assert self._resync is not None
        for building_id in list(self.buildings):
            # Held by this worker still (a lease lost meanwhile stopped its session)?
            if self._stopping.is_set() or building_id not in self.buildings:
                continue
            try:
                result = await _db(self._resync, building_id)
            except Exception as exc:
                self._resync_failed(building_id, str(exc).splitlines()[0][:300] or repr(exc))
                continue
            self._resync_worked(building_id)
            # Newer current values from the cloud (a device silent over MQTT): shown now.
            report = result.report if isinstance(result, SyncResult) else None
            running = self.buildings.get(building_id)
            if report is not None and report.values and running is not None:
                stored = await _db(load_state, building_id)
                running.take_values(stored.meta)

    def _maybe_nightly(self) -> None:
        """Look for due nightly resets now and then, one pass at a time."""
        if time.monotonic() < self._nightly_check:
            return
        if self._nightly_task is not None and not self._nightly_task.done():
            return
        self._nightly_check = time.monotonic() + self._nightly_every
        self._nightly_task = asyncio.create_task(self.nightly_resets(), name="nightly-resets")

    async def nightly_resets(self) -> None:
        """Reset every place of each building held here whose nightly reset is due.

        Only the worker holding a building's lease has it in ``self.buildings``; the audit
        rows' keys name the local night, so a restart or a handover never resets it twice.
        """
        held = list(self.buildings)
        if not held:
            return
        try:
            times = await _db(resets.nightly_settings, held)
            now = self._clock()
            for building_id, reset_at in times.items():
                running = self.buildings.get(building_id)
                # Not connected: the next pass tries again (within NIGHTLY_LATEST), rather
                # than write the night's rows and publish nothing.
                if running is None or self._stopping.is_set() or not running.session.connected:
                    continue
                if building_id not in self._last_night:
                    self._last_night[building_id] = await _db(resets.last_night, building_id)
                night = resets.nightly_due(
                    reset_at, running.inventory.zone, now, self._last_night[building_id]
                )
                if night is not None:
                    self._last_night[building_id] = night
                    await self._reset_building(running, night)
        except Exception:
            logger.exception("nightly headcount reset failed; trying again on the next pass")

    async def _reset_building(self, running: BuildingBridge, night: date) -> None:
        inventory = running.inventory
        found = resets.places(inventory)
        rows = await _db(resets.write_nightly, inventory.id, found, night, self._reset_grace)
        if rows is None:
            logger.info("building %s: the counts of %s were reset already", inventory.id, night)
            return
        logger.info(
            "building %s: nightly reset of %d counts for %s", inventory.id, len(rows), night
        )
        results = await running.publish_actions(
            {"attempts": [resets.publish_request(r, self._reset_timeout) for r in rows]}
        )
        await _db(store.settle_attempts, [(r["attempt"], r["ok"], r["reason"]) for r in results])

    def _resync_failed(self, building_id: uuid.UUID, error: str) -> None:
        # Logged when it starts failing (or fails otherwise), not every period it goes on.
        if self._resync_failing.get(building_id) != error:
            logger.warning(
                "building %s: re-sync from the Gooee Cloud API failed: %s", building_id, error
            )
        self._resync_failing[building_id] = error
        running = self.buildings.get(building_id)
        if running is not None:
            running.sync_failed(error)

    def _resync_worked(self, building_id: uuid.UUID) -> None:
        if self._resync_failing.pop(building_id, None) is not None:
            logger.info("building %s: re-sync from the Gooee Cloud API works again", building_id)
        running = self.buildings.get(building_id)
        if running is not None:
            running.sync_failed("")

    def handle_request(self, message: dict[str, Any]) -> None:
        """Requests for a building this process holds: a page's snapshot, an action to publish."""
        building = self.buildings.get(uuid.UUID(str(message["building"])))
        if building is None:
            return
        if message["type"] == "snapshot.request":
            # A list of pages' channels; one channel from a web process of an earlier version.
            replies = message["reply_to"]
            for reply_to in [replies] if isinstance(replies, str) else replies:
                building.fanout.request_snapshot(reply_to, message["audiences"])
        elif message["type"] == "alarm.update":
            building.people_changed_alarms(message["changes"])
        elif message["type"] == "action.publish":
            # Not awaited here: one slow PUBACK must not hold up every other request.
            task = asyncio.create_task(self._publish(building, message))
            self._requests.add(task)
            task.add_done_callback(self._requests.discard)
        else:
            logger.warning("unknown request %r on the bridge channel", message["type"])

    async def _publish(self, building: BuildingBridge, message: dict[str, Any]) -> None:
        results = await building.publish_actions(message)
        await layer.send_result(message["reply_to"], {"results": results})

    async def keep_leases(self) -> None:
        """Renew the leases held; stop at once any building whose lease was lost."""
        assert self.leases is not None
        for building_id in await self.leases.renew(list(self.buildings)):
            logger.warning("lost the lease of building %s; stopping its session", building_id)
            await self._stop_building(building_id)

    async def _stop_building(self, building_id: uuid.UUID) -> None:
        await self.inbox.leave(building_id)
        self.local.sessions.pop(building_id, None)
        await self.buildings.pop(building_id).stop()

    async def _claimed(self, versions: dict[uuid.UUID, int]) -> dict[uuid.UUID, int]:
        """The buildings this worker should run: those rendezvous hashing gives it, leased."""
        assert self.leases is not None
        owners = assign(versions, await self.leases.heartbeat())
        mine = {b for b, worker in owners.items() if worker == self.leases.worker}
        for building_id in [b for b in self.buildings if b not in mine]:
            logger.info("building %s now belongs to another worker; handing it over", building_id)
            await self._stop_building(building_id)
            await self.history.flush()  # the next holder starts from what we saw
            await self.leases.release(building_id)
        claimed = {}
        for building_id in mine:
            if building_id in self.buildings or await self.leases.claim(building_id):
                claimed[building_id] = versions[building_id]
        return claimed

    async def sync_inventory(self) -> None:
        """Start, update or stop building sessions to match the database (and the leases)."""
        versions = await _db(load_versions, self._only)
        if self.leases is not None:
            versions = await self._claimed(versions)
        for building_id in list(self.buildings):
            if building_id not in versions:
                logger.info("building %s removed; stopping its session", building_id)
                await self._stop_building(building_id)
        for building_id, version in versions.items():
            running = self.buildings.get(building_id)
            if running is not None and running.inventory.version == version:
                continue
            inventory = await _db(load_building, building_id)
            if inventory is None:
                continue
            if running is not None:
                added = set(inventory.devices) - set(running.inventory.devices)
                stored = await _db(load_state, building_id, added) if added else None
                running.update_inventory(inventory, stored.meta if stored else None)
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
                notify_priority=self._notify_priority,
            )
            self.buildings[building_id] = bridge
            self.local.sessions[building_id] = bridge.session.status
            # Actions another worker was confirming when the building moved here.
            bridge.take_confirmations(await _db(load_confirmations, building_id))
            bridge.take_batches(await _db(load_batches, building_id))
            bridge.start()
            await self.inbox.join(building_id)
            logger.info(
                "building %s (%s): %d topics", inventory.name, building_id, len(inventory.topics())
            )


async def _db(func: Callable[..., Any], *args: Any) -> Any:
    return await sync_to_async(func, thread_sensitive=False)(*args)
