"""One building's bridge: its broker session, ingest, fan-out, actions and confirmations.

``supervisor.Bridge`` runs one of these per building it holds, all on one event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import deque
from datetime import UTC, datetime
from typing import Any

from dashboard.bridge.fanout import Fanout, Reply, Send
from dashboard.bridge.history import HistoryWriter
from dashboard.bridge.ingest import ingest, parse
from dashboard.bridge.session import BuildingSession, NotConnected, SessionConfig
from dashboard.contract.payloads import Malformed, Payload
from dashboard.contract.topics import TopicError
from dashboard.live import confirmation, fragments, layer, metrics, tiles
from dashboard.live.buildings import BuildingInventory
from dashboard.live.state import (
    ActionRecord,
    Alarm,
    AlarmState,
    AttemptSeen,
    AttemptStatus,
    BatchTotal,
    ConfirmationUpdate,
    ConnectionStatus,
    HeadcountValue,
    LastAction,
    LiveState,
    MetaValue,
    Outcome,
    Rejection,
)

logger = logging.getLogger(__name__)

STATUS_EVERY = 5.0  # seconds between status pushes caused by traffic alone
SEEN_WAIT = 600.0  # seconds a published action waits to come back before it is forgotten
KEPT_ATTEMPTS = 200  # attempt cards kept in memory per building (a batch's total apart)
# Totals of actions sent to several spaces: one small entry per space. Older batches are kept
# while their entries number at most this many, the newest always whole, so a building holds
# at most KEPT_BATCH_SPACES entries plus one batch (no more than its spaces): a few MB.
KEPT_BATCH_SPACES = 20_000
# Payloads above this are parsed in a thread, so one big message does not hold the loop.
PARSE_IN_THREAD_ABOVE = 64 * 1024
# Bytes of messages waiting behind one being parsed in a thread; past it big ones are parsed
# on the loop again (still in order), which slows reading from the broker: back-pressure.
MAX_BACKLOG_BYTES = 16 * 1024 * 1024
# Publishes of one request waiting for their PUBACK at once: the MQTT client sends 20 at a
# time anyway (its in-flight window); more would only wait in its queue, past their deadline
# if the broker is slow, rather than here, where a late one is dropped unpublished.
PUBLISHING = 50
# Kinds of the tiles the building's overview line sums up (the building's own headcount).
_SUMMARY_KINDS = frozenset({tiles.STATUS.kind, tiles.ALARMS.kind, "headcount"})


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
            inventory.id,
            config,
            inventory.topics(),
            self.on_message,
            self.on_status,
            hold=history.behind,
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
        # Attempts sent to several spaces: attempt id -> its batch (``state.batches``).
        self._batch_of: dict[int, uuid.UUID] = {}
        self._batch_entries = 0  # over every batch kept: counted, not summed per action
        # Attempt id -> the space it is the last action of (one entry per space at most).
        self._last_of: dict[int, uuid.UUID] = {
            last.attempt_id: space_id for space_id, last in state.last_actions.items()
        }
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
        self.fanout.stop()
        for task in self._tasks:
            if task.get_name().startswith("fanout"):
                task.cancel()  # out of a window's wait at once; the flag if it is lost
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
        if previous.name != inventory.name:
            self.fanout.changed(tiles.SUMMARY_NAME)
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
        # By kind first: asked per message, and nearly every message is a meta value.
        if tile.kind in _SUMMARY_KINDS and tile in (
            tiles.STATUS,
            tiles.ALARMS,
            tiles.headcount(self.inventory.id),
        ):
            self.fanout.changed(tiles.SUMMARY_TILE)

    def all_tiles(self, audience: str) -> list[tiles.Tile]:
        """Every tile of the building that ``audience`` receives: what a snapshot holds."""
        if audience == tiles.SUMMARY:
            return [tiles.SUMMARY_NAME, tiles.SUMMARY_TILE]
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
        if type(record) is HeadcountValue:  # a reset waits for its place's count to be 0
            for pending in self.confirmations.on_meta(
                record.entity_id, record.kind, record.value, record.received_at
            ):
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

    async def publish_actions(self, request: dict[str, Any]) -> list[dict[str, Any]]:
        """Publish a request's attempts (one, or up to a few hundred of an action's spaces)
        in order; each one's result, with its attempt id.

        The request's other fields (``timeout``, ``deadline``, ``batch``) hold for each.
        At most ``PUBLISHING`` wait for their PUBACK at once, so a big batch is paced by the
        broker's acknowledgements rather than queued whole in the MQTT client.
        """
        common = {k: v for k, v in request.items() if k != "attempts"}
        gate = asyncio.Semaphore(PUBLISHING)

        async def one(item: dict[str, Any]) -> dict[str, Any]:
            try:
                return {**await self.publish_action({**common, **item}), "attempt": item["attempt"]}
            except Exception as exc:  # one bad attempt must not leave the others unanswered
                logger.exception("action attempt %s not published", item.get("attempt"))
                reason = f"the bridge could not publish it: {type(exc).__name__}"
                return {"ok": False, "reason": reason, "attempt": item.get("attempt")}
            finally:
                gate.release()

        started = []
        for item in request["attempts"]:
            await gate.acquire()  # taken in the request's order, so published in it
            started.append(asyncio.create_task(one(item)))
        return list(await asyncio.gather(*started))

    async def publish_action(self, request: dict[str, Any]) -> dict[str, Any]:
        """Publish an operator's action with QoS 1; say whether the broker acknowledged it."""
        attempt_id, label = request["attempt"], request["label"]
        timeout = request["timeout"]
        if "deadline" in request:
            # The view gives up at the deadline and records "failed": never publish after it.
            remaining = request["deadline"] - time.time()
            if remaining <= 0:
                reason = (
                    f"not published: the bridge got to it {-remaining:.1f} s after its deadline"
                )
                logger.warning("action attempt %s dropped: %s", attempt_id, reason)
                self._set_attempt(attempt_id, label, Outcome.FAILED, reason, datetime.now(UTC))
                return {"ok": False, "reason": reason, "expired": True}
            timeout = min(timeout, remaining)
        key = (request["name"], request["action_type"], request["created"])
        space_id = uuid.UUID(request["space"]) if request.get("space") else None
        if request.get("batch"):  # one of several spaces': its total is a tile of its own
            batch = request["batch"]
            total = {uuid.UUID(batch["id"]): BatchTotal(int(batch["spaces"]))}
            found = confirmation.Confirmation.PENDING if request.get("confirm") else ""
            total[uuid.UUID(batch["id"])].spaces[attempt_id] = (space_id, found)
            self.take_batches(total)
        if space_id is not None:
            before = self.state.last_actions.get(space_id)
            if before is not None:
                self._last_of.pop(before.attempt_id, None)
            self.state.last_actions[space_id] = LastAction(
                attempt_id, request.get("who", ""), label, datetime.now(UTC), Outcome.PENDING
            )
            self._last_of[attempt_id] = space_id
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

    def take_batches(self, found: dict[uuid.UUID, BatchTotal]) -> None:
        """Count these spaces in their batches' totals (a new action's, or those of a
        building taken over, settled spaces included); forget the oldest batches past the
        bound."""
        batches = self.state.batches
        for batch_id, total in found.items():
            kept = batches.setdefault(batch_id, total)
            if kept is total:
                self._batch_entries += len(total.spaces)
            else:
                self._batch_entries += len(total.spaces.keys() - kept.spaces.keys())
                kept.spaces.update(total.spaces)
            for attempt_id in total.spaces:
                self._batch_of[attempt_id] = batch_id
        newest = next(reversed(batches), None)
        while newest is not None and (
            self._batch_entries - len(batches[newest].spaces) > KEPT_BATCH_SPACES
        ):
            for attempt_id in batches.pop(next(iter(batches))).spaces:
                self._batch_of.pop(attempt_id, None)
                self._batch_entries -= 1

    def _batch_changed(self, attempt_id: int, summary: dict[str, Any] | None) -> uuid.UUID | None:
        """The attempt's state in its batch's total, pushed; its batch (None when none)."""
        batch_id = self._batch_of.get(attempt_id)
        total = self.state.batches.get(batch_id) if batch_id is not None else None
        if batch_id is None or total is None:
            return None
        space_id = total.spaces.get(attempt_id, (None, ""))[0]
        total.spaces[attempt_id] = (space_id, (summary or {}).get("state", ""))
        self.changed(tiles.batch(batch_id))
        return batch_id

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
        # Its batch's total counts it whether or not its card is still kept.
        self._batch_changed(pending.attempt_id, summary)
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
        status = AttemptStatus(attempt_id, label, outcome, reason, at, summary)
        status.batch = self._batch_changed(attempt_id, summary)
        attempts[attempt_id] = status
        self._last_action_changed(attempt_id, outcome, summary)
        while len(attempts) > KEPT_ATTEMPTS:
            del attempts[next(iter(attempts))]
        self.changed(tiles.attempt(attempt_id))

    def _last_action_changed(
        self, attempt_id: int, outcome: str, summary: dict[str, Any] | None
    ) -> None:
        # Looked up, not scanned: an action on 10,000 spaces changes 10,000 of them.
        space_id = self._last_of.get(attempt_id)
        last = self.state.last_actions.get(space_id) if space_id is not None else None
        if space_id is not None and last is not None and last.attempt_id == attempt_id:
            last.outcome, last.confirmation = outcome, summary
            self.fanout.changed(tiles.headcount(space_id))

    def render(self, tile: tiles.Tile) -> str:
        return fragments.render_tile(tile, self.state, self.inventory)
