"""Hostile input: whatever a building's devices publish, the bridge counts it and carries on.

Every byte from MQTT is untrusted. First the pure functions, property-based: for every topic
kind the bridge subscribes to, arbitrary bytes, arbitrary JSON and the contract's own examples
with one field of an unexpected type go through ``ingest`` (parse, validate, live state), then
every tile it changed is rendered and every record it made is checked as the database would
take it. Each message must come out accepted (or a valid rejection, or a duplicate) or
malformed, counted exactly once, and nothing may raise.

Then a running bridge is fuzzed through a real Mosquitto: random bytes, invalid UTF-8, nesting
bombs, 1 MB and 10 MB payloads, non-finite and endless numbers, huge arrays and strings, a wrong
type in every field of every payload kind, duplicate keys, BOMs and overlong topic segments,
interleaved with a control lamp whose value must keep arriving. The seed is fixed and printed;
``FUZZ_SEED=<seed> pytest tests/test_fuzz.py`` replays a run, another seed explores further.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import functools
import gc
import json
import logging
import os
import random
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from dashboard.bridge.ingest import ingest
from dashboard.bridge.session import SessionConfig
from dashboard.contract import payloads, rejected_data, rejections
from dashboard.contract.topics import SUBSCRIPTIONS, Kind, Scope, build_topic
from dashboard.live import fragments, tiles
from dashboard.live.buildings import BuildingInventory, Entity
from dashboard.live.state import LiveState, Rejection
from tests import seed
from tests.bridging import config_for, subscribed, until

SEED = int(os.environ.get("FUZZ_SEED", "20240917"))

# What ingest counts per message. "rejected" is an accepted message too: a valid envelope of
# the cloud's refusal; "duplicate" is a QoS 1 redelivery of an alarm or action already seen.
ACCEPTED = ("accepted", "rejected", "duplicate")
OUTCOMES = (*ACCEPTED, "malformed", "unknown")

SUBSCRIBED: list[tuple[Scope, Kind]] = [
    (scope, kind) for scope, kinds in SUBSCRIPTIONS.items() for kind in kinds
]
EXAMPLES: dict[tuple[Scope, Kind], Any] = {
    (scope, kind): payload for scope, kind, param, payload in seed.EXAMPLES if param is None
}
RAW_BOUND = payloads.RAW_PREVIEW_BYTES + 40  # a malformed message's kept copy, with its note
KEPT_BOUND = rejected_data.MAX_KEPT_CHARS + 8 * 1024  # a rejection's data or context, with notes

MB = 1 << 20


def counted(state: LiveState) -> int:
    """Messages ingest has counted, whatever the outcome."""
    return sum(state.counters[outcome] for outcome in OUTCOMES)


def announce(what: str) -> None:
    print(f"\n{what}: seed {SEED} (replay with FUZZ_SEED={SEED})")


# --- the building of the story, without a database or a broker --------------------------------


@dataclass
class Headquarters:
    """A building with a space, an area and a lamp, and what the bridge would do with them."""

    inventory: BuildingInventory
    state: LiveState
    ids: dict[Scope, uuid.UUID]
    dirty: dict[tiles.Tile, None] = field(default_factory=dict)
    records: list[object] = field(default_factory=list)

    @classmethod
    def build(cls) -> Headquarters:
        building, space, area, lamp = (uuid.uuid4() for _ in range(4))
        inventory = BuildingInventory(
            building,
            "Headquarters",
            1,
            spaces={space: Entity(space, "Open Office", capacity=40)},
            areas={area: Entity(area, "Lobby", space, 10)},
            devices={lamp: Entity(lamp, "Lamp 1", space)},
        )
        ids = {Scope.BUILDING: building, Scope.SPACE: space, Scope.AREA: area, Scope.DEVICE: lamp}
        return cls(inventory, LiveState(building), ids)

    def topic(self, scope: Scope, kind: Kind) -> str:
        return build_topic(scope, self.ids[scope], kind)

    # The ingest sink, as the bridge's: tiles to render, records for history.
    def changed(self, tile: tiles.Tile) -> None:
        self.dirty[tile] = None

    def record(self, record: object) -> None:
        self.records.append(record)
        if isinstance(record, Rejection):
            self.state.new_rejections.appendleft(record)
            self.dirty[tiles.REJECTED_NEW] = None

    def receive(
        self, topic: str, raw: bytes, *, max_bytes: int = payloads.MAX_PAYLOAD_BYTES
    ) -> str:
        """One message end to end: ingested, counted once, shown, and fit to be stored."""
        before = counted(self.state)
        by_outcome = dict(self.state.counters)
        outcome = ingest(
            self.state, self.inventory, topic, raw, datetime.now(UTC), self, max_bytes=max_bytes
        )
        assert outcome in OUTCOMES
        assert counted(self.state) == before + 1
        assert self.state.counters[outcome] == by_outcome.get(outcome, 0) + 1
        if outcome == "malformed":
            refused = self.state.malformed[0]
            assert refused.reason and len(refused.raw) <= RAW_BOUND and len(refused.topic) <= 300
        for tile in self.dirty:
            fragments.render_tile(tile, self.state, self.inventory)
        self.dirty.clear()
        for record in self.records:
            assert_storable(record)
        self.records.clear()
        return outcome


def assert_storable(record: object) -> None:
    """As a PostgreSQL JSON column takes it: no NaN or infinity, no lone surrogate."""
    text = json.dumps(dataclasses.asdict(record), allow_nan=False, default=str, ensure_ascii=False)
    text.encode("utf-8")
    if isinstance(record, Rejection):
        for kept in (record.data, record.context):
            assert len(json.dumps(kept, ensure_ascii=False)) <= KEPT_BOUND


# --- what a hostile device may send -----------------------------------------------------------

HUGE_INT = 10**4000  # within Python's 4300-digit conversion limit, so json.dumps writes it
TEXT = st.text(max_size=40) | st.sampled_from(["", "\x00", "\ud800", "a\udfffb", "\ufeff", "~"])
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([HUGE_INT, -HUGE_INT, 2**63, -(2**63) - 1, -0.0, 1e308, 5e-324])
    | st.floats(allow_nan=True, allow_infinity=True)
    | TEXT
)
JSON = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=6) | st.dictionaries(TEXT, children, max_size=6),
    max_leaves=30,
)
UNEXPECTED = JSON | st.sampled_from(
    [[], {}, "x" * 5000, " " * 5000, [[[[[[[[[[[[]]]]]]]]]]]], {"name": "headcount"}]
)
FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def dumps(value: Any) -> bytes:
    """JSON as a careless device writes it: NaN and Infinity literals, lone surrogates escaped."""
    return json.dumps(value, allow_nan=True).encode()


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place in a payload: the root, each key, each list item, at every depth."""
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from paths(child, (*prefix, index))


def replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    value = copy.deepcopy(value)
    node = value
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = new
    return value


@pytest.mark.parametrize(("scope", "kind"), SUBSCRIBED)
@hypothesis_seed(SEED)
@FUZZ
@given(raw=st.binary(max_size=4096))
def test_any_bytes_on_a_subscribed_topic_are_counted_once_and_never_raise(
    scope: Scope, kind: Kind, raw: bytes
) -> None:
    hq = Headquarters.build()
    hq.receive(hq.topic(scope, kind), raw)


@pytest.mark.parametrize(("scope", "kind"), SUBSCRIBED)
@hypothesis_seed(SEED)
@FUZZ
@given(value=JSON)
def test_any_json_on_a_subscribed_topic_is_counted_once_and_never_raises(
    scope: Scope, kind: Kind, value: Any
) -> None:
    hq = Headquarters.build()
    outcome = hq.receive(hq.topic(scope, kind), dumps(value))
    assert outcome != "unknown"


# Each a type some field of some kind does not expect, or a value at the edge of one.
WRONG_TYPES: list[Any] = [
    None, True, 0, -1, 1.5, -0.0, 1e308, HUGE_INT, "", "x", "\x00", "\ud800", [], {},
    [None] * 3, {"value": {}}, "2016-08-09T20:00:47Z", "x" * 70_000,
]  # fmt: skip


@pytest.mark.parametrize(("scope", "kind"), SUBSCRIBED)
def test_every_field_of_a_contract_example_with_every_unexpected_type_never_raises(
    scope: Scope, kind: Kind
) -> None:
    hq = Headquarters.build()
    topic, example = hq.topic(scope, kind), EXAMPLES[(scope, kind)]
    assert hq.receive(topic, dumps(example)) in ACCEPTED
    for path in paths(example):
        for new in WRONG_TYPES:
            assert hq.receive(topic, dumps(replaced(example, path, new))) != "unknown"


@pytest.mark.parametrize(("scope", "kind"), SUBSCRIBED)
@hypothesis_seed(SEED)
@FUZZ
@given(data=st.data())
def test_a_contract_example_with_one_field_of_any_other_value_never_raises(
    scope: Scope, kind: Kind, data: st.DataObject
) -> None:
    hq = Headquarters.build()
    example = EXAMPLES[(scope, kind)]
    path = data.draw(st.sampled_from(list(paths(example))), label="field")
    new = data.draw(UNEXPECTED, label="value")
    assert hq.receive(hq.topic(scope, kind), dumps(replaced(example, path, new))) != "unknown"


@hypothesis_seed(SEED)
@FUZZ
@given(raw_topic=st.binary(max_size=300), segment=st.text(min_size=1, max_size=300))
def test_hostile_topics_are_counted_malformed(raw_topic: bytes, segment: str) -> None:
    hq = Headquarters.build()
    lamp = hq.ids[Scope.DEVICE]
    for topic in (
        raw_topic.decode("utf-8", "replace"),  # as the session decodes a topic
        f"devices/{lamp}/meta/{segment}",
        f"devices/{lamp}/meta/{'n' * 70_000}",
        f"buildings/{hq.ids[Scope.BUILDING]}/{segment}/meta",
        f"devices/{str(lamp).upper()}/meta",
    ):
        assert hq.receive(topic, dumps(EXAMPLES[(Scope.DEVICE, Kind.META)])) == "malformed"


# --- what fuzzing found, pinned ----------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        "Invalid payload.  Position:a" + " " * 65_000 + "x",  # was 80 s to render
        '"' + '\\"' * 32_000,  # was 27 s
        "Position: " + ". " * 32_000,
    ],
    ids=["spaces-after-position", "escaped-quotes", "dots"],
)
def test_a_rejection_with_a_64k_hostile_message_is_shown_at_once(message: str) -> None:
    hq = Headquarters.build()
    envelope = {"error": {"message": message, "context": {}}, "data": [1]}
    started = time.perf_counter()
    topic = hq.topic(Scope.DEVICE, Kind.REJECTED_META)
    assert hq.receive(topic, dumps(envelope)) == "rejected"
    rejections.signature(Kind.REJECTED_META, message)  # as the history writer groups it
    assert time.perf_counter() - started < 2.0


def test_a_rejection_echoing_megabytes_keeps_a_bounded_copy_that_says_so() -> None:
    hq = Headquarters.build()
    topic = hq.topic(Scope.BUILDING, Kind.REJECTED_FAULT_ALARM)
    huge = {
        "error": {"message": "Invalid payload.", "context": {"pattern": "x" * MB}},
        "data": [{"name": "temperature", "value": n} for n in range(200_000)],
    }
    raw = dumps(huge)
    assert len(raw) > 5 * MB
    assert hq.receive(topic, raw, max_bytes=16 * MB) == "rejected"
    kept = hq.state.rejections[0]
    assert kept.data[:2] == huge["data"][:2]
    assert kept.data[-1].startswith("… (truncated: ") and kept.data[-1].endswith(" more items)")
    assert kept.context["pattern"].endswith(f"… (truncated: {MB} characters)")
    assert_storable(kept)


def test_a_headcount_written_as_a_float_shows_as_the_whole_number_the_database_keeps() -> None:
    hq = Headquarters.build()
    space = hq.ids[Scope.SPACE]
    raw = b'{"name": "headcount", "value": 1E+1}'
    assert hq.receive(hq.topic(Scope.SPACE, Kind.HEAD_COUNT), raw) == "accepted"
    count = hq.state.headcounts[(space, Kind.HEAD_COUNT)].value
    assert (count, type(count)) == (10, int)  # not 10.0 live and 10 after a reload
    html = fragments.render_tile(tiles.headcount(space), hq.state, hq.inventory)
    assert '<span class="head-count">10</span>' in html
    alarm = {**EXAMPLES[(Scope.BUILDING, Kind.FAULT_ALARM)], "priority": 2.55e2}
    assert hq.receive(hq.topic(Scope.BUILDING, Kind.FAULT_ALARM), dumps(alarm)) == "accepted"
    assert [type(a.priority) for a in hq.state.alarms.values()] == [int]


# --- fuzzing a running bridge through Mosquitto -----------------------------------------------


@dataclass
class Message:
    topic: str
    payload: bytes
    recipe: str
    reaches_bridge: bool = True  # on a topic the bridge subscribes to
    malformed: bool = False  # surely refused; the others may go either way


def hostile_texts(size: int) -> list[str]:
    """Strings of about ``size`` characters that are hard on whatever reads them."""
    return [
        "x" * size,
        "Invalid.  Position:a" + " " * size,  # a rejection message's position, then spaces
        '"' + '\\"' * (size // 2),  # a quote that never closes
        "\u0000" * (size // 6),  # NUL, which PostgreSQL refuses in text (escaped: 6 bytes)
        "\u202e\U0001f600" * (size // 3),
        "\\" * (size // 2),
    ]


class HostileTraffic:
    """Random hostile messages for every subscribed topic of a building, reproducible by seed.

    In every ``SWEEP_EVERY`` messages, at random places: each field of each kind's example gets
    each hostile string and a value of a wrong type. In every ``SPECIALS_EVERY``: the 1 MB and
    10 MB payloads, a nesting bomb, a million-item array, a 1 MB rejection. Every
    ``CONTROL_EVERY``-th message is the control lamp's next value; the rest are drawn from
    ``recipes`` by weight.
    """

    SPECIALS_EVERY = 2_500
    SWEEP_EVERY = 10_000
    SWEEP_SIZE = 60_000  # characters: within the rejection envelope's 65,536 for a message
    CONTROL_EVERY = 10
    CONTROL_NAME = "control_seq"
    SPECIALS = ("one_mb", "ten_mb", "bomb", "long_array", "one_mb_rejection")

    def __init__(self, rng: random.Random, ids: dict[Scope, uuid.UUID], control: uuid.UUID) -> None:
        self.rng = rng
        self.ids = ids
        self.control = control
        self.last_control: int | None = None
        self.recipes: list[tuple[Callable[[Scope, Kind], Message], int]] = [
            (self.random_bytes, 6),
            (self.invalid_utf8, 4),
            (self.valid, 8),
            (self.wrong_type, 30),
            (self.odd_number, 8),
            (self.huge_string, 6),
            (self.duplicate_keys, 4),
            (self.bom, 3),
            (self.too_deep, 3),
            (self.bomb, 1),
            (self.overlong_topic, 2),
        ]

    def messages(self, count: int) -> Iterator[Message]:
        recipes = [recipe for recipe, _ in self.recipes]
        weights = [weight for _, weight in self.recipes]
        planned: dict[int, Callable[[], Message]] = {}
        for number in range(count):
            if number % self.SWEEP_EVERY == 0:
                self.plan(planned, number, min(number + self.SWEEP_EVERY, count), self.sweep())
            if number % self.SPECIALS_EVERY == 0:
                specials = [
                    functools.partial(getattr(self, name), *self.rng.choice(SUBSCRIBED))
                    for name in self.SPECIALS
                ]
                self.plan(planned, number, min(number + self.SPECIALS_EVERY, count), specials)
            if self.is_control(number):
                yield self.control_value(number)
            elif number in planned:
                yield planned.pop(number)()
            else:
                scope, kind = self.rng.choice(SUBSCRIBED)
                yield self.rng.choices(recipes, weights)[0](scope, kind)

    def plan(
        self,
        planned: dict[int, Callable[[], Message]],
        start: int,
        end: int,
        makers: list[Callable[[], Message]],
    ) -> None:
        """Put ``makers`` at random free places in [start, end); as many as there is room for."""
        free = [n for n in range(start, end) if not self.is_control(n) and n not in planned]
        places = self.rng.sample(free, min(len(free), len(makers)))
        for place, maker in zip(places, makers, strict=False):
            planned[place] = maker

    def sweep(self) -> list[Callable[[], Message]]:
        makers: list[Callable[[], Message]] = []
        for scope, kind in SUBSCRIBED:
            for path in paths(self.example(scope, kind)):
                makers.append(functools.partial(self.wrong_type, scope, kind, path))
                for shape in range(len(hostile_texts(0))):
                    makers.append(functools.partial(self.swept_string, scope, kind, path, shape))
        return makers

    def is_control(self, number: int) -> bool:
        return number % self.CONTROL_EVERY == self.CONTROL_EVERY - 1

    def topic(self, scope: Scope, kind: Kind) -> str:
        return build_topic(scope, self.ids[scope], kind)

    def example(self, scope: Scope, kind: Kind) -> Any:
        return EXAMPLES[(scope, kind)]

    def with_raw(self, value: Any, path: tuple[Any, ...], raw: str) -> bytes:
        """The value with the raw JSON text ``raw`` at ``path`` (e.g. a number JSON cannot hold)."""
        marker = f"@@{self.rng.random()}@@"
        return json.dumps(replaced(value, path, marker)).replace(f'"{marker}"', raw).encode()

    def any_path(self, scope: Scope, kind: Kind) -> tuple[Any, ...]:
        return self.rng.choice(list(paths(self.example(scope, kind))))

    # The recipes: (scope, kind) -> Message

    def control_value(self, number: int) -> Message:
        self.last_control = number
        payload = [{"name": self.CONTROL_NAME, "value": number}]
        topic = build_topic(Scope.DEVICE, self.control, Kind.META)
        return Message(topic, json.dumps(payload).encode(), "control")

    def valid(self, scope: Scope, kind: Kind) -> Message:
        return Message(
            self.topic(scope, kind), json.dumps(self.example(scope, kind)).encode(), "valid"
        )

    def random_bytes(self, scope: Scope, kind: Kind) -> Message:
        # Every kind needs an object or a list with required members: no chance of valid.
        raw = self.rng.randbytes(self.rng.randint(0, 4096))
        return Message(self.topic(scope, kind), raw, "random bytes", malformed=True)

    def invalid_utf8(self, scope: Scope, kind: Kind) -> Message:
        raw = json.dumps(self.example(scope, kind)).encode()
        bad = self.rng.choice([b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\x80"])
        at = self.rng.randint(0, len(raw))
        return Message(
            self.topic(scope, kind), raw[:at] + bad + raw[at:], "invalid UTF-8", malformed=True
        )

    def wrong_type(self, scope: Scope, kind: Kind, path: tuple[Any, ...] | None = None) -> Message:
        new = self.rng.choice(
            [None, True, False, 0, -1, 1.5, 2**64, "", "x", "\u0000", [], {}, [1, 2], {"a": 1},
             "9" * 300, -0.0, 1e308, [None] * 50, {"value": {}}, "2016-08-09T20:00:47Z"]
        )  # fmt: skip
        path = self.any_path(scope, kind) if path is None else path
        value = replaced(self.example(scope, kind), path, new)
        return Message(self.topic(scope, kind), json.dumps(value).encode(), "wrong type")

    ENDLESS = ("1e309", "-1e309", "NaN", "Infinity", "-Infinity", "9" * 5000, "-" + "9" * 4400)
    ODD = ("1e-400", "-0", "1E+2", "0.1e1", "10" * 2000, "123456789012345678901234567890")

    def odd_number(self, scope: Scope, kind: Kind) -> Message:
        endless = self.rng.random() < 0.6
        raw = self.rng.choice(self.ENDLESS if endless else self.ODD)
        body = self.with_raw(self.example(scope, kind), self.any_path(scope, kind), raw)
        return Message(self.topic(scope, kind), body, f"number {raw[:12]}", malformed=endless)

    def huge_string(self, scope: Scope, kind: Kind) -> Message:
        size = self.rng.choice([1_000, 65_000, 200_000])
        text = self.rng.choice(hostile_texts(size))
        value = replaced(self.example(scope, kind), self.any_path(scope, kind), text)
        return Message(self.topic(scope, kind), json.dumps(value).encode(), f"string of {size}")

    def swept_string(self, scope: Scope, kind: Kind, path: tuple[Any, ...], shape: int) -> Message:
        text = hostile_texts(self.SWEEP_SIZE)[shape]
        value = replaced(self.example(scope, kind), path, text)
        return Message(self.topic(scope, kind), json.dumps(value).encode(), "swept string")

    def duplicate_keys(self, scope: Scope, kind: Kind) -> Message:
        value = self.example(scope, kind)
        body = json.dumps(value)
        if isinstance(value, dict) and value:
            key = self.rng.choice(list(value))
            again = json.dumps({key: self.rng.choice([None, "x", -5, value[key]])})[1:-1]
            body = body[:-1] + ", " + again + "}"
        return Message(self.topic(scope, kind), body.encode(), "duplicate keys")

    def bom(self, scope: Scope, kind: Kind) -> Message:
        text = json.dumps(self.example(scope, kind))
        raw, refused = self.rng.choice(
            [
                (b"\xef\xbb\xbf" + text.encode(), True),
                (text.encode("utf-16"), True),
                (text.encode("utf-32"), True),
                (text.replace(": ", ": \ufeff", 1).encode(), True),
            ]
        )
        return Message(self.topic(scope, kind), raw, "BOM", malformed=refused)

    def too_deep(self, scope: Scope, kind: Kind) -> Message:
        depth = self.rng.choice([payloads.MAX_DEPTH + 1, 100, 900, 5_000])
        nested = "[" * depth + "]" * depth
        body = self.with_raw(self.example(scope, kind), (), nested)
        return Message(self.topic(scope, kind), body, f"nested {depth}", malformed=True)

    def bomb(self, scope: Scope, kind: Kind) -> Message:
        raw = self.rng.choice([b"[" * 100_000, b'{"a":' * 50_000, b"[" * 100_000 + b"]" * 100_000])
        return Message(self.topic(scope, kind), raw, "nesting bomb", malformed=True)

    def long_array(self, scope: Scope, kind: Kind) -> Message:
        items = self.rng.choice(["0", "{}", '"x"', "[]"])
        body = self.with_raw(
            self.example(scope, kind),
            self.any_path(scope, kind),
            "[" + ",".join([items] * 1_000_000) + "]",
        )
        return Message(self.topic(scope, kind), body, "array of 1e6")

    def one_mb(self, scope: Scope, kind: Kind) -> Message:
        value = replaced(self.example(scope, kind), self.any_path(scope, kind), "m" * MB)
        return Message(self.topic(scope, kind), json.dumps(value).encode(), "1 MB")

    def one_mb_rejection(self, scope: Scope, kind: Kind) -> Message:
        envelope = {
            "error": {"message": "Invalid payload.  Position: [0]/name. Value: 1.", "context": {}},
            "data": [{"name": "n" * 100, "value": n} for n in range(MB // 130)],
        }
        topic = build_topic(Scope.DEVICE, self.ids[Scope.DEVICE], Kind.REJECTED_META)
        return Message(topic, json.dumps(envelope).encode(), "1 MB rejection")

    def ten_mb(self, scope: Scope, kind: Kind) -> Message:
        value = replaced(self.example(scope, kind), self.any_path(scope, kind), "t" * (10 * MB))
        return Message(self.topic(scope, kind), json.dumps(value).encode(), "10 MB", malformed=True)

    def overlong_topic(self, scope: Scope, kind: Kind) -> Message:
        segment = "s" * self.rng.choice([300, 10_000, 60_000])
        lamp, building = self.ids[Scope.DEVICE], self.ids[Scope.BUILDING]
        topic = self.rng.choice(
            [
                f"devices/{lamp}/meta/{segment}",
                f"devices/{lamp}/{segment}",
                f"buildings/{building}/actions/{segment}",
                f"spaces/{segment}/meta/head_count",
            ]
        )
        body = json.dumps(self.example(scope, kind)).encode()
        return Message(topic, body, "overlong topic", reaches_bridge=False)


@pytest.fixture
def control_lamp(hq: dict[Scope, uuid.UUID]) -> uuid.UUID:
    """A second lamp in Headquarters whose valid values are sent between the hostile ones."""
    from dashboard.models import Device

    return Device.objects.create(
        building_id=hq[Scope.BUILDING], space_id=hq[Scope.SPACE], name="Control lamp"
    ).id


FUZZ_MAX_BYTES = 4 * MB  # as raised by MQTT_MAX_PAYLOAD_BYTES: 1 MB gets parsed, 10 MB does not
WINDOW = 200  # messages in flight at most: Mosquitto queues 1000 per client, then drops
DRAIN_TIMEOUT = 60.0
# Traced Python memory above the start, at its peak: a 10 MB message is copied a few times on
# its way in, a 4 MB list of a million empty objects parses into about 100 MB.
PEAK_BOUND = 160 * MB
GROWTH_BOUND = 24 * MB  # traced Python memory kept after the run: live state is bounded
# The bridge's loop serves every building it holds: no message may hold it longer than this
# (with every allocation traced, a 4 MB payload of a million objects takes a few seconds).
HOLD_BOUND = 15.0


@dataclass
class Tally:
    published: int = 0
    reaching: int = 0
    surely_malformed: int = 0
    controls: int = 0
    by_recipe: dict[str, int] = field(default_factory=dict)


def next_window(messages: Iterator[Message]) -> list[Message]:
    """The next messages to send together: ``WINDOW`` of them, or fewer up to 12 MB."""
    window: list[Message] = []
    for message in messages:
        window.append(message)
        if len(window) >= WINDOW or sum(len(m.payload) for m in window) >= 12 * MB:
            break
    return window


class LoopLag:
    """The longest the event loop went without running a 50 ms timer (one message held it)."""

    def __init__(self) -> None:
        self.worst = 0.0

    async def watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.05)
            self.worst = max(self.worst, loop.time() - before - 0.05)


async def publish_window(client: mqtt.Client, window: list[Message]) -> None:
    infos = [client.publish(m.topic, m.payload, qos=1) for m in window]
    await until(lambda: all(info.is_published() for info in infos), 60, "PUBACKs")


@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "count",
    [pytest.param(3_000, id="ci"), pytest.param(100_000, id="soak", marks=pytest.mark.soak)],
)
async def test_a_bridge_fed_hostile_traffic_counts_every_message_and_keeps_the_control_lamp_live(
    count: int,
    hq: dict[Scope, uuid.UUID],
    control_lamp: uuid.UUID,
    running_bridge: Any,
    mqtt_client: Any,
    broker: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    announce(f"fuzzing a bridge with {count} messages")
    caplog.set_level(logging.WARNING)
    building = hq[Scope.BUILDING]
    # The product's keepalive (tests elsewhere use 5 s to see reconnects sooner): tracing
    # every allocation makes a multi-megabyte message hold the loop for seconds.
    config = config_for(broker.url, keepalive=SessionConfig.keepalive)
    bridge = await running_bridge(max_bytes=FUZZ_MAX_BYTES, config=config)
    await subscribed(bridge, building)
    running = bridge.buildings[building]
    state, session = running.state, running.session
    connected_since = session.status.since
    client = await asyncio.to_thread(mqtt_client)
    traffic = HostileTraffic(random.Random(SEED), hq, control_lamp)

    def control_value() -> Any:
        value = state.meta.get(control_lamp, {}).get(HostileTraffic.CONTROL_NAME)
        return value.value if value is not None else None

    # Warm up (templates, schemas, the history writer's connection) before measuring memory.
    warm_up = traffic.control_value(-1)
    await publish_window(client, [warm_up])
    await until(lambda: control_value() == -1, 10, "the control lamp's first value")
    await bridge.history.flush()
    gc.collect()
    tracemalloc.start()
    start_memory, _ = tracemalloc.get_traced_memory()
    base = counted(state)
    tally = Tally()
    started = time.monotonic()

    lag = LoopLag()
    watch = asyncio.create_task(lag.watch())
    messages = traffic.messages(count)
    # Made in a thread: the loop is the bridge's, a megabyte string made on it would stall it.
    while window := await asyncio.to_thread(next_window, messages):
        try:
            await send_and_drain(client, window, tally, state, base, control_value, traffic)
        except AssertionError as exc:
            lagged = f"event loop held at most {lag.worst:.2f} s at once"
            raise AssertionError(f"{exc}\n{lagged}\nbroker log:\n{broker.log_tail(15)}") from None
    await bridge.history.flush()
    watch.cancel()

    elapsed = time.monotonic() - started
    gc.collect()
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    outcomes = {outcome: state.counters[outcome] for outcome in OUTCOMES}
    print(
        f"{tally.published} messages in {elapsed:.1f} s; {tally.reaching} on subscribed topics;"
        f" outcomes {outcomes}; control lamp at {control_value()} (last sent"
        f" {traffic.last_control}); traced memory peak +{(peak - start_memory) / MB:.1f} MB,"
        f" kept +{(current - start_memory) / MB:.1f} MB; event loop held at most"
        f" {lag.worst:.2f} s at once; recipes {tally.by_recipe}"
    )

    assert tally.published == count
    assert {"1 MB", "10 MB", "nesting bomb", "array of 1e6"} <= set(tally.by_recipe)
    assert counted(state) - base == tally.reaching, "every message counted exactly once"
    assert state.counters["unknown"] == 0
    assert state.counters["malformed"] >= tally.surely_malformed
    assert state.counters["accepted"] >= tally.controls
    assert control_value() == traffic.last_control
    assert lag.worst < HOLD_BOUND, f"one message held the bridge for {lag.worst:.1f} s"
    # Nothing crashed, nothing was dropped, the link never went down.
    alive = {task.get_name() for task in asyncio.all_tasks() if not task.done()}
    assert {"history", f"session-{building}", f"fanout-{building}"} <= alive
    assert session.connected and session.status.since == connected_since
    assert (bridge.history.failures, bridge.history.dropped) == (0, 0)
    problems = [
        r for r in caplog.records if r.levelno >= logging.ERROR or r.name.startswith("dashboard")
    ]
    assert not problems, [f"{r.levelname} {r.name}: {r.getMessage()[:300]}" for r in problems]
    assert peak - start_memory < PEAK_BOUND
    assert current - start_memory < GROWTH_BOUND


async def send_and_drain(
    client: mqtt.Client,
    window: list[Message],
    tally: Tally,
    state: LiveState,
    base: int,
    control_value: Callable[[], Any],
    traffic: HostileTraffic,
) -> None:
    """Publish a window of messages, then wait until the bridge has counted every one."""
    for message in window:
        tally.published += 1
        tally.reaching += message.reaches_bridge
        tally.surely_malformed += message.malformed
        tally.controls += message.recipe == "control"
        tally.by_recipe[message.recipe] = tally.by_recipe.get(message.recipe, 0) + 1
    await publish_window(client, window)
    recipes = sorted({m.recipe for m in window})
    await until(
        lambda: counted(state) - base >= tally.reaching,
        DRAIN_TIMEOUT,
        f"the bridge to count {tally.reaching} messages (seed {SEED}, recipes {recipes})",
    )
    assert counted(state) - base == tally.reaching, f"counted more than sent (seed {SEED})"
    assert control_value() == traffic.last_control, f"control lamp stale (seed {SEED})"
