"""Live state of one building: the latest of everything the broker told us.

The bridge keeps it in memory and updates it per message; pages build the same
structure from the database (``load_state``) so one set of templates serves both.
"""

from __future__ import annotations

import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from dashboard.live.integrity import CountersAtZero

RECENT = 50  # rejected, malformed and action entries kept in memory per building


class AlarmState(StrEnum):
    """Where an alarm is in its workflow; also the stored ``FaultAlarm.state``."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    CLEARED = "cleared"


class Outcome(StrEnum):
    """What became of an operator's action; also the stored ``ActionAttempt.outcome``."""

    PENDING = "pending"  # written, not yet handed to the broker
    REFUSED = "refused"  # not allowed: role, validation or rate limit; nothing published
    FAILED = "failed"  # the broker could not take it; nothing acknowledged
    ACKNOWLEDGED = "acknowledged"  # the broker's PUBACK arrived
    SEEN = "seen"  # it came back on the building's action topics


@dataclass(slots=True)
class MetaValue:
    device_id: uuid.UUID
    name: str
    value: Any
    display_name: str
    unit: str
    source_timestamp: str
    received_at: datetime
    # Read from the Gooee Cloud API by a sync, not received over MQTT: shown marked until a
    # live value replaces it.
    synced: bool = False


@dataclass(slots=True)
class HeadcountValue:
    scope: str
    entity_id: uuid.UUID
    kind: str  # head_count, headcount_in or headcount_out
    value: int
    received_at: datetime


@dataclass(slots=True)
class ZeroMark:
    """A place's count became 0: its counters then, kept with its latest count."""

    entity_id: uuid.UUID
    counters: CountersAtZero


@dataclass(slots=True)
class Alarm:
    """An open alarm, one per (device or building, type)."""

    device_id: uuid.UUID | None
    type: str
    level: str
    priority: int
    description: str
    notes: str
    payload: dict[str, Any]
    count: int
    first_seen: datetime
    last_seen: datetime
    state: AlarmState = AlarmState.OPEN

    @property
    def key(self) -> tuple[uuid.UUID | None, str]:
        return (self.device_id, self.type)


@dataclass(slots=True)
class Rejection:
    topic: str
    kind: str
    device_id: uuid.UUID | None
    message: str
    context: Any
    data: Any
    received_at: datetime


@dataclass(slots=True)
class MalformedMessage:
    topic: str
    kind: str
    reason: str
    raw: str
    received_at: datetime


@dataclass(slots=True)
class ActionRecord:
    topic: str
    name: str
    type: str
    target_type: str
    target_id: uuid.UUID
    value: Any
    created: str
    received_at: datetime


@dataclass(slots=True)
class AttemptStatus:
    """An operator's action this bridge published, until the cloud shows it back."""

    id: int
    label: str
    outcome: Outcome  # ACKNOWLEDGED, SEEN or FAILED
    reason: str
    at: datetime
    # live/confirmation.py's summary: do its lamps report what it asked for?
    confirmation: dict[str, Any] | None = None
    # Sent to several spaces at once (all, or picked): its batch (``LiveState.batches``).
    batch: uuid.UUID | None = None


@dataclass(slots=True)
class BatchTotal:
    """An action sent to several spaces at once, for its total ("confirmed in 11 of 12
    spaces"): each space's confirmation state by attempt. Kept apart from the attempt cards
    (a few hundred at most), so a batch of any size, or one taken over from another worker,
    counts every space."""

    size: int  # how many spaces it went to
    # attempt id -> (its space, its confirmation state: live/confirmation.py's, "" for none)
    spaces: dict[int, tuple[uuid.UUID | None, str]] = field(default_factory=dict)


@dataclass(slots=True)
class LastAction:
    """The last action sent to a space: shown on its card (who, what, when, outcome)."""

    attempt_id: int
    username: str
    label: str
    at: datetime
    outcome: str
    confirmation: dict[str, Any] | None = None


@dataclass(slots=True)
class ConfirmationUpdate:
    """A history record: an attempt's confirmation moved on (``Pending.summary()``)."""

    attempt_id: int
    summary: dict[str, Any]


@dataclass(slots=True)
class AttemptSeen:
    """A history record: the attempt's action came back on the building's action topics."""

    attempt_id: int
    seen_at: datetime


@dataclass(slots=True)
class ConnectionStatus:
    """The building's MQTT session as the UI shows it."""

    state: str = "connecting"  # connecting, connected, reconnecting, stopped
    since: datetime | None = None
    next_attempt_at: datetime | None = None
    last_message_at: datetime | None = None
    last_error: str = ""
    subscribed: int = 0
    refused_topics: list[str] = field(default_factory=list)
    # The last re-sync from the Gooee Cloud API failed (why), until one succeeds.
    sync_error: str = ""


@dataclass
class LiveState:
    building_id: uuid.UUID
    meta: dict[uuid.UUID, dict[str, MetaValue]] = field(default_factory=dict)
    headcounts: dict[tuple[uuid.UUID, str], HeadcountValue] = field(default_factory=dict)
    # By place: its counters when its count last became 0 (integrity.check_headcount).
    zero_counters: dict[uuid.UUID, CountersAtZero] = field(default_factory=dict)
    alarms: dict[tuple[uuid.UUID | None, str], Alarm] = field(default_factory=dict)
    rejections: deque[Rejection] = field(default_factory=lambda: deque(maxlen=RECENT))
    malformed: deque[MalformedMessage] = field(default_factory=lambda: deque(maxlen=RECENT))
    actions: deque[ActionRecord] = field(default_factory=lambda: deque(maxlen=RECENT))
    counters: Counter[str] = field(default_factory=Counter)
    status: ConnectionStatus = field(default_factory=ConnectionStatus)
    attempts: dict[int, AttemptStatus] = field(default_factory=dict)
    batches: dict[uuid.UUID, BatchTotal] = field(default_factory=dict)
    # Rejections not yet pushed to open inspectors, newest first; the push takes them.
    new_rejections: deque[Rejection] = field(default_factory=lambda: deque(maxlen=RECENT))
    banner: Alarm | None = None  # the latest alarm worth interrupting people for
    last_actions: dict[uuid.UUID, LastAction] = field(default_factory=dict)  # by space

    def headcount(self, entity_id: uuid.UUID) -> dict[str, HeadcountValue]:
        """head_count, headcount_in and headcount_out of one building, space or area."""
        found = {}
        for kind in ("head_count", "headcount_in", "headcount_out"):
            value = self.headcounts.get((entity_id, kind))
            if value is not None:
                found[kind] = value
        return found

    def unacknowledged(self) -> int:
        return sum(1 for alarm in self.alarms.values() if alarm.state == AlarmState.OPEN)

    def open_alarms(self) -> list[Alarm]:
        """Open and acknowledged alarms, newest first."""
        return sorted(self.alarms.values(), key=lambda a: a.last_seen, reverse=True)
