"""Turn one MQTT message into live state, tiles to refresh and records to keep.

Plain functions with no I/O: the session calls ``ingest`` per message on the event
loop, unit tests call it directly. Every byte that arrives is untrusted.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from dashboard.contract import meta_definitions, payloads, rejected_data
from dashboard.contract.topics import Kind, Scope, Topic, TopicError, parse_topic
from dashboard.live import tiles
from dashboard.live.buildings import BuildingInventory
from dashboard.live.integrity import CountersAtZero
from dashboard.live.state import (
    ActionRecord,
    Alarm,
    HeadcountValue,
    LiveState,
    MalformedMessage,
    MetaValue,
    Rejection,
    ZeroMark,
)

logger = logging.getLogger(__name__)

# Bounds on what one building's hostile devices can make us hold in memory.
MAX_META_NAMES_PER_DEVICE = 200
MAX_OPEN_ALARMS = 1000
# Of a value a device sends (a meta value, an alarm's payload, an action's value), as JSON
# text: what is kept in live state, queued for history and stored; longer ones are cut with
# the cut stated in them, as rejections are. A payload no longer than this is never cut.
MAX_KEPT_VALUE_CHARS = rejected_data.MAX_KEPT_CHARS

Keep = Callable[[Any], Any]


def _whole(value: Any) -> Any:
    return value


class Sink(Protocol):
    """Where ingest reports its effects: tiles for browsers, records for history."""

    def changed(self, tile: tiles.Tile) -> None: ...

    def record(self, record: object) -> None: ...


def ingest(
    state: LiveState,
    inventory: BuildingInventory,
    topic_name: str,
    raw: bytes,
    now: datetime,
    sink: Sink,
    *,
    max_bytes: int = payloads.MAX_PAYLOAD_BYTES,
    parsed: payloads.Payload | payloads.Malformed | None = None,
) -> str:
    """Apply one message; return its outcome: accepted, malformed, duplicate or unknown.

    ``parsed`` is ``parse(raw)`` done beforehand (off the loop, for a big payload).
    """
    state.status.last_message_at = now
    try:
        topic = parse_topic(topic_name)
    except TopicError as exc:
        return _malformed(state, sink, topic_name, "unknown", str(exc), raw, now)
    if not inventory.knows(topic.scope, topic.id):
        # Removed from the inventory while the message was in flight: not the sender's fault.
        state.counters["unknown"] += 1
        return "unknown"
    if parsed is None:
        parsed = payloads.parse(topic.kind, raw, max_bytes=max_bytes)
    if isinstance(parsed, payloads.Malformed):
        return _malformed(state, sink, topic_name, topic.kind, parsed.reason, raw, now, parsed.raw)
    # Only a payload longer than the bound can hold a value longer than it: small ones,
    # nearly all of them, are not measured.
    keep = rejected_data.kept if len(raw) > MAX_KEPT_VALUE_CHARS else _whole
    outcome = HANDLERS[topic.kind](state, topic, parsed.data, now, sink, keep)
    state.counters[outcome] += 1
    return outcome


def parse(
    topic_name: str, raw: bytes, max_bytes: int
) -> payloads.Payload | payloads.Malformed | None:
    """The message's payload parsed for its topic's kind; None when the topic is unknown.

    No state is touched: the bridge runs this in a thread for big payloads.
    """
    try:
        topic = parse_topic(topic_name)
    except TopicError:
        return None
    return payloads.parse(topic.kind, raw, max_bytes=max_bytes)


def _malformed(
    state: LiveState,
    sink: Sink,
    topic_name: str,
    kind: str,
    reason: str,
    raw: bytes,
    now: datetime,
    safe_raw: str | None = None,
) -> str:
    entry = MalformedMessage(
        topic=topic_name[:300],
        kind=str(kind),
        reason=reason,
        raw=safe_raw if safe_raw is not None else payloads.raw_preview(raw),
        received_at=now,
    )
    state.malformed.appendleft(entry)
    state.counters["malformed"] += 1
    sink.changed(tiles.MALFORMED)
    sink.record(entry)
    return "malformed"


def _meta(state: LiveState, topic: Topic, data: Any, now: datetime, sink: Sink, keep: Keep) -> str:
    items = data if topic.kind == Kind.META else [data]
    device_meta = state.meta.setdefault(topic.id, {})
    for item in items:
        name = item["name"]
        is_new = name not in device_meta
        if is_new and len(device_meta) >= MAX_META_NAMES_PER_DEVICE:
            state.counters["meta_names_over_limit"] += 1
            continue
        definition = meta_definitions.meta_definition(name)
        value = MetaValue(
            device_id=topic.id,
            name=name,
            value=keep(item["value"]),
            display_name=definition.display_name
            if definition
            else item.get("display_name") or name,
            unit=(definition.unit if definition else None) or item.get("unit_of_measure") or "",
            source_timestamp=item.get("timestamp") or "",
            received_at=now,
        )
        device_meta[name] = value
        sink.changed(tiles.device(topic.id) if is_new else tiles.meta(topic.id, name))
        sink.record(value)
    return "accepted"


def _headcount(
    state: LiveState, topic: Topic, data: Any, now: datetime, sink: Sink, keep: Keep
) -> str:
    # The schema's "integer" lets 1E+2 and 5.0 through: shown and stored as 100 and 5.
    count = int(data["value"])
    value = HeadcountValue(
        scope=topic.scope, entity_id=topic.id, kind=topic.kind, value=count, received_at=now
    )
    previous = state.headcounts.get((topic.id, topic.kind))
    state.headcounts[(topic.id, topic.kind)] = value
    sink.changed(tiles.headcount(topic.id))
    sink.record(value)
    if topic.kind == Kind.HEAD_COUNT and count == 0 and (previous is None or previous.value):
        # Reset or emptied: from here on the count follows what the counters do next. A count
        # stuck at 0 keeps the first mark, so counters that move on are still seen.
        counted_in, counted_out = (
            state.headcounts.get((topic.id, kind))
            for kind in (Kind.HEADCOUNT_IN, Kind.HEADCOUNT_OUT)
        )
        mark = CountersAtZero(
            counted_in.value if counted_in is not None else None,
            counted_out.value if counted_out is not None else None,
        )
        state.zero_counters[topic.id] = mark
        sink.record(ZeroMark(topic.id, mark))
    return "accepted"


def _alarm(state: LiveState, topic: Topic, data: Any, now: datetime, sink: Sink, keep: Keep) -> str:
    device_id = topic.id if topic.scope == Scope.DEVICE else None
    key = (device_id, data["type"])
    alarm = state.alarms.get(key)
    if alarm is not None and _same_occurrence(alarm.payload, data):
        return "duplicate"  # a QoS 1 redelivery, not a new occurrence
    if alarm is None:
        if len(state.alarms) >= MAX_OPEN_ALARMS:
            oldest = min(state.alarms.values(), key=lambda a: a.last_seen)
            del state.alarms[oldest.key]
        alarm = Alarm(
            device_id=device_id,
            type=data["type"],
            level=data["level"],
            priority=int(data["priority"]),  # "integer": 255.0 too
            description=data.get("description") or "",
            notes=data.get("notes") or "",
            payload=keep(data),
            count=1,
            first_seen=now,
            last_seen=now,
        )
        state.alarms[key] = alarm
    else:
        alarm.count += 1
        alarm.last_seen = now
        alarm.level, alarm.priority = data["level"], int(data["priority"])
        alarm.payload = keep(data)
        alarm.description = data.get("description") or alarm.description
        alarm.notes = data.get("notes") or alarm.notes
    sink.changed(tiles.ALARMS)
    sink.record(alarm)
    return "accepted"


def _same_occurrence(seen: dict[str, Any], data: dict[str, Any]) -> bool:
    return seen.get("timestamp") == data.get("timestamp") and seen.get("id") == data.get("id")


def _rejected(
    state: LiveState, topic: Topic, data: Any, now: datetime, sink: Sink, keep: Keep
) -> str:
    error = data["error"]
    entry = Rejection(
        topic=str(topic),
        kind=topic.kind,
        device_id=topic.id if topic.scope == Scope.DEVICE else None,
        message=error["message"],
        # The cloud echoes what was published: keep a bounded copy, the cut stated in it.
        context=rejected_data.kept(error.get("context")),
        data=rejected_data.kept(data.get("data")),
        received_at=now,
    )
    state.rejections.appendleft(entry)
    sink.changed(tiles.REJECTIONS)
    sink.record(entry)
    return "rejected"


def _action(
    state: LiveState, topic: Topic, data: Any, now: datetime, sink: Sink, keep: Keep
) -> str:
    entry = ActionRecord(
        topic=str(topic),
        name=data["name"],
        type=data["type"] if topic.kind == Kind.ACTION else topic.param or "",
        target_type=data["target_type"],
        target_id=uuid.UUID(data["target_id"]),
        value=keep(data.get("value")),
        created=data.get("created") or "",
        received_at=now,
    )
    if any(_same_action(seen, entry) for seen in state.actions):
        return "duplicate"
    state.actions.appendleft(entry)
    sink.changed(tiles.ACTIONS)
    sink.record(entry)
    return "accepted"


def _same_action(a: ActionRecord, b: ActionRecord) -> bool:
    return (a.topic, a.created, a.target_id, a.type, a.name) == (
        b.topic,
        b.created,
        b.target_id,
        b.type,
        b.name,
    )


Handler = Callable[[LiveState, Topic, Any, datetime, Sink, Keep], str]

HANDLERS: dict[Kind, Handler] = {
    Kind.META: _meta,
    Kind.META_ITEM: _meta,
    Kind.ACTION: _action,
    Kind.TYPED_ACTION: _action,
    Kind.FAULT_ALARM: _alarm,
    Kind.HEAD_COUNT: _headcount,
    Kind.HEADCOUNT_IN: _headcount,
    Kind.HEADCOUNT_OUT: _headcount,
    Kind.REJECTED_META: _rejected,
    Kind.REJECTED_FAULT_ALARM: _rejected,
}
