"""The demo's Gooee cloud: devices' publishes are checked as the cloud would, actions fan out."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections import Counter
from typing import Any

import pytest

from dashboard.bridge.broker_url import parse_broker_url
from dashboard.contract import payloads
from dashboard.contract.topics import Kind, parse_topic
from dashboard.demo.emulator import (
    Cloud,
    CloudEmulator,
    Directory,
    encode,
    fan_out_action,
    handle_action,
    handle_ingress,
    ingress_topic,
)
from dashboard.live.buildings import BuildingInventory, Entity
from tests import seed

_NAMESPACE = uuid.UUID("3d6f0c1e-7a8b-4c9d-8e0f-1a2b3c4d5e6f")


def gid(name: str) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, name)


HQ, OFFICE, BOARDROOM, LOBBY = gid("hq"), gid("office"), gid("boardroom"), gid("lobby")
LAMP_1, LAMP_2, LAMP_3 = gid("lamp-1"), gid("lamp-2"), gid("lamp-3")


def headquarters() -> BuildingInventory:
    """Two lamps in the Open Office, one in the Boardroom."""
    return BuildingInventory(
        id=HQ,
        name="Headquarters",
        version=1,
        spaces={
            OFFICE: Entity(OFFICE, "Open Office", capacity=40),
            BOARDROOM: Entity(BOARDROOM, "Boardroom", capacity=12),
        },
        areas={LOBBY: Entity(LOBBY, "Lobby", OFFICE, 10)},
        devices={
            LAMP_1: Entity(LAMP_1, "Open Office lamp 1", OFFICE),
            LAMP_2: Entity(LAMP_2, "Open Office lamp 2", OFFICE),
            LAMP_3: Entity(LAMP_3, "Boardroom lamp 1", BOARDROOM),
        },
    )


def without_type(action: dict[str, Any]) -> dict[str, Any]:
    return seed.without_type(action)


def accepted_on(topic: str, payload: Any) -> bool:
    """Whether the dashboard's schema for the topic's kind accepts the payload."""
    return not payloads.validate(parse_topic(topic).kind, payload)


def decoded(messages: list[tuple[str, bytes]]) -> list[tuple[str, Any]]:
    return [(topic, json.loads(payload)) for topic, payload in messages]


# --- a device publishes; the cloud checks it ---------------------------------------------------


def test_a_meta_name_in_camel_case_is_rejected_exactly_as_the_contract_shows() -> None:
    published = encode(seed.REJECTED["data"])

    out = handle_ingress(ingress_topic(f"devices/{LAMP_1}/meta"), published)

    assert decoded(out) == [(f"devices/{LAMP_1}/meta/rejected", seed.REJECTED)]


def test_valid_meta_passes_unchanged_and_each_item_reaches_its_own_topic() -> None:
    published = json.dumps(seed.DEVICE_META, indent=1).encode()

    out = handle_ingress(ingress_topic(f"devices/{LAMP_1}/meta"), published)

    assert out[0] == (f"devices/{LAMP_1}/meta", published)  # the very same bytes
    assert decoded(out[1:]) == [
        (f"devices/{LAMP_1}/meta/temperature", seed.DEVICE_META_ITEM),
        (
            f"devices/{LAMP_1}/meta/als",
            {"name": "als", "value": 87, "timestamp": "2016-08-09T20:00:47.539000Z"},
        ),
    ]


def test_a_value_out_of_its_definitions_range_is_rejected() -> None:
    data = [{"name": "dim", "value": 140}]

    [(topic, envelope)] = decoded(
        handle_ingress(ingress_topic(f"devices/{LAMP_1}/meta"), encode(data))
    )

    assert topic == f"devices/{LAMP_1}/meta/rejected"
    assert envelope["error"]["message"].startswith("Invalid payload due to value above maximum.")
    assert envelope["error"]["context"]["maximum"] == 100
    assert envelope["data"] == data


def test_bytes_that_are_not_json_are_rejected_with_the_reason_and_the_text() -> None:
    [(topic, envelope)] = decoded(
        handle_ingress(ingress_topic(f"devices/{LAMP_1}/meta"), b'[{"name": "dim", "value": 5')
    )

    assert topic == f"devices/{LAMP_1}/meta/rejected"
    assert "not JSON" in envelope["error"]["message"]
    assert envelope["error"]["context"] == {}
    assert envelope["data"] == '[{"name": "dim", "value": 5'


@pytest.mark.parametrize(
    ("topic", "rejected"),
    [
        (f"devices/{LAMP_1}/fault_alarms", f"devices/{LAMP_1}/fault_alarms/rejected"),
        (f"buildings/{HQ}/fault_alarms", f"buildings/{HQ}/fault_alarms/rejected"),
    ],
)
def test_fault_alarms_pass_or_are_rejected_on_their_own_rejected_topic(
    topic: str, rejected: str
) -> None:
    valid = encode(seed.BUILDING_FAULT_ALARM)
    invalid = {**seed.BUILDING_FAULT_ALARM, "priority": 300}

    assert handle_ingress(ingress_topic(topic), valid) == [(topic, valid)]
    [(out_topic, envelope)] = decoded(handle_ingress(ingress_topic(topic), encode(invalid)))
    assert out_topic == rejected
    assert "value above maximum" in envelope["error"]["message"]
    assert envelope["data"] == invalid


def test_headcounts_pass_unchanged_and_invalid_ones_are_dropped_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    topic = f"spaces/{OFFICE}/meta/head_count"
    valid = encode({"name": "headcount", "value": 5})
    assert handle_ingress(ingress_topic(topic), valid) == [(topic, valid)]

    with caplog.at_level(logging.WARNING, logger="dashboard.demo.emulator"):
        assert (
            handle_ingress(ingress_topic(topic), encode({"name": "headcount", "value": -1})) == []
        )
        assert handle_ingress(ingress_topic(topic), b"five") == []

    assert len(caplog.records) == 2
    assert "value below minimum" in caplog.records[0].getMessage()
    assert "not JSON" in caplog.records[1].getMessage()


@pytest.mark.parametrize(
    "topic",
    [
        f"devices/{LAMP_1}/meta/temperature",  # only the cloud publishes per-name meta
        f"spaces/{OFFICE}/actions",  # actions are published on the real topic
        f"devices/{LAMP_1}/meta/rejected",
        "devices/not-a-uuid/meta",
    ],
)
def test_devices_cannot_publish_what_devices_do_not_publish(topic: str) -> None:
    assert handle_ingress(ingress_topic(topic), encode(seed.DEVICE_META)) == []


# --- a client acts on a space or a device; the cloud fans it out ------------------------------


def test_an_action_on_a_space_reaches_the_space_its_devices_and_their_building() -> None:
    directory = Directory.of([headquarters()])
    action = {**seed.SPACE_ACTION, "target_id": str(OFFICE)}

    out = fan_out_action(f"spaces/{OFFICE}/actions", action, directory)

    per_device = []
    for lamp in (LAMP_1, LAMP_2):
        retargeted = {**action, "target_type": "device", "target_id": str(lamp)}
        per_device += [
            (f"devices/{lamp}/actions", retargeted),
            (f"devices/{lamp}/actions/off", without_type(retargeted)),
            (f"buildings/{HQ}/actions", retargeted),
            (f"buildings/{HQ}/actions/off", without_type(retargeted)),
        ]
    assert out == [(f"spaces/{OFFICE}/actions/off", without_type(action)), *per_device]
    for topic, payload in out:  # every shape is what the dashboard accepts on that topic
        assert accepted_on(topic, payload)


def test_an_action_on_a_device_reaches_its_type_topic_and_its_building() -> None:
    directory = Directory.of([headquarters()])
    action = {**seed.DEVICE_ACTION, "target_id": str(LAMP_3)}

    out = fan_out_action(f"devices/{LAMP_3}/actions", action, directory)

    assert out == [
        (f"devices/{LAMP_3}/actions/dim", without_type(action)),
        (f"buildings/{HQ}/actions", action),
        (f"buildings/{HQ}/actions/dim", without_type(action)),
    ]


def test_an_action_on_an_unknown_space_reaches_only_the_space_type_topic() -> None:
    stranger = gid("elsewhere")

    out = fan_out_action(
        f"spaces/{stranger}/actions", seed.SPACE_ACTION, Directory.of([headquarters()])
    )

    assert out == [(f"spaces/{stranger}/actions/off", without_type(seed.SPACE_ACTION))]


def test_an_invalid_action_goes_nowhere_and_says_why(caplog: pytest.LogCaptureFixture) -> None:
    action = {**seed.DEVICE_ACTION, "value": {"transition_time": 1}}  # a dim without a level

    with caplog.at_level(logging.WARNING, logger="dashboard.demo.emulator"):
        out = handle_action(
            f"devices/{LAMP_1}/actions", encode(action), Directory.of([headquarters()])
        )

    assert out == []
    assert "missing required property" in caplog.text


def test_the_cloud_ignores_the_echo_of_its_own_device_actions_but_not_a_repeat_by_a_client() -> (
    None
):
    cloud = Cloud([headquarters()])
    action = encode({**seed.SPACE_ACTION, "target_id": str(OFFICE)})

    out = cloud.handle(f"spaces/{OFFICE}/actions", action)
    echoes = [
        (t, p) for t, p in out if parse_topic(t).kind is Kind.ACTION and t.startswith("devices/")
    ]
    assert len(echoes) == 2

    for topic, payload in echoes:  # the broker sends our own publishes back
        assert cloud.handle(topic, payload) == []
    assert cloud.stats["echoes"] == 2

    # The same bytes again, now from a client: a real action, fanned out.
    topic, payload = echoes[0]
    assert [t for t, _ in cloud.handle(topic, payload)] == [
        f"{topic}/off",
        f"buildings/{HQ}/actions",
        f"buildings/{HQ}/actions/off",
    ]


# --- through a real broker --------------------------------------------------------------------


@pytest.mark.broker
async def test_the_emulator_on_a_broker_rejects_bad_meta_and_fans_out_a_space_action(
    broker, subscriber, publish
) -> None:
    url = broker.url
    if broker.username:  # the emulator logs in as the dashboard would
        url = f"mqtt://{broker.username}:{broker.password}@{broker.host}:{broker.port}"
    emulator = CloudEmulator(parse_broker_url(url), [headquarters()])
    watcher = subscriber("devices/#", "spaces/#", "buildings/#")
    await emulator.start()
    try:
        action = encode({**seed.SPACE_ACTION, "target_id": str(OFFICE)})
        await asyncio.to_thread(publish, f"spaces/{OFFICE}/actions", action)
        await asyncio.to_thread(watcher.wait_for, f"buildings/{HQ}/actions/off", count=2)

        # Handled after the echoes of the device actions, so any re-fan-out would come first.
        bad = encode(seed.REJECTED["data"])
        await asyncio.to_thread(publish, ingress_topic(f"devices/{LAMP_1}/meta"), bad)
        [rejection] = await asyncio.to_thread(watcher.wait_for, f"devices/{LAMP_1}/meta/rejected")
    finally:
        await emulator.stop()

    assert json.loads(rejection.payload) == seed.REJECTED
    assert Counter(m.topic for m in watcher.messages) == {
        f"spaces/{OFFICE}/actions": 1,  # the client's own publish
        f"spaces/{OFFICE}/actions/off": 1,
        f"devices/{LAMP_1}/actions": 1,
        f"devices/{LAMP_1}/actions/off": 1,
        f"devices/{LAMP_2}/actions": 1,
        f"devices/{LAMP_2}/actions/off": 1,
        f"buildings/{HQ}/actions": 2,
        f"buildings/{HQ}/actions/off": 2,
        f"devices/{LAMP_1}/meta/rejected": 1,
    }
    assert emulator.stats["echoes"] == 2
    assert emulator.published == 10


@pytest.mark.broker
@pytest.mark.parametrize("transport", ["tls", "websockets"])
async def test_the_emulator_connects_over_tls_and_websockets_too(
    broker, subscriber, publish, transport: str
) -> None:
    url = broker.tls_url if transport == "tls" else broker.ws_url
    if url is None:
        pytest.skip(f"this broker has no {transport} listener")
    ca_file = str(broker.ca_file) if broker.ca_file else None
    emulator = CloudEmulator(parse_broker_url(url), [headquarters()], ca_file=ca_file)
    watcher = subscriber(f"devices/{LAMP_2}/meta/rejected")
    await emulator.start()
    try:
        bad = encode(seed.REJECTED["data"])
        await asyncio.to_thread(publish, ingress_topic(f"devices/{LAMP_2}/meta"), bad)
        [rejection] = await asyncio.to_thread(watcher.wait_for, f"devices/{LAMP_2}/meta/rejected")
    finally:
        await emulator.stop()

    assert json.loads(rejection.payload) == seed.REJECTED
