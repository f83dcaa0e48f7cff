"""Simulated buildings: people coming and going, lamps and sensors reporting, faults raised.

Everything a device would send goes through the emulator's ingress topics, so the emulator
validates it as the cloud would. Lamps obey the actions the emulator fans out to them.
Occupancy follows a working day on a fast clock (07:30 to 19:30 in ``day_minutes``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import itertools
import logging
import math
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from dashboard.bridge.broker_url import BrokerUrl
from dashboard.contract import meta_definitions, payloads
from dashboard.contract.topics import Kind, Scope, TopicError, build_topic, parse_topic
from dashboard.demo.emulator import encode, ingress_topic
from dashboard.demo.inventory import is_sensor
from dashboard.demo.mqtt import DemoClient

if TYPE_CHECKING:
    from dashboard.live.buildings import BuildingInventory

logger = logging.getLogger(__name__)

DAY_START_HOUR = 7.5
DAY_HOURS = 12.0
DAY_STEPS = int(DAY_HOURS * 60)  # the occupancy model moves one simulated minute per step
ACTIONS_FILTER = "devices/+/actions"
MAX_TRANSITION_SECONDS = 300.0
MAX_TRANSITION_STEPS = 10
PUBLISHES_PER_YIELD = 200  # the web server may share our event loop: let it breathe
TICK_SECONDS = 0.25

# --- occupancy -------------------------------------------------------------------------------


class Profile(StrEnum):
    OFFICE = "office"
    MEETING = "meeting"
    RECEPTION = "reception"
    CAFE = "cafe"


# A space's profile from words in its name; anything else is an office.
PROFILE_WORDS: tuple[tuple[str, Profile], ...] = (
    ("cafe", Profile.CAFE),
    ("canteen", Profile.CAFE),
    ("kitchen", Profile.CAFE),
    ("meeting", Profile.MEETING),
    ("board", Profile.MEETING),
    ("conference", Profile.MEETING),
    ("reception", Profile.RECEPTION),
    ("lobby", Profile.RECEPTION),
    ("entrance", Profile.RECEPTION),
)

# Share of capacity present by simulated hour, linear in between. Meeting rooms are driven by
# bookings instead; their curve only says when meetings may start.
CURVES: dict[Profile, tuple[tuple[float, float], ...]] = {
    Profile.OFFICE: (
        (7.5, 0.0), (8.5, 0.35), (9.5, 0.8), (11.5, 0.85), (12.25, 0.55), (13.5, 0.8),
        (16.0, 0.75), (17.5, 0.35), (18.5, 0.08), (19.25, 0.0), (19.5, 0.0),
    ),
    Profile.CAFE: (
        (7.5, 0.05), (8.5, 0.35), (9.5, 0.15), (11.5, 0.2), (12.5, 0.9), (13.5, 0.6),
        (14.5, 0.15), (16.0, 0.25), (17.0, 0.1), (19.0, 0.0), (19.5, 0.0),
    ),
    Profile.RECEPTION: (
        (7.5, 0.05), (8.5, 0.6), (9.5, 0.35), (12.5, 0.3), (16.5, 0.3), (17.5, 0.5),
        (18.5, 0.1), (19.25, 0.0), (19.5, 0.0),
    ),
    Profile.MEETING: ((7.5, 0.0), (8.5, 1.0), (17.5, 1.0), (17.51, 0.0), (19.5, 0.0)),
}  # fmt: skip
APPROACH = {  # share of the gap to the target closed per simulated minute
    Profile.OFFICE: 0.15,
    Profile.CAFE: 0.3,
    Profile.RECEPTION: 0.4,
    Profile.MEETING: 0.6,
}
MEETING_START_CHANCE = 1 / 40  # per free simulated minute
MEETING_MINUTES = (30, 45, 60, 90)
DEFAULT_SPACE_CAPACITY = 20
DEFAULT_AREA_CAPACITY = 8
OVERFLOW = 1.1  # a busy space may run a little over its capacity, never far
CHURN_CHANCE = 0.15  # per minute: a few people leave and as many arrive


def profile_for(name: str) -> Profile:
    lowered = name.lower()
    return next((p for word, p in PROFILE_WORDS if word in lowered), Profile.OFFICE)


def curve_at(profile: Profile, hour: float) -> float:
    """The profile's share of capacity present at a simulated hour."""
    points = CURVES[profile]
    if hour <= points[0][0]:
        return points[0][1]
    for (h0, v0), (h1, v1) in itertools.pairwise(points):
        if hour <= h1:
            return v0 + (v1 - v0) * (hour - h0) / (h1 - h0)
    return points[-1][1]


@dataclass
class Count:
    """People counted in and out since the simulated day began."""

    capacity: int
    entered: int = 0
    left: int = 0

    @property
    def head(self) -> int:
        return self.entered - self.left

    def move_to(self, target: int, churn: int = 0) -> None:
        head = self.head
        if target > head:
            self.entered += target - head
        else:
            self.left += head - target
        churn = min(churn, max(target, 0))  # only people present can leave
        self.entered += churn
        self.left += churn


@dataclass(frozen=True)
class Reading:
    scope: Scope
    id: uuid.UUID
    head_count: int
    headcount_in: int
    headcount_out: int


class Occupancy:
    """One building's people, advanced a simulated minute at a time; deterministic per rng."""

    def __init__(self, inventory: BuildingInventory, rng: random.Random) -> None:
        self.building_id = inventory.id
        self.rng = rng
        self.day = 0
        self.minute = 0  # since DAY_START_HOUR
        self.spaces = {
            sid: Count(s.capacity or DEFAULT_SPACE_CAPACITY) for sid, s in inventory.spaces.items()
        }
        self.profiles = {sid: profile_for(s.name) for sid, s in inventory.spaces.items()}
        self.noise = dict.fromkeys(self.spaces, 0.0)
        self.meetings: dict[uuid.UUID, tuple[int, int]] = {}  # space -> (until minute, size)
        self.areas = {
            aid: Count(a.capacity or DEFAULT_AREA_CAPACITY) for aid, a in inventory.areas.items()
        }
        self.area_space = {
            aid: a.space_id if a.space_id in self.spaces else None
            for aid, a in inventory.areas.items()
        }

    @property
    def hour(self) -> float:
        return DAY_START_HOUR + self.minute / 60

    @property
    def total_minutes(self) -> int:
        return self.day * DAY_STEPS + self.minute

    def step(self) -> None:
        """Advance one simulated minute; a new day starts with every count at zero."""
        self.minute += 1
        if self.minute >= DAY_STEPS:
            self.day += 1
            self.minute = 0
            for count in itertools.chain(self.spaces.values(), self.areas.values()):
                count.entered = count.left = 0
            self.meetings.clear()
            return  # 07:30 of a new day: nobody in yet, as when the simulation began
        for space_id, count in self.spaces.items():
            self._step_space(space_id, count)
        for area_id, count in self.areas.items():
            self._step_area(area_id, count)

    def _churn(self, head: int, chance: float = CHURN_CHANCE) -> int:
        if head <= 0 or self.rng.random() >= chance:
            return 0
        return self.rng.randint(1, max(1, head // 10))

    def _space_target(self, space_id: uuid.UUID, count: Count) -> int:
        profile = self.profiles[space_id]
        if profile is Profile.MEETING:
            until, size = self.meetings.get(space_id, (0, 0))
            if self.minute < until:
                return size
            may_start = curve_at(profile, self.hour) > 0
            if may_start and self.rng.random() < MEETING_START_CHANCE:
                size = self.rng.randint(max(1, count.capacity // 3), max(1, count.capacity))
                self.meetings[space_id] = (self.minute + self.rng.choice(MEETING_MINUTES), size)
                return size
            return 0
        noise = self.noise[space_id] + self.rng.gauss(0, 0.02)
        self.noise[space_id] = noise = min(0.12, max(-0.12, noise))
        target = round(count.capacity * curve_at(profile, self.hour) * (1 + noise))
        return max(0, min(target, math.floor(count.capacity * OVERFLOW)))

    def _step_space(self, space_id: uuid.UUID, count: Count) -> None:
        target = self._space_target(space_id, count)
        gap = target - count.head
        move = math.ceil(abs(gap) * APPROACH[self.profiles[space_id]])
        count.move_to(count.head + int(math.copysign(move, gap)), self._churn(count.head))

    def _step_area(self, area_id: uuid.UUID, count: Count) -> None:
        space_id = self.area_space[area_id]
        if space_id is None:  # an area on its own: an office-like space of its own
            target = round(count.capacity * curve_at(Profile.OFFICE, self.hour))
        else:
            space = self.spaces[space_id]
            share = min(1.0, 1.2 * count.capacity / max(1, space.capacity))
            target = min(round(space.head * share), space.head)
        target = max(0, min(target, count.capacity))
        count.move_to(target, self._churn(min(count.head, target), CHURN_CHANCE / 2))

    def readings(self) -> list[Reading]:
        """Counts of every space and area, and the building's (the sum of its spaces)."""
        result = [
            Reading(Scope.SPACE, sid, c.head, c.entered, c.left) for sid, c in self.spaces.items()
        ]
        result += [
            Reading(Scope.AREA, aid, c.head, c.entered, c.left) for aid, c in self.areas.items()
        ]
        entered = sum(c.entered for c in self.spaces.values())
        left = sum(c.left for c in self.spaces.values())
        result.append(Reading(Scope.BUILDING, self.building_id, entered - left, entered, left))
        return result


HEADCOUNT_TOPICS = (  # (kind, payload name): the contract's examples name head_count "headcount"
    (Kind.HEAD_COUNT, "headcount"),
    (Kind.HEADCOUNT_IN, "headcount_in"),
    (Kind.HEADCOUNT_OUT, "headcount_out"),
)


def headcount_messages(reading: Reading) -> list[tuple[str, dict]]:
    """The three headcount topics of one reading, with their payloads."""
    values = (reading.head_count, reading.headcount_in, reading.headcount_out)
    return [
        (build_topic(reading.scope, reading.id, kind), {"name": name, "value": value})
        for (kind, name), value in zip(HEADCOUNT_TOPICS, values, strict=True)
    ]


# --- devices ---------------------------------------------------------------------------------


def timestamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def meta_item(name: str, value: Any, when: str) -> dict:
    """One meta item, named and unit-labelled as the cloud defines ``name``."""
    item: dict[str, Any] = {"name": name, "value": value, "timestamp": when}
    definition = meta_definitions.meta_definition(name)
    if definition is not None:
        item["display_name"] = definition.display_name
        if definition.unit:
            item["unit_of_measure"] = definition.unit
    return item


LAMP_WATTS = (24, 32, 36, 40, 54)
LAMP_LEVELS = (60, 70, 80, 100)
STANDBY_WATTS = 0.4


@dataclass
class Lamp:
    id: uuid.UUID
    building_id: uuid.UUID
    space_id: uuid.UUID | None
    rated_watts: int
    level: int
    on: bool = True
    last_level: int = 100
    transition: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def watts(self) -> float:
        if not self.on or self.level <= 0:
            return STANDBY_WATTS
        return STANDBY_WATTS + self.rated_watts * self.level / 100

    def items(self, when: str) -> list[dict]:
        # The cloud defines "power" in kW.
        return [
            meta_item("dim", self.level, when),
            meta_item("power", round(self.watts / 1000, 4), when),
            meta_item("onoff", self.on, when),
        ]


@dataclass
class Sensor:
    id: uuid.UUID
    building_id: uuid.UUID
    space_id: uuid.UUID | None
    temperature: float
    window: float  # daylight reaching it at noon, in lux


def daylight(hour: float) -> float:
    """Share of noon daylight at a simulated hour (sunrise 06:00, sunset 20:00)."""
    return max(0.0, math.sin(math.pi * (hour - 6.0) / 14.0))


# Invalid publishes the cloud must refuse, one builder per way of being wrong.
InvalidBuilder = Callable[[str], bytes]
INVALID_META: tuple[InvalidBuilder, ...] = (
    lambda when: encode(
        [{"name": "Meta_New", "display_name": "Meta New", "unit_of_measure": "Meters", "value": 10}]
    ),
    lambda when: encode([{"name": "DimLevel", "value": 50, "timestamp": when}]),
    lambda when: encode([meta_item("dim", 140, when)]),
    lambda when: encode([meta_item("als", -20, when)]),
    lambda when: encode([meta_item("onoff", "on", when)]),
    lambda when: b'[{"name": "dim", "value": 5',
)


@dataclass(frozen=True)
class Fault:
    type: str
    level: str
    priority: int
    description: str
    value: dict[str, tuple[int, int]]  # name -> range of the reported number
    names_device: bool = True


DEVICE_FAULTS: tuple[Fault, ...] = (
    Fault("lamp_failure", "critical", 255, "Lamp failure detected.", {"burn_hours": (8000, 50000)}),
    Fault("high_temperature", "warning", 128, "Driver temperature is above 75°C.", {"temp": (76, 95)}),
    Fault("driver_fault", "error", 200, "The LED driver reports a fault.", {"code": (1, 40)}),
    Fault("low_voltage", "warning", 100, "Supply voltage is below 207 V.", {"voltage": (180, 206)}),
    Fault("communication_lost", "error", 180, "The device missed its last reports.", {"missed_reports": (3, 12)}),
    Fault("firmware_outdated", "info", 10, "A firmware update is available.", {"behind": (1, 4)}),
)  # fmt: skip
BUILDING_FAULTS: tuple[Fault, ...] = (
    Fault("gateway_offline", "error", 200, "A gateway stopped reporting.", {"minutes": (1, 30)}, False),
    Fault("emergency_test_due", "info", 20, "The emergency lighting test is due.", {"days_overdue": (1, 30)}, False),
    Fault("high_temperature", "warning", 128, "Temperature is above 27°C.", {"temp": (28, 35)}),
)  # fmt: skip
DEVICE_ALARM_SHARE = 0.75
INVALID_ALARM: tuple[Callable[[dict], dict], ...] = (
    lambda alarm: {**alarm, "priority": 300},
    lambda alarm: {**alarm, "level": "Critical"},
    lambda alarm: {k: v for k, v in alarm.items() if k != "type"},
)


class SimClock:
    """Real seconds to simulated minutes: a working day passes in ``day_minutes``."""

    def __init__(self, day_minutes: float) -> None:
        self.minutes_per_second = DAY_STEPS / (day_minutes * 60)

    def minutes(self, elapsed_seconds: float) -> int:
        return int(elapsed_seconds * self.minutes_per_second)


class BuildingSimulator:
    """Plays the devices and people of ``inventories``: ``await start()``, ``await stop()``.

    ``rate``: device meta messages per second across all devices. ``invalid_fraction``: share
    of meta and fault alarm publishes made invalid on purpose. ``alarm_interval``: mean
    seconds between fault alarms per building.
    """

    def __init__(
        self,
        broker: BrokerUrl,
        inventories: list[BuildingInventory],
        *,
        seed: int = 1,
        rate: float = 2.0,
        invalid_fraction: float = 0.02,
        day_minutes: float = 20.0,
        alarm_interval: float = 90.0,
        headcount_interval: float = 2.0,
        refresh_interval: float = 30.0,
        ca_file: str | None = None,
        client_cert: tuple[str, str] | None = None,
        client_id_prefix: str = "gooee-simulator",
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        if not 0 <= invalid_fraction <= 1:
            raise ValueError("invalid_fraction must be between 0 and 1")
        if day_minutes <= 0 or alarm_interval <= 0 or headcount_interval <= 0:
            raise ValueError("day_minutes, alarm_interval and headcount_interval must be > 0")
        self.broker = broker
        self.inventories = list(inventories)
        self.rate = rate
        self.invalid_fraction = invalid_fraction
        self.alarm_interval = alarm_interval
        self.headcount_interval = headcount_interval
        self.refresh_interval = refresh_interval
        self.clock = SimClock(day_minutes)
        self.stats: collections.Counter[str] = collections.Counter()
        # Separate generators: occupancy per building stays the same whatever devices do.
        self.occupancy = [
            Occupancy(inv, random.Random(f"{seed}:occupancy:{inv.id}")) for inv in self.inventories
        ]
        self.rng = random.Random(f"{seed}:devices")
        self._occupancy_of = {o.building_id: o for o in self.occupancy}
        self.lamps: dict[uuid.UUID, Lamp] = {}
        self.sensors: dict[uuid.UUID, Sensor] = {}
        self._space_lamps: dict[uuid.UUID, list[Lamp]] = collections.defaultdict(list)
        self._building_devices: dict[uuid.UUID, list[uuid.UUID]] = collections.defaultdict(list)
        self._make_devices()
        self._last_headcounts: dict[str, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._client = DemoClient(
            broker,
            name=client_id_prefix,
            subscriptions=[ACTIONS_FILTER],
            on_message=self._receive,
            ca_file=ca_file,
            client_cert=client_cert,
        )

    def _make_devices(self) -> None:
        for inventory in self.inventories:
            space_levels: dict[uuid.UUID | None, int] = {
                sid: self.rng.choice(LAMP_LEVELS) for sid in inventory.spaces
            }
            for device in inventory.devices.values():
                self._building_devices[inventory.id].append(device.id)
                if is_sensor(device.name):
                    self.sensors[device.id] = Sensor(
                        device.id,
                        inventory.id,
                        device.space_id,
                        temperature=round(self.rng.uniform(20.5, 22.5), 2),
                        window=self.rng.choice((150.0, 300.0, 500.0)),
                    )
                else:
                    level = space_levels.get(device.space_id, 80)
                    lamp = Lamp(
                        device.id,
                        inventory.id,
                        device.space_id,
                        rated_watts=self.rng.choice(LAMP_WATTS),
                        level=level,
                        last_level=level,
                    )
                    self.lamps[device.id] = lamp
                    if device.space_id is not None:
                        self._space_lamps[device.space_id].append(lamp)

    # --- public ---------------------------------------------------------------------------

    @property
    def published(self) -> int:
        """Messages published so far."""
        return self._client.published

    async def start(self) -> None:
        """Connect and subscribe to the actions, then start simulating."""
        self._loop = asyncio.get_running_loop()
        await self._client.start()
        self._task = asyncio.create_task(self._run(), name="building-simulator")
        logger.info(
            "simulating %s: %d lamps, %d sensors at %g meta/s",
            ", ".join(inventory.name for inventory in self.inventories),
            len(self.lamps),
            len(self.sensors),
            self.rate,
        )

    async def stop(self) -> None:
        """Stop simulating, disconnect and join the network thread."""
        tasks = [lamp.transition for lamp in self.lamps.values() if lamp.transition is not None]
        if self._task is not None:
            tasks.append(self._task)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._task = None
        await self._client.stop()

    # --- the loop -------------------------------------------------------------------------

    def _publish(self, topic: str, payload: bytes, what: str) -> None:
        if self._client.publish(ingress_topic(topic), payload):
            self.stats[what] += 1

    async def _run(self) -> None:
        try:
            await self._simulate()
        except Exception:
            # Logged here: nobody awaits this task until stop(), which must stay clean.
            logger.exception("the building simulator stopped")

    async def _simulate(self) -> None:
        loop = asyncio.get_running_loop()
        began = loop.time()
        devices = list(itertools.chain(self.lamps, self.sensors))
        period = len(devices) / self.rate
        due: list[tuple[float, int, uuid.UUID]] = [
            (began + self.rng.uniform(0, period), i, d) for i, d in enumerate(devices)
        ]
        heapq.heapify(due)
        sequence = itertools.count(len(due))
        next_headcount = began
        next_refresh = began + self.refresh_interval
        next_alarm = [began + self.rng.expovariate(1 / self.alarm_interval) for _ in self.occupancy]
        while True:
            now = loop.time()
            if now >= next_headcount:
                refresh = now >= next_refresh
                self._advance(now - began)
                self._publish_headcounts(refresh)
                next_headcount = now + self.headcount_interval
                if refresh:
                    next_refresh = now + self.refresh_interval
            for index, at in enumerate(next_alarm):
                if now >= at:
                    self._publish_alarm(self.occupancy[index].building_id)
                    next_alarm[index] = now + self.rng.expovariate(1 / self.alarm_interval)
            sent = 0
            while due and due[0][0] <= now:
                at, _, device_id = heapq.heappop(due)
                self._publish_meta(device_id)
                # From the previous due time, so a late tick does not lower the rate.
                heapq.heappush(
                    due, (at + period * self.rng.uniform(0.5, 1.5), next(sequence), device_id)
                )
                sent += 1
                if sent % PUBLISHES_PER_YIELD == 0:
                    await asyncio.sleep(0)
                    now = loop.time()
            wake = min(next_headcount, *next_alarm, due[0][0] if due else math.inf)
            await asyncio.sleep(min(TICK_SECONDS, max(0.0, wake - loop.time())))

    def _advance(self, elapsed: float) -> None:
        target = self.clock.minutes(elapsed)
        for occupancy in self.occupancy:
            # Bounded: a stalled loop skips ahead rather than replaying days.
            steps = min(target - occupancy.total_minutes, DAY_STEPS)
            for _ in range(max(0, steps)):
                occupancy.step()

    def _publish_headcounts(self, refresh: bool) -> None:
        for occupancy in self.occupancy:
            for reading in occupancy.readings():
                for topic, payload in headcount_messages(reading):
                    value = payload["value"]
                    if refresh or self._last_headcounts.get(topic) != value:
                        self._last_headcounts[topic] = value
                        self._publish(topic, encode(payload), "headcount")

    def _publish_meta(self, device_id: uuid.UUID) -> None:
        topic = build_topic(Scope.DEVICE, device_id, Kind.META)
        when = timestamp()
        if self.rng.random() < self.invalid_fraction:
            self._publish(topic, self.rng.choice(INVALID_META)(when), "invalid")
            return
        lamp = self.lamps.get(device_id)
        items = lamp.items(when) if lamp is not None else self._sensor_items(device_id, when)
        self._publish(topic, encode(items), "meta")

    def _sensor_items(self, device_id: uuid.UUID, when: str) -> list[dict]:
        sensor = self.sensors[device_id]
        occupancy = self._occupancy_of[sensor.building_id]
        count = occupancy.spaces.get(sensor.space_id) if sensor.space_id else None
        busy = count.head / max(1, count.capacity) if count is not None else 0.0
        # Drifts, pulled towards a comfort point warmed by people and the afternoon sun.
        goal = 20.5 + 2.0 * min(busy, 1.0) + 1.0 * daylight(occupancy.hour)
        sensor.temperature += 0.2 * (goal - sensor.temperature) + self.rng.gauss(0, 0.05)
        sensor.temperature = round(min(26.0, max(18.0, sensor.temperature)), 2)
        lamps = [
            lamp.level if lamp.on else 0
            for lamp in (self._space_lamps.get(sensor.space_id, []) if sensor.space_id else [])
        ]
        artificial = 5.0 * sum(lamps) / len(lamps) if lamps else 0.0  # ~500 lux at full
        lux = sensor.window * daylight(occupancy.hour) + artificial + self.rng.gauss(0, 5)
        return [
            meta_item("temperature", sensor.temperature, when),
            meta_item("als", max(0, min(20000, round(lux))), when),
        ]

    def _publish_alarm(self, building_id: uuid.UUID) -> None:
        device_ids = self._building_devices.get(building_id, [])
        on_device = bool(device_ids) and self.rng.random() < DEVICE_ALARM_SHARE
        fault = self.rng.choice(DEVICE_FAULTS if on_device else BUILDING_FAULTS)
        alarm: dict[str, Any] = {
            "timestamp": timestamp(),
            "priority": fault.priority,
            "level": fault.level,
            "type": fault.type,
        }
        device_id = self.rng.choice(device_ids) if device_ids else None
        if on_device:
            alarm = {"id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)), **alarm}
        if device_id is not None and (on_device or fault.names_device):
            alarm["device"] = str(device_id)
        alarm["notes"] = "Raised by the demo's building simulator."
        alarm["value"] = {k: self.rng.randint(*bounds) for k, bounds in fault.value.items()}
        alarm["description"] = fault.description
        invalid = self.rng.random() < self.invalid_fraction
        if invalid:
            alarm = self.rng.choice(INVALID_ALARM)(alarm)
        # on_device implies a device_id: it was drawn from a non-empty list.
        if on_device and device_id is not None:
            scope, entity = Scope.DEVICE, device_id
        else:
            scope, entity = Scope.BUILDING, building_id
        self._publish(
            build_topic(scope, entity, Kind.FAULT_ALARM),
            encode(alarm),
            "invalid" if invalid else "fault_alarm",
        )

    # --- actions --------------------------------------------------------------------------

    def _receive(self, topic: str, payload: bytes) -> None:
        # The network thread hands actions to the event loop, where all state lives.
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closing
                self._loop.call_soon_threadsafe(self._on_action, topic, bytes(payload))

    def _on_action(self, topic: str, payload: bytes) -> None:
        try:
            parsed = parse_topic(topic)
        except TopicError:
            return
        lamp = self.lamps.get(parsed.id) if parsed.scope is Scope.DEVICE else None
        if lamp is None or parsed.kind is not Kind.ACTION:
            return  # only lamps obey, and only their own actions topic
        result = payloads.parse(Kind.ACTION, payload)
        if isinstance(result, payloads.Malformed):
            logger.debug("lamp %s ignored an invalid action: %s", lamp.id, result.reason)
            return
        action = result.data
        value = action.get("value") or {}
        if action["type"] == "dim":
            level = round(value["level"])
            on = level > 0
        elif action["type"] == "off":
            level, on = 0, False
        elif action["type"] == "on":
            level, on = lamp.last_level or 100, True
        else:
            return
        seconds = min(float(value.get("transition_time") or 0), MAX_TRANSITION_SECONDS)
        self.stats["actions"] += 1
        if lamp.transition is not None:
            lamp.transition.cancel()
        lamp.transition = asyncio.create_task(self._transition(lamp, level, on, seconds))

    async def _transition(self, lamp: Lamp, level: int, on: bool, seconds: float) -> None:
        """Move the lamp to ``level`` over ``seconds``, reporting each step as a lamp would."""
        start = lamp.level
        steps = max(1, min(MAX_TRANSITION_STEPS, math.ceil(seconds)))
        for step in range(1, steps):
            await asyncio.sleep(seconds / steps)
            lamp.level = round(start + (level - start) * step / steps)
            lamp.on = lamp.on or on
            self._publish_lamp(lamp)
        if seconds > 0:
            await asyncio.sleep(seconds / steps)
        lamp.level, lamp.on = level, on
        if level > 0:
            lamp.last_level = level
        self._publish_lamp(lamp)
        lamp.transition = None

    def _publish_lamp(self, lamp: Lamp) -> None:
        topic = build_topic(Scope.DEVICE, lamp.id, Kind.META)
        self._publish(topic, encode(lamp.items(timestamp())), "action_meta")
