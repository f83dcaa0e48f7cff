"""Confirmed outcome of an action: did the lamps it targets report what it asked for?

Plain data and functions with no I/O: the bridge feeds them every meta value of a device
with something pending, and settles them at their deadline; unit tests call them directly.
The audit row (``ActionAttempt``) keeps the same ``summary``, so a reload or another bridge
worker picks up where this one was.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from dashboard.live.state import MetaValue

LAMP_META = ("dim", "onoff")  # a device that reports one of these is a lamp
LAMP_TYPES = ("lamp", "light", "luminaire", "bulb")  # words of a lamp's product type
# A lamp that follows this long after the deadline still updates the audit row ("late").
LATE_WINDOW = timedelta(minutes=10)


class Confirmation(StrEnum):
    """Where an action's confirmation is; also the stored ``ActionAttempt.confirmation``."""

    NONE = ""  # not followed: refused, failed, or no lamp to follow
    PENDING = "pending"
    CONFIRMED = "confirmed"  # every lamp followed
    PARTLY = "partly"  # some did
    NOT_CONFIRMED = "not_confirmed"  # none did


TEXT = {
    Confirmation.CONFIRMED: "confirmed",
    Confirmation.PARTLY: "partly confirmed",
    Confirmation.NOT_CONFIRMED: "not confirmed",
}


def is_lamp(product_type: str, reported: Iterable[str]) -> bool:
    """A device counts as a lamp when it reported dim or onoff, or its product type says so."""
    kind = product_type.lower()
    return any(name in LAMP_META for name in reported) or any(w in kind for w in LAMP_TYPES)


RESET = "reset"  # a headcount reset: {"name": "headcount", "value": 0} on a place's head_count
HEAD_COUNT = "head_count"  # the meta name a place's count is reported under


@dataclass(frozen=True, slots=True)
class Command:
    type: str  # off, on, dim or reset
    level: int | None = None

    @classmethod
    def of(cls, payload: Mapping[str, Any]) -> Command:
        if "type" not in payload and payload.get("name") == "headcount":
            return cls(RESET)
        value = payload.get("value") or {}
        level = value.get("level") if payload.get("type") == "dim" else None
        return cls(str(payload.get("type")), int(level) if level is not None else None)

    def followed(self, name: str, value: Any) -> bool:
        """Whether one reported meta value shows this command done."""
        if self.type == "off":
            return (name == "onoff" and _onoff(value) is False) or (
                name == "dim" and _number(value) == 0
            )
        if self.type == "on":
            return name == "onoff" and _onoff(value) is True
        if self.type == RESET:  # the place's own count comes back as 0
            return name == HEAD_COUNT and _number(value) == 0
        if self.type == "dim" and name == "dim" and self.level is not None:
            level = _number(value)
            return level is not None and abs(level - self.level) <= 1
        return False


def is_on(value: Any) -> bool | None:
    """A reported onoff value read as on or off; None when it says neither."""
    return _onoff(value)


def _onoff(value: Any) -> bool | None:
    # Untrusted: a device may say true, "on", 1 ...
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("on", "true", "off", "false"):
        return value.lower() in ("on", "true")
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


@dataclass
class Pending:
    """One action's confirmation: its target lamps and which of them followed."""

    attempt_id: int
    label: str  # the action's name: "Dim Boardroom to 40 %"
    command: Command
    action_at: datetime
    deadline: datetime
    names: dict[uuid.UUID, str]  # the target lamps
    followed: dict[uuid.UUID, datetime] = field(default_factory=dict)
    # Last relevant report of each lamp since the action that did not follow: (name, value, at)
    reported: dict[uuid.UUID, dict[str, tuple[Any, datetime]]] = field(default_factory=dict)
    state: Confirmation = Confirmation.PENDING
    # Filled in at the deadline: what each lamp that did not follow last said.
    missing: list[dict[str, str]] = field(default_factory=list)
    late: list[dict[str, Any]] = field(default_factory=list)

    def on_meta(self, device_id: uuid.UUID, name: str, value: Any, at: datetime) -> bool:
        """Take one report of a target lamp; True when it changed the confirmation."""
        if device_id in self.followed or at < self.action_at:
            return False
        if not self.command.followed(name, value):
            self.reported.setdefault(device_id, {})[name] = (value, at)
            return False
        self.followed[device_id] = at
        if self.state is Confirmation.PENDING and len(self.followed) >= len(self.names):
            self.state = Confirmation.CONFIRMED  # every lamp followed: no need to wait on
        elif self.state is not Confirmation.PENDING:  # after the deadline: say how late
            seconds = max(0, round((at - self.deadline).total_seconds()))
            self.late.append({"id": str(device_id), "name": self.names[device_id], "late": seconds})
            self.missing = [m for m in self.missing if m["id"] != str(device_id)]
            self.state = _settled(len(self.followed), len(self.names))
        return True

    def settle(self, known: Callable[[uuid.UUID], Mapping[str, MetaValue]]) -> None:
        """At the deadline: confirmed, partly or not; name each lamp that did not follow.

        ``known``: a device's latest meta values, for lamps with no report since the action.
        """
        self.state = _settled(len(self.followed), len(self.names))
        self.missing = [
            {"id": str(device_id), "name": name, "last": self._last(device_id, known(device_id))}
            for device_id, name in sorted(self.names.items(), key=lambda item: item[1])
            if device_id not in self.followed
        ]

    def _last(self, device_id: uuid.UUID, latest: Mapping[str, MetaValue]) -> str:
        values = {n: (v.value, v.received_at) for n, v in latest.items() if n in LAMP_META}
        values.update(self.reported.get(device_id, {}))
        if self.command.type == RESET:  # a place: only its count is about the reset
            values = {n: v for n, v in values.items() if n == HEAD_COUNT}
        if not values:
            return "no report since the action"
        # Dim commands are about the level; on and off about onoff (else the level).
        shown = ["dim"] if self.command.type == "dim" else ["onoff", "dim"]
        order = [HEAD_COUNT] if self.command.type == RESET else [*shown, *LAMP_META]
        name = next(n for n in order if n in values)
        value, at = values[name]
        if name == HEAD_COUNT:
            text = f"count {value}"
        else:
            text = f"{value} %" if name == "dim" else ("on" if _onoff(value) else "off")
        delta = (at - self.action_at).total_seconds()
        when = f"{round(-delta)} s before" if delta < 0 else f"{round(delta)} s after"
        return f"{text}, {when} the action"

    def summary(self) -> dict[str, Any]:
        """What the attempt's card and the audit row show."""
        return {
            "state": str(self.state),
            "confirmed": len(self.followed),
            "total": len(self.names),
            "followed": [str(d) for d in self.followed],
            "missing": self.missing,
            "late": self.late,
            "noun": self.noun,
        }

    @property
    def noun(self) -> str:
        """What it follows: lamps, or for a reset the place whose count it is."""
        return "place" if self.command.type == RESET else "lamp"


def _settled(followed: int, total: int) -> Confirmation:
    if followed >= total:
        return Confirmation.CONFIRMED
    return Confirmation.PARTLY if followed else Confirmation.NOT_CONFIRMED


def from_row(
    attempt_id: int,
    payload: Mapping[str, Any],
    action_at: datetime,
    deadline: datetime,
    targets: Iterable[Mapping[str, str]],
    detail: Mapping[str, Any] | None = None,
) -> Pending:
    """A confirmation as the audit row (or the publish request) describes it."""
    pending = Pending(
        attempt_id,
        str(payload.get("name", "")),
        Command.of(payload),
        action_at,
        deadline,
        {uuid.UUID(t["id"]): t["name"] for t in targets},
    )
    for device_id in (detail or {}).get("followed", []):
        pending.followed[uuid.UUID(device_id)] = action_at
    return pending


class Confirmations:
    """A building's confirmations, indexed by the devices they wait on."""

    def __init__(self) -> None:
        self.by_attempt: dict[int, Pending] = {}
        self._by_device: dict[uuid.UUID, list[Pending]] = {}

    def add(self, pending: Pending) -> None:
        self.by_attempt[pending.attempt_id] = pending
        for device_id in pending.names:
            if device_id not in pending.followed:
                self._by_device.setdefault(device_id, []).append(pending)

    def on_meta(self, device_id: uuid.UUID, name: str, value: Any, at: datetime) -> list[Pending]:
        """The confirmations this report changed. One dict lookup when none waits on it."""
        waiting = self._by_device.get(device_id)
        if waiting is None:
            return []
        changed = [p for p in waiting if p.on_meta(device_id, name, value, at)]
        if changed:
            left = [p for p in waiting if device_id not in p.followed]
            if left:
                self._by_device[device_id] = left
            else:
                del self._by_device[device_id]
        return changed

    def due(
        self, now: datetime, known: Callable[[uuid.UUID], Mapping[str, MetaValue]]
    ) -> list[Pending]:
        """Settle the pending ones past their deadline (returned); forget those past lateness."""
        settled = []
        for pending in list(self.by_attempt.values()):
            if pending.state is Confirmation.PENDING and now >= pending.deadline:
                pending.settle(known)
                settled.append(pending)
            elif (
                pending.state is not Confirmation.PENDING and now >= pending.deadline + LATE_WINDOW
            ):
                self.drop(pending.attempt_id)
        return settled

    def drop(self, attempt_id: int) -> None:
        pending = self.by_attempt.pop(attempt_id, None)
        if pending is None:
            return
        for device_id in pending.names:
            waiting = self._by_device.get(device_id)
            if waiting is None:
                continue
            left = [p for p in waiting if p is not pending]
            if left:
                self._by_device[device_id] = left
            else:
                del self._by_device[device_id]

    def next_wake(self) -> datetime | None:
        """When ``due`` has something to do next: a deadline, or one to forget."""
        return min(
            (
                p.deadline if p.state is Confirmation.PENDING else p.deadline + LATE_WINDOW
                for p in self.by_attempt.values()
            ),
            default=None,
        )


def summary_of(state: str, confirmed: int, total: int, detail: Mapping[str, Any]) -> dict[str, Any]:
    """A summary as the audit row stores it (its fields), like ``Pending.summary()``."""
    return {
        "state": state,
        "confirmed": confirmed,
        "total": total,
        "followed": list(detail.get("followed", [])),
        "missing": list(detail.get("missing", [])),
        "late": list(detail.get("late", [])),
        "noun": detail.get("noun", "lamp"),
    }


def describe(summary: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A summary as people read it: the card, the Activity page and its CSV."""
    if not summary or not summary.get("state"):
        return None
    state, confirmed, total = summary["state"], summary["confirmed"], summary["total"]
    noun = summary.get("noun") or "lamp"
    lamps = noun if total == 1 else f"{noun}s"
    if state == Confirmation.PENDING:
        text = f"Confirmed {confirmed} of {total} {lamps}"
    else:
        text = f"{TEXT.get(state, state)}: {confirmed} of {total} {lamps}"
    return {
        "state": state,
        "settled": state != Confirmation.PENDING,
        "text": text,
        "noun": noun,
        "missing": [f"{m['name']}: {m['last']}" for m in summary.get("missing", [])],
        "late": [
            f"{m['name']}: followed {m['late']} s after the deadline"
            for m in summary.get("late", [])
        ],
    }


def across_spaces(spaces: Sequence[tuple[str, str]], total: int) -> dict[str, Any]:
    """One action sent to several spaces, in total: in how many of them every lamp followed.

    ``spaces``: (name, confirmation state) of each space heard of; the state is "" when it
    had no lamp to follow or was not sent. ``total``: how many spaces the action went to
    (those not heard of yet are pending).
    """
    states = [_state(state) for _, state in spaces]
    counts = {state: states.count(state) for state in Confirmation}
    pending = counts[Confirmation.PENDING] + max(0, total - len(states))
    confirmed = counts[Confirmation.CONFIRMED]
    noun = "space" if total == 1 else "spaces"
    if pending:
        text, state = f"Confirmed in {confirmed} of {total} {noun} so far", Confirmation.PENDING
    else:
        text = f"confirmed in {confirmed} of {total} {noun}"
        state = _settled(confirmed, total) if total else Confirmation.NONE
    detail = [
        f"{n} {words}"
        for n, words in (
            (counts[Confirmation.PARTLY], "partly confirmed"),
            (counts[Confirmation.NOT_CONFIRMED], "not confirmed"),
            (counts[Confirmation.NONE], "with no lamp to follow or not sent"),
        )
        if n
    ]
    # Once settled, each space where not every lamp followed, by name.
    short = [
        f"{name}: {TEXT.get(state, NOTHING_FOLLOWED)}"
        for (name, _), state in zip(spaces, states, strict=True)
        if state not in (Confirmation.CONFIRMED, Confirmation.PENDING)
    ]
    return {
        "state": str(state),
        "settled": not pending,
        "text": text,
        "detail": ", ".join(detail),
        "short": [] if pending else sorted(short),
    }


NOTHING_FOLLOWED = "no lamp to follow, or not sent"


def _state(raw: str) -> Confirmation:
    try:
        return Confirmation(raw)
    except ValueError:
        return Confirmation.NONE
