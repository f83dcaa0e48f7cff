"""The Gooee cloud, as far as the dashboard can tell, on a plain MQTT broker.

Devices publish to ``gooee-emulator/in/<real topic>``; the emulator validates each message
with the dashboard's own schemas and passes it on to the real topic, or publishes the
refusal on the ``/rejected`` topic. Actions published on ``spaces/<id>/actions`` and
``devices/<id>/actions`` are fanned out to the topics the contract derives from them.
The pure functions ``handle_ingress`` and ``fan_out_action`` hold the rules; ``CloudEmulator``
only moves bytes.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt

from dashboard.bridge.broker_url import BrokerUrl
from dashboard.contract import payloads
from dashboard.contract.payloads import Malformed
from dashboard.contract.topics import Kind, Scope, TopicError, build_topic, parse_topic
from dashboard.demo.mqtt import DemoClient
from dashboard.live.buildings import BuildingInventory

logger = logging.getLogger(__name__)

INGRESS_PREFIX = "gooee-emulator/in/"
INGRESS_FILTER = INGRESS_PREFIX + "#"
ACTION_FILTERS = ("spaces/+/actions", "devices/+/actions")

# What devices publish: the Pub rows of the contract that are not actions.
INGRESS_KINDS = frozenset(
    {Kind.META, Kind.FAULT_ALARM, Kind.HEAD_COUNT, Kind.HEADCOUNT_IN, Kind.HEADCOUNT_OUT}
)
# Where the cloud reports a refused publish; kinds without one are dropped silently.
REJECTED_KINDS: dict[tuple[Scope, Kind], Kind] = {
    (Scope.DEVICE, Kind.META): Kind.REJECTED_META,
    (Scope.DEVICE, Kind.FAULT_ALARM): Kind.REJECTED_FAULT_ALARM,
    (Scope.BUILDING, Kind.FAULT_ALARM): Kind.REJECTED_FAULT_ALARM,
}
# The per-name topic repeats these properties of each aggregate meta item (the contract's example).
META_ITEM_KEYS = ("name", "value", "timestamp")
ECHO_SECONDS = 30.0  # how long a published action is remembered to recognise its echo
ECHO_LIMIT = 100_000

Message = tuple[str, bytes]


def ingress_topic(topic: str) -> str:
    """Where a device publishes what the cloud should receive on ``topic``."""
    return INGRESS_PREFIX + topic


def encode(data: Any) -> bytes:
    """Compact JSON, as the cloud sends it."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


# --- ingress -------------------------------------------------------------------------------


def _refusal(malformed: Malformed) -> dict:
    """The rejected envelope for a refused message: the first schema error, else the reason."""
    if malformed.errors:
        return malformed.errors[0]
    message = f"Invalid payload: {malformed.reason}."
    return {"error": {"message": message, "context": {}}, "data": malformed.raw}


def _meta_items(device_id: uuid.UUID, items: list[dict]) -> Iterable[Message]:
    for item in items:
        try:
            topic = build_topic(Scope.DEVICE, device_id, Kind.META_ITEM, item["name"])
        except TopicError as exc:
            # A valid meta name can still be a reserved segment ("rejected").
            logger.warning(
                "meta %r of device %s has no per-name topic: %s", item["name"], device_id, exc
            )
            continue
        yield topic, encode({k: item[k] for k in META_ITEM_KEYS if k in item})


def handle_ingress(
    topic: str, payload: bytes, *, max_bytes: int = payloads.MAX_PAYLOAD_BYTES
) -> list[Message]:
    """What the cloud publishes for one device publish on an ingress ``topic``.

    Valid: the same bytes on the real topic (and each meta item on its per-name topic).
    Invalid: the rejected envelope on the ``/rejected`` topic, or nothing with a warning.
    """
    if not topic.startswith(INGRESS_PREFIX):
        logger.warning("not an ingress topic: %r", topic[:200])
        return []
    real = topic[len(INGRESS_PREFIX) :]
    try:
        parsed = parse_topic(real)
    except TopicError as exc:
        logger.warning("dropped a publish on %r: %s", topic[:200], exc)
        return []
    if parsed.kind not in INGRESS_KINDS:
        logger.warning(
            "dropped a publish on %r: devices do not publish %s", topic[:200], parsed.kind
        )
        return []
    result = payloads.parse(parsed.kind, payload, max_bytes=max_bytes)
    if isinstance(result, Malformed):
        rejected = REJECTED_KINDS.get((parsed.scope, parsed.kind))
        if rejected is None:
            logger.warning("dropped an invalid publish on %s: %s", real, result.reason)
            return []
        return [(build_topic(parsed.scope, parsed.id, rejected), encode(_refusal(result)))]
    out: list[Message] = [(real, bytes(payload))]
    if parsed.kind is Kind.META:
        out.extend(_meta_items(parsed.id, result.data))
    return out


# --- actions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Derived:
    """One topic an action is repeated on.

    ``per_device``: once per device the action reaches, retargeted at that device, on the
    device's own topic or its building's; otherwise once, unchanged, on the source's topic.
    """

    scope: Scope
    kind: Kind  # ACTION or TYPED_ACTION (the latter without "type", its topic says it)
    per_device: bool


# The contract's action rows, read as what the cloud derives from each publishable one.
FAN_OUT: dict[Scope, tuple[Derived, ...]] = {
    Scope.SPACE: (
        Derived(Scope.SPACE, Kind.TYPED_ACTION, per_device=False),
        Derived(Scope.DEVICE, Kind.ACTION, per_device=True),
        Derived(Scope.DEVICE, Kind.TYPED_ACTION, per_device=True),
        Derived(Scope.BUILDING, Kind.ACTION, per_device=True),
        Derived(Scope.BUILDING, Kind.TYPED_ACTION, per_device=True),
    ),
    Scope.DEVICE: (
        Derived(Scope.DEVICE, Kind.TYPED_ACTION, per_device=True),
        Derived(Scope.BUILDING, Kind.ACTION, per_device=True),
        Derived(Scope.BUILDING, Kind.TYPED_ACTION, per_device=True),
    ),
}


@dataclass
class Directory:
    """Which devices a space holds and which building a device is in."""

    space_devices: dict[uuid.UUID, list[uuid.UUID]] = field(default_factory=dict)
    device_building: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict)

    @classmethod
    def of(cls, inventories: Iterable[BuildingInventory]) -> Directory:
        directory = cls()
        for inventory in inventories:
            for space_id in inventory.spaces:
                directory.space_devices.setdefault(space_id, [])
            for device in inventory.devices.values():
                directory.device_building[device.id] = inventory.id
                if device.space_id is not None:
                    directory.space_devices.setdefault(device.space_id, []).append(device.id)
        return directory

    def devices(self, scope: Scope, entity_id: uuid.UUID) -> list[uuid.UUID]:
        """The devices an action on (scope, id) reaches."""
        if scope is Scope.DEVICE:
            return [entity_id]
        return list(self.space_devices.get(entity_id, ()))


def _shape(action: dict, kind: Kind) -> dict:
    if kind is Kind.TYPED_ACTION:
        return {k: v for k, v in action.items() if k != "type"}
    return dict(action)


def fan_out_action(topic: str, action: dict, directory: Directory) -> list[tuple[str, dict]]:
    """The topics and payloads the cloud derives from a valid ``action`` published on ``topic``."""
    source = parse_topic(topic)
    if source.kind is not Kind.ACTION or source.scope not in FAN_OUT:
        raise TopicError(f"{topic} is not a topic actions are published on")
    action_type = action["type"]
    rules = FAN_OUT[source.scope]
    out: list[tuple[str, dict]] = []
    for rule in rules:
        if not rule.per_device:
            param = action_type if rule.kind is Kind.TYPED_ACTION else None
            out.append(
                (build_topic(rule.scope, source.id, rule.kind, param), _shape(action, rule.kind))
            )
    for device_id in directory.devices(source.scope, source.id):
        retargeted = {**action, "target_type": "device", "target_id": str(device_id)}
        building_id = directory.device_building.get(device_id)
        for rule in rules:
            if not rule.per_device:
                continue
            target = device_id if rule.scope is Scope.DEVICE else building_id
            if target is None:
                continue  # a device no inventory places in a building
            param = action_type if rule.kind is Kind.TYPED_ACTION else None
            out.append(
                (build_topic(rule.scope, target, rule.kind, param), _shape(retargeted, rule.kind))
            )
    return out


def handle_action(
    topic: str, payload: bytes, directory: Directory, *, max_bytes: int = payloads.MAX_PAYLOAD_BYTES
) -> list[Message]:
    """Validate an action published on ``topic`` and fan it out; invalid ones are logged."""
    try:
        parsed = parse_topic(topic)
    except TopicError as exc:
        logger.warning("dropped an action on %r: %s", topic[:200], exc)
        return []
    if parsed.kind is not Kind.ACTION or parsed.scope not in FAN_OUT:
        logger.warning("dropped a publish on %s: not a topic clients act on", topic)
        return []
    result = payloads.parse(Kind.ACTION, payload, max_bytes=max_bytes)
    if isinstance(result, Malformed):
        logger.warning("dropped an invalid action on %s: %s", parsed, result.reason)
        return []
    return [(t, encode(data)) for t, data in fan_out_action(topic, result.data, directory)]


# --- the cloud, minus the network ------------------------------------------------------------


class EchoFilter:
    """Recognises the broker's copies of the emulator's own publishes on topics it reads."""

    def __init__(self, seconds: float = ECHO_SECONDS, limit: int = ECHO_LIMIT) -> None:
        self.seconds = seconds
        self.limit = limit
        self._pending: dict[Message, collections.deque[float]] = {}  # send times, oldest first
        self._order: collections.deque[tuple[float, Message]] = collections.deque()
        self._lock = threading.Lock()

    def remember(self, topic: str, payload: bytes) -> None:
        now = time.monotonic()
        with self._lock:
            self._expire(now - self.seconds)
            key = (topic, bytes(payload))
            self._pending.setdefault(key, collections.deque()).append(now)
            self._order.append((now, key))
            if len(self._order) > self.limit:
                self._expire(self._order[0][0])

    def is_echo(self, topic: str, payload: bytes) -> bool:
        """True (once per remembered publish) for a copy of one of our own messages."""
        with self._lock:
            self._expire(time.monotonic() - self.seconds)
            key = (topic, bytes(payload))
            sent = self._pending.get(key)
            if not sent:
                return False
            sent.popleft()
            if not sent:
                del self._pending[key]
            return True

    def _expire(self, before: float) -> None:
        """Forget publishes sent at or before ``before`` whose echo never came."""
        while self._order and self._order[0][0] <= before:
            sent_at, key = self._order.popleft()
            sent = self._pending.get(key)
            # An echo already consumed this key's oldest entry, or an earlier one.
            if sent and sent[0] <= sent_at:
                sent.popleft()
                if not sent:
                    del self._pending[key]


def _reads_own_topic(topic: str) -> bool:
    return any(mqtt.topic_matches_sub(f, topic) for f in ACTION_FILTERS)


class Cloud:
    """Routes each received message to ingress or action handling; counts what happened."""

    def __init__(
        self,
        inventories: Iterable[BuildingInventory],
        *,
        max_bytes: int = payloads.MAX_PAYLOAD_BYTES,
    ) -> None:
        self.directory = Directory.of(inventories)
        self.max_bytes = max_bytes
        self.echoes = EchoFilter()
        self.stats: collections.Counter[str] = collections.Counter()

    def handle(self, topic: str, payload: bytes) -> list[Message]:
        """The messages to publish for one received message (echoes of our own: none)."""
        if topic.startswith(INGRESS_PREFIX):
            out = handle_ingress(topic, payload, max_bytes=self.max_bytes)
            if not out:
                self.stats["dropped"] += 1
            elif parse_topic(out[0][0]).kind in REJECTED_KINDS.values():
                self.stats["rejected"] += 1
            else:
                self.stats["accepted"] += 1
        elif self.echoes.is_echo(topic, payload):
            self.stats["echoes"] += 1
            return []
        else:
            out = handle_action(topic, payload, self.directory, max_bytes=self.max_bytes)
            self.stats["actions" if out else "dropped"] += 1
        for out_topic, out_payload in out:
            if _reads_own_topic(out_topic):
                self.echoes.remember(out_topic, out_payload)
        return out


class CloudEmulator:
    """The emulator on a broker: ``await start()``, later ``await stop()``."""

    def __init__(
        self,
        broker: BrokerUrl,
        inventories: list[BuildingInventory],
        *,
        ca_file: str | None = None,
        client_cert: tuple[str, str] | None = None,
        client_id_prefix: str = "gooee-emulator",
        max_bytes: int = payloads.MAX_PAYLOAD_BYTES,
    ) -> None:
        self.broker = broker
        self.cloud = Cloud(inventories, max_bytes=max_bytes)
        self._client = DemoClient(
            broker,
            name=client_id_prefix,
            subscriptions=[INGRESS_FILTER, *ACTION_FILTERS],
            on_message=self._receive,
            ca_file=ca_file,
            client_cert=client_cert,
        )

    @property
    def published(self) -> int:
        """Messages published so far."""
        return self._client.published

    @property
    def stats(self) -> collections.Counter[str]:
        """Received messages by outcome: accepted, rejected, dropped, actions, echoes."""
        return self.cloud.stats

    async def start(self) -> None:
        """Connect and subscribe; returns once the broker acknowledged the subscriptions."""
        await self._client.start()
        logger.info("cloud emulator listening on %s (ingress %s)", self.broker, INGRESS_FILTER)

    async def stop(self) -> None:
        """Disconnect and join the network thread."""
        await self._client.stop()

    def _receive(self, topic: str, payload: bytes) -> None:
        # Runs on the client's network thread; publishing from it is thread-safe in paho.
        for out_topic, out_payload in self.cloud.handle(topic, payload):
            self._client.publish(out_topic, out_payload)
