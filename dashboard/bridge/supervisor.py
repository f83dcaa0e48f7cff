"""The bridge: one session per building on one event loop, following the inventory."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import sync_to_async

from dashboard.bridge.fanout import Fanout, Reply, Send
from dashboard.bridge.history import HistoryWriter
from dashboard.bridge.inbox import Inbox
from dashboard.bridge.ingest import ingest, parse
from dashboard.bridge.leases import Leases, assign
from dashboard.bridge.session import BuildingSession, NotConnected, SessionConfig
from dashboard.contract.payloads import Malformed, Payload
from dashboard.contract.topics import TopicError
from dashboard.live import confirmation, fragments, layer, metrics, readiness, tiles
from dashboard.live.building_store import load_building, load_versions
from dashboard.live.buildings import BuildingInventory
from dashboard.live.cloud_sync import SyncResult
from dashboard.live.state import (
    ActionRecord,
    Alarm,
    AlarmState,
    AttemptSeen,
    AttemptStatus,
    ConfirmationUpdate,
    ConnectionStatus,
    LastAction,
    LiveState,
    MetaValue,
    Outcome,
    Rejection,
)
from dashboard.live.store import load_confirmations, load_state

logger = logging.getLogger(__name__)

STATUS_EVERY = 5.0  # seconds between status pushes caused by traffic alone
SEEN_WAIT = 600.0  # seconds a published action waits to come back before it is forgotten
KEPT_ATTEMPTS = 200  # attempt outcomes kept in memory per building
RESYNC_STOP_WAIT = 20.0  # seconds a stopping bridge lets a building's re-sync finish
# Payloads above this are parsed in a thread, so one big message does not hold the loop.
PARSE_IN_THREAD_ABOVE = 64 * 1024
# Bytes of messages waiting behind one being parsed in a thread; past it big ones are parsed
# on the loop again (still in order), which slows reading from the broker: back-pressure.
MAX_BACKLOG_BYTES = 16 * 1024 * 1024


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
        reply: Reply = layer.send_snapshot,
        notify_priority: int = 200,
    ) -> None:
        self.inventory = inventory
        self._notify_priority = notify_priority
        self.state = state
        self._history = history
        self._max_bytes = max_bytes
        self._status_pushed = 0.0
        self.fanout = Fanout(
            inventory.id, self.render, send, window, all_tiles=self.all_tiles, reply=reply
        )
        self.session = BuildingSession(
            inventory.id, config, inventory.topics(), self.on_message, self.on_status
        )
        state.status = self.session.status
        self._counted = metrics.messages_for(inventory.id)  # per message: one dict lookup
        self._connected = metrics.MQTT_SESSION_CONNECTED.labels(str(inventory.id))
        self._reconnects = metrics.MQTT_RECONNECTS.labels(str(inventory.id))
        self._was_connected: bool | None = None  # None: never connected yet
        self._tasks: list[asyncio.Task[None]] = []
        # (name, type, created) of published actions -> (attempt id, label, forget after)
        self._awaiting: dict[tuple[str, str, str], tuple[int, str, float]] = {}
        # Messages behind one parsed in a thread, in arrival order: (topic, bytes, when,
        # parsed already or None)
        self.backlog: deque[tuple[str, bytes, datetime, Payload | Malformed | None]] = deque()
        self._backlog_bytes = 0
        self._draining: asyncio.Task[None] | None = None
        # Actions whose lamps are followed until they report what was asked, or the deadline.
        self.confirmations = confirmation.Confirmations()
        self._confirm_timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self.session.run(), name=f"session-{self.inventory.id}"),
            asyncio.create_task(self.fanout.run(), name=f"fanout-{self.inventory.id}"),
        ]

    async def stop(self) -> None:
        if self._confirm_timer is not None:
            self._confirm_timer.cancel()
        await self.session.stop()
        if self._draining is not None:
            self._draining.cancel()
            await asyncio.gather(self._draining, return_exceptions=True)
        for task in self._tasks:
            if task.get_name().startswith("fanout"):
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.fanout.flush()

    def update_inventory(
        self,
        inventory: BuildingInventory,
        values: dict[uuid.UUID, dict[str, MetaValue]] | None = None,
    ) -> None:
        """Follow an inventory change; ``values``: the stored values of devices new to it (a
        cloud sync's), shown until live ones come."""
        previous, self.inventory = self.inventory, inventory
        for device_id, by_name in (values or {}).items():
            known = self.state.meta.setdefault(device_id, {})
            for name, value in by_name.items():
                known.setdefault(name, value)  # a live value that came meanwhile stays
        for device_id in set(previous.devices) - set(inventory.devices):
            self.state.meta.pop(device_id, None)
        self.session.set_topics(inventory.topics())
        if previous.zone != inventory.zone:
            # Every time shown moves to the new clock: a rare change, worth every tile.
            for audience in tiles.AUDIENCES:
                for tile in self.all_tiles(audience):
                    self.fanout.changed(tile)
            return
        # Re-render only devices that are new or renamed, not the whole building.
        for device_id, device in inventory.devices.items():
            if previous.devices.get(device_id) != device:
                self.fanout.changed(tiles.device(device_id))

    def on_message(self, topic: str, payload: bytes) -> None:
        now = datetime.now(UTC)
        big = PARSE_IN_THREAD_ABOVE < len(payload) <= self._max_bytes
        if not big and not self.backlog:
            self._ingest(topic, payload, now)
            return
        # Behind a big one every message waits its turn: a building's order is kept.
        parsed = None
        if big and self._backlog_bytes > MAX_BACKLOG_BYTES:
            # Parsed here, on the loop, which slows reading from the broker: back-pressure.
            parsed = parse(topic, payload, self._max_bytes)
        self.backlog.append((topic, payload, now, parsed))
        self._backlog_bytes += len(payload)
        if self._draining is None:
            self._draining = asyncio.create_task(self._drain(), name="parse")

    async def _drain(self) -> None:
        try:
            while self.backlog:
                topic, payload, now, parsed = self.backlog[0]
                if parsed is None and PARSE_IN_THREAD_ABOVE < len(payload) <= self._max_bytes:
                    parsed = await asyncio.to_thread(parse, topic, payload, self._max_bytes)
                self.backlog.popleft()
                self._backlog_bytes -= len(payload)
                self._ingest(topic, payload, now, parsed)
        finally:
            self._draining = None

    def _ingest(
        self,
        topic: str,
        payload: bytes,
        now: datetime,
        parsed: Payload | Malformed | None = None,
    ) -> None:
        try:
            outcome = ingest(
                self.state,
                self.inventory,
                topic,
                payload,
                now,
                self,
                max_bytes=self._max_bytes,
                parsed=parsed,
            )
            self._counted[outcome].inc()
        except Exception:
            # One bad message must never stop the building (the session says the same).
            logger.exception("building %s: message on %r not handled", self.inventory.id, topic)
        if now.timestamp() - self._status_pushed > STATUS_EVERY:
            self._status_pushed = now.timestamp()
            self.changed(tiles.STATUS)

    def on_status(self, status: ConnectionStatus) -> None:
        self._count_status(status.state == "connected")
        self.changed(tiles.STATUS)

    def take_values(self, stored: dict[uuid.UUID, dict[str, MetaValue]]) -> None:
        """Show stored values (a re-sync's) newer than the live state's; re-render those cards."""
        for device_id, by_name in stored.items():
            if device_id not in self.inventory.devices:
                continue
            known = self.state.meta.setdefault(device_id, {})
            newer = {
                name: value
                for name, value in by_name.items()
                if name not in known or value.received_at > known[name].received_at
            }
            if newer:
                known.update(newer)
                self.fanout.changed(tiles.device(device_id))

    def sync_failed(self, error: str) -> None:
        """Show on the status tile that re-syncing from the cloud fails (``""``: it works)."""
        if self.state.status.sync_error != error:
            self.state.status.sync_error = error
            self.changed(tiles.STATUS)

    def _count_status(self, connected: bool) -> None:
        if connected == self._was_connected:
            return
        if connected and self._was_connected is not None:
            self._reconnects.inc()
        if connected or self._was_connected is not None:
            self._was_connected = connected
        self._connected.set(1 if connected else 0)

    # The ingest sink
    def changed(self, tile: tiles.Tile) -> None:
        self.fanout.changed(tile)
        if tile in (tiles.STATUS, tiles.ALARMS, tiles.headcount(self.inventory.id)):
            self.fanout.changed(tiles.SUMMARY_TILE)

    def all_tiles(self, audience: str) -> list[tiles.Tile]:
        """Every tile of the building that ``audience`` receives: what a snapshot holds."""
        if audience == tiles.SUMMARY:
            return [tiles.SUMMARY_TILE]
        if audience == tiles.SUPPORT:
            return [tiles.REJECTIONS, tiles.MALFORMED]
        inventory = self.inventory
        return [
            tiles.STATUS,
            tiles.headcount(inventory.id),
            *(tiles.headcount(space_id) for space_id in inventory.spaces),
            *(tiles.headcount(area_id) for area_id in inventory.areas),
            *(tiles.device(device_id) for device_id in inventory.devices),
            tiles.ALARMS,
            tiles.ACTIONS,
        ]

    def record(self, record: object) -> None:
        self._history.add(self.inventory.id, record)
        if type(record) is MetaValue:
            if record.name in confirmation.LAMP_META:  # its space's card sums its lamps up
                device = self.inventory.devices.get(record.device_id)
                if device is not None and device.space_id is not None:
                    self.fanout.changed(tiles.headcount(device.space_id))
            # Per meta value: one dict lookup unless an action waits on this device.
            changed = self.confirmations.on_meta(
                record.device_id, record.name, record.value, record.received_at
            )
            for pending in changed:
                self._confirmation_changed(pending)
            return
        if isinstance(record, Rejection):
            self.state.new_rejections.appendleft(record)
            self.changed(tiles.REJECTED_NEW)
        if (
            isinstance(record, Alarm)
            and record.count == 1
            and record.priority >= self._notify_priority
        ):
            self.state.banner = record
            self.changed(tiles.BANNER)
        # The cloud confirms an action by fanning it out to the building's action topics;
        # the broker's echo of our own publish on spaces/<id>/actions does not count.
        if isinstance(record, ActionRecord) and record.topic.startswith("buildings/"):
            found = self._awaiting.pop((record.name, record.type, record.created), None)
            if found is not None:
                self._set_attempt(found[0], found[1], Outcome.SEEN, "", record.received_at)
                self._history.add(self.inventory.id, AttemptSeen(found[0], record.received_at))

    def people_changed_alarms(self, changes: list[dict[str, Any]]) -> None:
        """Acknowledged or cleared on a page: follow it in the live alarms."""
        for change in changes:
            device = uuid.UUID(change["device"]) if change.get("device") else None
            alarm = self.state.alarms.get((device, change["type"]))
            if alarm is None:
                continue
            new_state = AlarmState(change["state"])
            if new_state is AlarmState.CLEARED:
                # The next occurrence opens a new alarm, as the stored one is closed.
                del self.state.alarms[alarm.key]
            else:
                alarm.state = new_state
        self.changed(tiles.ALARMS)

    async def publish_action(self, request: dict[str, Any]) -> dict[str, Any]:
        """Publish an operator's action with QoS 1; say whether the broker acknowledged it."""
        attempt_id, label = request["attempt"], request["label"]
        timeout = request["timeout"]
        if "deadline" in request:
            # The view gives up at the deadline and records "failed": never publish after it.
            remaining = request["deadline"] - time.time()
            if remaining <= 0:
                reason = (
                    f"not published: the request reached the bridge {-remaining:.1f} s "
                    "after its deadline"
                )
                logger.warning("action attempt %s dropped: %s", attempt_id, reason)
                self._set_attempt(attempt_id, label, Outcome.FAILED, reason, datetime.now(UTC))
                return {"ok": False, "reason": reason, "expired": True}
            timeout = min(timeout, remaining)
        key = (request["name"], request["action_type"], request["created"])
        if request.get("space"):
            space_id = uuid.UUID(request["space"])
            self.state.last_actions[space_id] = LastAction(
                attempt_id, request.get("who", ""), label, datetime.now(UTC), Outcome.PENDING
            )
        if request.get("confirm"):
            # Followed from before the publish: a quick lamp may report before the PUBACK.
            self.follow(request["attempt"], request["payload"], request["confirm"])
        now = time.monotonic()
        self._awaiting = {k: v for k, v in self._awaiting.items() if v[2] > now}
        self._awaiting[key] = (attempt_id, label, now + SEEN_WAIT)
        try:
            await self.session.publish(
                request["topic"], request["payload"].encode(), timeout=timeout
            )
        except TimeoutError:
            # It may have gone out all the same: keep awaiting it, so that when it comes back
            # the audit says "seen" rather than a "failed" for something that was published.
            reason = f"no acknowledgement (PUBACK) from the broker within {timeout:g} s"
            self._set_attempt(attempt_id, label, Outcome.FAILED, reason, datetime.now(UTC))
            return {"ok": False, "reason": reason}
        except (NotConnected, TopicError) as exc:
            reason = str(exc)
        else:
            known = self.state.attempts.get(attempt_id)
            seen = (
                known is not None and known.outcome == Outcome.SEEN
            )  # the echo came with the PUBACK
            if not seen:
                self._set_attempt(attempt_id, label, Outcome.ACKNOWLEDGED, "", datetime.now(UTC))
            # The form's answer may reach the page after the pushed "seen": it says so too.
            pending = self.confirmations.by_attempt.get(attempt_id)
            summary = pending.summary() if pending is not None else None
            return {"ok": True, "reason": "", "seen": seen, "confirmation": summary}
        self._awaiting.pop(key, None)
        self.confirmations.drop(attempt_id)  # not published: nothing to confirm
        self._set_attempt(attempt_id, label, Outcome.FAILED, reason, datetime.now(UTC))
        return {"ok": False, "reason": reason}

    def follow(self, attempt_id: int, payload: str, confirm: dict[str, Any]) -> None:
        """Follow an action's target lamps until they report what it asked, or its deadline."""
        pending = confirmation.from_row(
            attempt_id,
            json.loads(payload),
            datetime.fromisoformat(confirm["action_at"]),
            datetime.fromisoformat(confirm["deadline"]),
            confirm["targets"],
        )
        self.take_confirmations([pending])

    def take_confirmations(self, found: list[confirmation.Pending]) -> None:
        """Follow these confirmations (a new action's, or those of a building taken over)."""
        for pending in found:
            self.confirmations.add(pending)
        self._arm_confirmations()

    def _arm_confirmations(self) -> None:
        if self._confirm_timer is not None:
            self._confirm_timer.cancel()
            self._confirm_timer = None
        wake = self.confirmations.next_wake()
        if wake is not None:
            delay = max(0.0, (wake - datetime.now(UTC)).total_seconds())
            loop = asyncio.get_running_loop()
            self._confirm_timer = loop.call_later(delay, self._confirmations_due)

    def _confirmations_due(self) -> None:
        self._confirm_timer = None
        try:
            settled = self.confirmations.due(datetime.now(UTC), self._known_meta)
            for pending in settled:
                self._confirmation_changed(pending)
        finally:
            self._arm_confirmations()

    def _known_meta(self, device_id: uuid.UUID) -> dict[str, MetaValue]:
        return self.state.meta.get(device_id, {})

    def _confirmation_changed(self, pending: confirmation.Pending) -> None:
        """Store the confirmation's progress on the audit row and push the attempt's card."""
        summary = pending.summary()
        self._history.add(self.inventory.id, ConfirmationUpdate(pending.attempt_id, summary))
        known = self.state.attempts.get(pending.attempt_id)
        if known is not None:
            known.confirmation = summary
            self.changed(tiles.attempt(pending.attempt_id))
            self._last_action_changed(pending.attempt_id, known.outcome, summary)
        else:  # taken over from another worker: its card still shows where it is
            self._set_attempt(
                pending.attempt_id, pending.label, Outcome.ACKNOWLEDGED, "", datetime.now(UTC)
            )

    def _set_attempt(
        self, attempt_id: int, label: str, outcome: Outcome, reason: str, at: datetime
    ) -> None:
        attempts = self.state.attempts
        pending = self.confirmations.by_attempt.get(attempt_id)
        summary = pending.summary() if pending is not None else None
        attempts[attempt_id] = AttemptStatus(attempt_id, label, outcome, reason, at, summary)
        self._last_action_changed(attempt_id, outcome, summary)
        while len(attempts) > KEPT_ATTEMPTS:
            attempts.pop(next(iter(attempts)))
        self.changed(tiles.attempt(attempt_id))

    def _last_action_changed(
        self, attempt_id: int, outcome: str, summary: dict[str, Any] | None
    ) -> None:
        # A few spaces' last actions at most change per attempt: a scan is fine.
        for space_id, last in self.state.last_actions.items():
            if last.attempt_id == attempt_id:
                last.outcome, last.confirmation = outcome, summary
                self.fanout.changed(tiles.headcount(space_id))

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
        history_process: bool = False,
        max_bytes: int = 256 * 1024,
        send: Send = layer.broadcast,
        notify_priority: int = 200,
        leases: Leases | None = None,
        resync: Callable[[uuid.UUID], object] | None = None,
        resync_every: float = 0.0,
    ) -> None:
        self.config = config
        # Re-sync from the Gooee Cloud API every ``resync_every`` seconds (0: never): a blocking
        # function of a building id, run in a worker thread, raising on failure.
        self._resync = resync if resync_every > 0 else None
        self._resync_every = resync_every
        self._resync_due = time.monotonic() + resync_every
        self._resync_task: asyncio.Task[None] | None = None
        self._resync_failing: dict[uuid.UUID, str] = {}
        self._notify_priority = notify_priority
        self._only = building_ids
        self._window = window
        self.leases = leases
        # With leases the loop also renews them, well within one lease period.
        self._poll_interval = min(poll_interval, leases.period / 3) if leases else poll_interval
        self._max_bytes = max_bytes
        self._send = send
        self.history = HistoryWriter(history_interval, separate_process=history_process)
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
                except Exception:
                    logger.exception("could not read the inventory or reach Redis; retrying")
                self.ready.set()
                self.local.synced = True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self._poll_interval)
        finally:
            readiness.unregister(self.local)  # stopping: this process serves no building now
            inbox.cancel()
            if self._resync_task is not None:
                # Its thread cannot be cancelled: let the building in hand finish its write.
                await asyncio.wait({self._resync_task}, timeout=RESYNC_STOP_WAIT)
            self.inbox.close()
            await asyncio.gather(*(b.stop() for b in self.buildings.values()))
            if self.leases is not None:
                await self.history.flush()  # the next holder starts from what we saw
                await self.leases.leave(list(self.buildings))
            history.cancel()
            await asyncio.gather(history, inbox, return_exceptions=True)
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
            building.fanout.request_snapshot(message["reply_to"], message["audiences"])
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
        result = await building.publish_action(message)
        await layer.send_result(message["reply_to"], result)

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
            bridge.start()
            await self.inbox.join(building_id)
            logger.info(
                "building %s (%s): %d topics", inventory.name, building_id, len(inventory.topics())
            )


async def _db(func: Callable[..., Any], *args: Any) -> Any:
    return await sync_to_async(func, thread_sensitive=False)(*args)
