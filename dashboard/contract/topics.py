"""The Gooee broker's topic catalogue: every topic the contract allows, as a table.

Building a topic the contract does not allow raises ``TopicError``: on the real
broker such a topic drops the whole connection, so it must be impossible to send.
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class Scope(StrEnum):
    DEVICE = "device"
    AREA = "area"
    SPACE = "space"
    BUILDING = "building"

    @property
    def segment(self) -> str:
        """The topic's first segment (plural), e.g. ``devices``."""
        return f"{self.value}s"


class Kind(StrEnum):
    """What a topic carries; each kind has one payload schema."""

    META = "meta"  # a list of meta items
    META_ITEM = "meta_item"  # one meta item
    ACTION = "action"
    TYPED_ACTION = "typed_action"  # an action on its type's topic, without "type"
    FAULT_ALARM = "fault_alarm"
    HEAD_COUNT = "head_count"
    HEADCOUNT_IN = "headcount_in"
    HEADCOUNT_OUT = "headcount_out"
    REJECTED_META = "rejected_meta"
    REJECTED_FAULT_ALARM = "rejected_fault_alarm"


class TopicError(ValueError):
    """A topic the Gooee broker does not allow."""


@dataclass(frozen=True)
class TopicEntry:
    """One row of the contract's topic tables."""

    scope: Scope
    kind: Kind
    suffix: str  # after "<scope>s/<id>/"; "{name}" or "{type}" marks a free segment
    pub: bool
    sub: bool
    description: str

    @property
    def pattern(self) -> str:
        """The row as the contract writes it, e.g. ``devices/(:id)/meta/(:name)``."""
        suffix = self.suffix.replace("{name}", "(:name)").replace("{type}", "(:type)")
        return f"{self.scope.segment}/(:id)/{suffix}"

    @property
    def param(self) -> str | None:
        """Name of the free last segment (``name`` or ``type``), if the row has one."""
        match = re.search(r"\{(\w+)\}$", self.suffix)
        return match.group(1) if match else None


_D, _A, _S, _B = Scope.DEVICE, Scope.AREA, Scope.SPACE, Scope.BUILDING

# The contract's two tables, row for row, in its order.
CATALOGUE: tuple[TopicEntry, ...] = (
    TopicEntry(_D, Kind.META, "meta", True, True, "All Meta values for a Device."),
    TopicEntry(_D, Kind.META_ITEM, "meta/{name}", False, True, "A specific Meta value for a Device."),
    TopicEntry(_D, Kind.ACTION, "actions", True, True, "All the Actions for a Device."),
    TopicEntry(_D, Kind.TYPED_ACTION, "actions/{type}", False, True, "A specific Action on a Device."),
    TopicEntry(_D, Kind.FAULT_ALARM, "fault_alarms", True, True, "Fault Alarms for a Device."),
    TopicEntry(_A, Kind.HEAD_COUNT, "meta/head_count", True, True, "head_count Meta value for an Area."),
    TopicEntry(_A, Kind.HEADCOUNT_IN, "meta/headcount_in", True, True, "headcount_in Meta value for an Area."),
    TopicEntry(_A, Kind.HEADCOUNT_OUT, "meta/headcount_out", True, True, "headcount_out Meta value for an Area."),
    TopicEntry(_S, Kind.ACTION, "actions", True, True, "All the Actions for a Space."),
    TopicEntry(_S, Kind.TYPED_ACTION, "actions/{type}", False, True, "A specific Action on a Space."),
    TopicEntry(_S, Kind.HEAD_COUNT, "meta/head_count", True, True, "head_count Meta value for a Space."),
    TopicEntry(_S, Kind.HEADCOUNT_IN, "meta/headcount_in", True, True, "headcount_in Meta value for a Space."),
    TopicEntry(_S, Kind.HEADCOUNT_OUT, "meta/headcount_out", True, True, "headcount_out Meta value for a Space."),
    TopicEntry(_B, Kind.ACTION, "actions", False, True, "All the Actions for Devices under the Building."),
    TopicEntry(_B, Kind.TYPED_ACTION, "actions/{type}", False, True, "Specific Actions for Devices under the Building."),
    TopicEntry(_B, Kind.FAULT_ALARM, "fault_alarms", True, True, "Fault Alarms for a Building."),
    TopicEntry(_B, Kind.HEAD_COUNT, "meta/head_count", True, True, "head_count Meta value for a Building."),
    TopicEntry(_B, Kind.HEADCOUNT_IN, "meta/headcount_in", True, True, "headcount_in Meta value for a Building."),
    TopicEntry(_B, Kind.HEADCOUNT_OUT, "meta/headcount_out", True, True, "headcount_out Meta value for a Building."),
    # Rejected topics
    TopicEntry(_D, Kind.REJECTED_META, "meta/rejected", False, True, "All rejected Meta values for a Device."),
    TopicEntry(_D, Kind.REJECTED_FAULT_ALARM, "fault_alarms/rejected", False, True, "All rejected Fault Alarms for a Device."),
    TopicEntry(_B, Kind.REJECTED_FAULT_ALARM, "fault_alarms/rejected", False, True, "All rejected Fault Alarms for a Building."),
)  # fmt: skip

# What people call each kind of topic (a rejected kind by what was rejected).
KIND_NAMES: dict[Kind, str] = {
    Kind.META: "Device meta",
    Kind.META_ITEM: "Device meta value",
    Kind.ACTION: "Action",
    Kind.TYPED_ACTION: "Typed action",
    Kind.FAULT_ALARM: "Fault alarm",
    Kind.HEAD_COUNT: "Head count",
    Kind.HEADCOUNT_IN: "Headcount in",
    Kind.HEADCOUNT_OUT: "Headcount out",
    Kind.REJECTED_META: "Device meta",
    Kind.REJECTED_FAULT_ALARM: "Fault alarm",
}

# Exact suffixes win over "{name}"/"{type}" rows: "meta/rejected" is not a meta name.
_BY_SUFFIX: dict[tuple[Scope, str], TopicEntry] = {
    (e.scope, e.suffix): e for e in CATALOGUE if e.param is None
}
_BY_PARAM_PREFIX: dict[tuple[Scope, str], TopicEntry] = {
    (e.scope, e.suffix.split("/")[0]): e for e in CATALOGUE if e.param is not None
}
_BY_KIND: dict[tuple[Scope, Kind], TopicEntry] = {(e.scope, e.kind): e for e in CATALOGUE}
_SCOPE_BY_SEGMENT = {scope.segment: scope for scope in Scope}

# A free segment may not open a new level, be a wildcard, or carry NUL.
_FORBIDDEN_IN_SEGMENT = re.compile(r"[/+#\x00]")
_MAX_SEGMENT = 100


@dataclass(frozen=True)
class Topic:
    """A concrete topic, parsed back into the catalogue's terms."""

    entry: TopicEntry
    id: uuid.UUID
    param: str | None = None

    @property
    def scope(self) -> Scope:
        return self.entry.scope

    @property
    def kind(self) -> Kind:
        return self.entry.kind

    def __str__(self) -> str:
        return build_topic(self.entry.scope, self.id, self.entry.kind, self.param)


def entry_for(scope: Scope, kind: Kind) -> TopicEntry:
    """The catalogue row for (scope, kind); ``TopicError`` if the contract has none."""
    try:
        return _BY_KIND[(Scope(scope), Kind(kind))]
    except (KeyError, ValueError):
        raise TopicError(f"the Gooee broker has no {kind} topic for a {scope}") from None


def _check_id(value: uuid.UUID | str) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise TopicError(f"topic id {value!r} is not a UUID") from None


def _check_segment(entry: TopicEntry, param: str | None) -> str | None:
    if entry.param is None:
        if param is not None:
            raise TopicError(f"{entry.pattern} takes no {param!r} segment")
        return None
    if not param:
        raise TopicError(f"{entry.pattern} needs a {entry.param}")
    if _FORBIDDEN_IN_SEGMENT.search(param) or len(param) > _MAX_SEGMENT:
        raise TopicError(f"{entry.param} {param!r} is not a valid topic segment")
    if (entry.scope, f"{entry.suffix.split('/')[0]}/{param}") in _BY_SUFFIX:
        raise TopicError(f"{entry.param} {param!r} names a different topic")
    return param


def build_topic(
    scope: Scope | str,
    id: uuid.UUID | str,
    kind: Kind | str,
    param: str | None = None,
    *,
    publish: bool = False,
) -> str:
    """The topic for (scope, id, kind[, name or type]).

    With ``publish=True`` only rows the contract marks Pub are allowed.
    """
    entry = entry_for(Scope(scope), Kind(kind))
    if publish and not entry.pub:
        raise TopicError(f"publishing to {entry.pattern} is not allowed")
    if not publish and not entry.sub:  # pragma: no cover - every row is Sub today
        raise TopicError(f"subscribing to {entry.pattern} is not allowed")
    checked_id = _check_id(id)
    checked_param = _check_segment(entry, param)
    suffix = entry.suffix.replace(f"{{{entry.param}}}", checked_param or "")
    return f"{entry.scope.segment}/{checked_id}/{suffix}"


# A building's topics repeat with every message: parsing one (a UUID read back and checked
# for its canonical form) costs more than looking it up. Bounded, since senders choose topics;
# errors are not cached.
@functools.lru_cache(maxsize=16384)
def parse_topic(topic: str) -> Topic:
    """The catalogue entry, id and free segment of a concrete topic (frozen, so shared).

    Raises ``TopicError`` for anything the contract does not list.
    """
    parts = topic.split("/")
    if len(parts) < 3 or len(parts) > 4:
        raise TopicError(f"topic {topic[:200]!r} is not in the Gooee catalogue")
    scope = _SCOPE_BY_SEGMENT.get(parts[0])
    if scope is None:
        raise TopicError(f"topic {topic[:200]!r} is not in the Gooee catalogue")
    topic_id = _check_id(parts[1])
    if str(topic_id) != parts[1]:
        raise TopicError(f"topic id {parts[1][:200]!r} is not a canonical UUID")
    suffix = "/".join(parts[2:])
    entry = _BY_SUFFIX.get((scope, suffix))
    if entry is not None:
        return Topic(entry, topic_id)
    entry = _BY_PARAM_PREFIX.get((scope, parts[2]))
    if entry is None or len(parts) != 4:
        raise TopicError(f"topic {topic[:200]!r} is not in the Gooee catalogue")
    return Topic(entry, topic_id, _check_segment(entry, parts[3]))


# What the dashboard subscribes to, per scope. Each piece of information arrives once:
# - device meta on the aggregate ``devices/<id>/meta`` only (``/meta/<name>`` repeats it);
# - device actions on ``buildings/<id>/actions`` only ("All the Actions for Devices
#   under the Building"), space actions on ``spaces/<id>/actions``; the ``/<type>``
#   topics repeat their aggregate without the type;
# - every headcount, fault alarm and rejected topic, which have no aggregate.
SUBSCRIPTIONS: dict[Scope, tuple[Kind, ...]] = {
    Scope.BUILDING: (
        Kind.ACTION,
        Kind.FAULT_ALARM,
        Kind.HEAD_COUNT,
        Kind.HEADCOUNT_IN,
        Kind.HEADCOUNT_OUT,
        Kind.REJECTED_FAULT_ALARM,
    ),
    Scope.SPACE: (Kind.ACTION, Kind.HEAD_COUNT, Kind.HEADCOUNT_IN, Kind.HEADCOUNT_OUT),
    Scope.AREA: (Kind.HEAD_COUNT, Kind.HEADCOUNT_IN, Kind.HEADCOUNT_OUT),
    Scope.DEVICE: (Kind.META, Kind.FAULT_ALARM, Kind.REJECTED_META, Kind.REJECTED_FAULT_ALARM),
}


def subscription_topics(
    building_id: uuid.UUID | str,
    space_ids: Iterable[uuid.UUID | str] = (),
    area_ids: Iterable[uuid.UUID | str] = (),
    device_ids: Iterable[uuid.UUID | str] = (),
) -> list[str]:
    """The exact topics to subscribe to for a building and its inventory, no wildcards."""
    topics: list[str] = []
    for scope, ids in (
        (Scope.BUILDING, (building_id,)),
        (Scope.SPACE, space_ids),
        (Scope.AREA, area_ids),
        (Scope.DEVICE, device_ids),
    ):
        for entity_id in ids:
            topics.extend(build_topic(scope, entity_id, kind) for kind in SUBSCRIPTIONS[scope])
    return topics
