"""The bridge end to end through a real broker: subscribe, ingest, fan out, survive."""

from __future__ import annotations

import asyncio
import json
import selectors
import socket
import time

import pytest
from asgiref.sync import sync_to_async
from django.db import OperationalError

from dashboard.bridge import loop_driven
from dashboard.bridge.broker_url import parse_broker_url
from dashboard.contract.topics import Kind, Scope, build_topic
from dashboard.demo.mqtt import DemoClient
from dashboard.models import Device, LatestHeadcount, LatestMeta
from tests import brokers, seed
from tests.bridging import Browser, config_for, send, subscribed, until
from tests.factories import make_building
from tests.tls_relay import TlsRepacker

pytestmark = [pytest.mark.broker, pytest.mark.django_db(transaction=True)]


SUBSCRIBED_EXAMPLES = [
    (scope, kind, payload)
    for scope, kind, param, payload in seed.EXAMPLES
    if param is None and not (scope == Scope.DEVICE and kind == Kind.ACTION)
]


async def test_every_subscribed_topic_kind_arrives_in_live_state_and_reaches_browsers(
    hq, running_bridge, publish
):
    bridge = await running_bridge()
    await subscribed(bridge, hq[Scope.BUILDING])
    browser = await Browser(hq[Scope.BUILDING]).join()
    support = await Browser(hq[Scope.BUILDING]).join("support")
    state = bridge.buildings[hq[Scope.BUILDING]].state

    for scope, kind, payload in SUBSCRIBED_EXAMPLES:
        await send(publish, build_topic(scope, hq[scope], kind), payload)

    await until(lambda: len(state.rejections) == 3, what="three rejections")
    device = hq[Scope.DEVICE]
    assert state.meta[device]["temperature"].value == 87.4
    assert state.meta[device]["als"].value == 87
    for scope, value in ((Scope.BUILDING, 20), (Scope.SPACE, 5), (Scope.AREA, 2)):
        for kind in ("head_count", "headcount_in", "headcount_out"):
            assert state.headcounts[(hq[scope], kind)].value == value
    assert {a.key for a in state.alarms.values()} == {
        (device, "high_temperature"),
        (None, "high_temperature"),
    }
    assert [a.name for a in state.actions] == ["Dim Device", "Turn Off the Office"]  # newest first
    assert state.counters["malformed"] == 0

    await browser.wait_for("87.4")
    await browser.wait_for(f'id="headcount-{hq[Scope.SPACE].hex}"')
    await browser.wait_for("high_temperature")
    await browser.wait_for("Turn Off the Office")
    await support.wait_for("regex pattern not matching")
    assert not any("regex pattern not matching" in html for html in browser.received)

    # The batched history writer persists the latest values too.
    def persisted() -> bool:
        try:
            return (
                LatestMeta.objects.filter(device_id=device, name="temperature").exists()
                and LatestHeadcount.objects.filter(entity_id=hq[Scope.AREA]).count() == 3
            )
        except OperationalError:
            # The tests' in-memory SQLite shares one cache between threads, where a table the
            # writer holds is "locked" at once instead of waited for: not written yet.
            return False

    deadline = time.monotonic() + 5
    while not await sync_to_async(persisted)():
        assert time.monotonic() < deadline, "history never written"
        await asyncio.sleep(0.1)


async def test_a_malformed_payload_on_any_topic_is_counted_and_the_next_valid_one_arrives(
    hq, running_bridge, publish
):
    bridge = await running_bridge()
    await subscribed(bridge, hq[Scope.BUILDING])
    state = bridge.buildings[hq[Scope.BUILDING]].state
    bad = [b"\xff\xfe not utf-8", b"{not json", b'{"name": "headcount", "value": -1}', b"[[[[[[[["]

    for n, (scope, kind, payload) in enumerate(SUBSCRIBED_EXAMPLES):
        topic = build_topic(scope, hq[scope], kind)
        await send(publish, topic, bad[n % len(bad)])
        await send(publish, topic, payload)

    await until(lambda: len(state.rejections) == 3, what="the valid rejections")
    await until(lambda: state.counters["malformed"] == len(SUBSCRIBED_EXAMPLES), what="malformed")
    assert state.meta[hq[Scope.DEVICE]]["temperature"].value == 87.4
    assert state.headcounts[(hq[Scope.BUILDING], "head_count")].value == 20
    reasons = {m.reason.split(":")[0] for m in state.malformed}
    assert reasons >= {"not UTF-8", "not JSON"}


async def test_bridge_reconnects_and_resubscribes_within_5s_of_the_broker_returning(
    hq, running_bridge, publish, broker
):
    bridge = await running_bridge()
    building = hq[Scope.BUILDING]
    await subscribed(bridge, building)
    session = bridge.buildings[building].session
    topic = build_topic(Scope.SPACE, hq[Scope.SPACE], Kind.HEAD_COUNT)

    await asyncio.to_thread(broker.kill)
    await until(lambda: session.status.state == "reconnecting", what="reconnecting state")
    await asyncio.to_thread(broker.restart)
    returned = time.monotonic()

    state = bridge.buildings[building].state
    value = 0

    async def flowing() -> bool:
        nonlocal value
        value += 1
        try:
            await send(publish, topic, {"name": "headcount", "value": value})
        except Exception:  # the publisher itself may still be reconnecting
            return False
        await asyncio.sleep(0.2)
        return state.headcounts.get((hq[Scope.SPACE], "head_count"), None) is not None and (
            state.headcounts[(hq[Scope.SPACE], "head_count")].value == value
        )

    while not await flowing():
        assert time.monotonic() - returned < 5, "no data flowing 5 s after the broker returned"
    assert session.status.state == "connected"


async def test_a_building_added_while_running_is_subscribed_without_restart(
    hq, running_bridge, publish
):
    bridge = await running_bridge()
    await subscribed(bridge, hq[Scope.BUILDING])
    annex = await sync_to_async(make_building)("Annex")
    await subscribed(bridge, annex[Scope.BUILDING])

    topic = build_topic(Scope.DEVICE, annex[Scope.DEVICE], Kind.META)
    await send(publish, topic, seed.DEVICE_META)
    state = bridge.buildings[annex[Scope.BUILDING]].state
    await until(lambda: annex[Scope.DEVICE] in state.meta, what="the new building's meta")

    # A device added to a running building is picked up the same way.
    def add_lamp() -> Device | None:
        try:
            return Device.objects.create(building_id=annex[Scope.BUILDING], name="Lamp 2")
        except OperationalError:
            # The in-memory test database: the history writer's transaction still holds the
            # table ("locked" at once, not waited for). Added once it is done.
            return None

    deadline = time.monotonic() + 5
    while (lamp := await sync_to_async(add_lamp)()) is None:
        assert time.monotonic() < deadline, "the device table stayed locked"
        await asyncio.sleep(0.1)
    session = bridge.buildings[annex[Scope.BUILDING]].session
    await until(lambda: f"devices/{lamp.id}/meta" in session.topics, what="new device topic")
    await subscribed(bridge, annex[Scope.BUILDING])
    await send(publish, f"devices/{lamp.id}/meta", seed.DEVICE_META)
    await until(lambda: lamp.id in state.meta, what="the new device's meta")


async def test_two_buildings_never_see_each_others_messages(hq, running_bridge, publish):
    annex = await sync_to_async(make_building)("Annex")
    bridge = await running_bridge()
    await subscribed(bridge, hq[Scope.BUILDING])
    await subscribed(bridge, annex[Scope.BUILDING])
    hq_browser = await Browser(hq[Scope.BUILDING]).join()
    annex_browser = await Browser(annex[Scope.BUILDING]).join()

    await send(
        publish,
        build_topic(Scope.BUILDING, hq[Scope.BUILDING], Kind.HEAD_COUNT),
        {"name": "headcount", "value": 111},
    )
    await send(
        publish,
        build_topic(Scope.BUILDING, annex[Scope.BUILDING], Kind.HEAD_COUNT),
        {"name": "headcount", "value": 222},
    )

    await hq_browser.wait_for(">111<")
    await annex_browser.wait_for(">222<")
    hq_state = bridge.buildings[hq[Scope.BUILDING]].state
    annex_state = bridge.buildings[annex[Scope.BUILDING]].state
    assert list(hq_state.headcounts) == [(hq[Scope.BUILDING], "head_count")]
    assert list(annex_state.headcounts) == [(annex[Scope.BUILDING], "head_count")]
    # The shown value, not the digits: ids and epoch times on a card may hold "111" by chance.
    assert not any(">222<" in html for html in hq_browser.received)
    assert not any(">111<" in html for html in annex_browser.received)


@pytest.mark.parametrize("transport", ["tls", "websockets"])
async def test_tls_and_websocket_transports_work(hq, running_bridge, publish, broker, transport):
    if transport == "tls":
        if broker.tls_url is None:
            pytest.skip("this broker has no TLS listener")
        config = config_for(broker.tls_url, ca_file=str(broker.ca_file))
    else:
        config = config_for(broker.ws_url)
    bridge = await running_bridge(config=config)
    await subscribed(bridge, hq[Scope.BUILDING])
    await send(publish, build_topic(Scope.DEVICE, hq[Scope.DEVICE], Kind.META), seed.DEVICE_META)
    state = bridge.buildings[hq[Scope.BUILDING]].state
    await until(lambda: hq[Scope.DEVICE] in state.meta, what=f"meta over {transport}")


def transport_url(broker, transport: str) -> dict:
    """The bridge's session config for one of the contract's transports on ``broker``."""
    urls = {"tcp": broker.url, "tls": broker.tls_url, "websockets": broker.ws_url}
    urls["wss"] = broker.wss_url
    if urls[transport] is None:
        pytest.skip(f"this broker has no {transport} listener")
    tls = transport in ("tls", "wss")
    return config_for(urls[transport], ca_file=str(broker.ca_file) if tls else None)


@pytest.mark.parametrize("transport", ["tcp", "tls", "websockets", "wss"])
async def test_a_1_mb_message_is_counted_malformed_and_the_session_goes_on(
    hq, running_bridge, publish, broker, transport
):
    bridge = await running_bridge(config=transport_url(broker, transport))
    await subscribed(bridge, hq[Scope.BUILDING])
    state = bridge.buildings[hq[Scope.BUILDING]].state
    session = bridge.buildings[hq[Scope.BUILDING]].session
    topic = build_topic(Scope.DEVICE, hq[Scope.DEVICE], Kind.META)

    # Far past MQTT_MAX_PAYLOAD_BYTES, in one websocket frame over many TLS records. Mosquitto's
    # websockets listener sends it at about 40 KB/s: 25 s, five keepalives of this session.
    connected_since = session.status.since
    await send(publish, topic, b"[" + b" " * 1_000_000 + b"]")
    await until(lambda: state.counters["malformed"] == 1, 60, f"the large message via {transport}")
    # On the same link all along: a reconnect would have lost what was in flight.
    assert (session.status.state, session.status.since) == ("connected", connected_since)
    device = hq[Scope.DEVICE]

    def shows(value: float) -> bool:
        shown = state.meta.get(device, {}).get("temperature")
        return shown is not None and shown.value == value

    for value in (12.5, 13.5, 14.5):  # and the session goes on: each next value arrives
        await send(publish, topic, [{**seed.DEVICE_META[0], "value": value}])
        await until(lambda v=value: shows(v), 10, f"{value} after it via {transport}")


@pytest.mark.parametrize("policy", ["coalesce", "split"])
@pytest.mark.parametrize("transport", ["tls", "wss"])
async def test_however_tls_records_cut_the_stream_a_burst_arrives_whole(
    hq, running_bridge, mqtt_client, broker, tls_material, transport, policy, monkeypatch
):
    if broker.tls_port is None:
        pytest.skip("this broker has no TLS listener")
    # Fewer packets per wake-up than a record holds: a wake-up ends inside a record, whose
    # rest is decrypted already and wakes no selector.
    monkeypatch.setattr(loop_driven, "MAX_PACKETS_PER_WAKE", 4)
    target = broker.port if transport == "tls" else broker.ws_port
    async with TlsRepacker(target, tls_material, policy) as front:
        url = f"mqtts://127.0.0.1:{front.port}"
        if transport == "wss":
            url = f"wss://127.0.0.1:{front.port}/mqtt"
        # The product's keepalive: a stalled read would wait for the next ping's answer.
        config = config_for(url, keepalive=30, ca_file=str(tls_material.ca_file))
        bridge = await running_bridge(config=config)
        await burst_arrives_whole(bridge, hq, mqtt_client(), f"{policy} records via {transport}")


async def burst_arrives_whole(bridge, hq, device, what: str) -> None:
    """2,000 headcounts sent at once all reach the building's state, the last one shown."""
    await subscribed(bridge, hq[Scope.BUILDING])
    state = bridge.buildings[hq[Scope.BUILDING]].state
    topic = build_topic(Scope.SPACE, hq[Scope.SPACE], Kind.HEAD_COUNT)
    # QoS 0, so the broker forwards them without waiting for the session's PUBACKs.
    burst = 2000
    sent = [
        device.publish(topic, json.dumps(seed.headcount("headcount", n % 40)), qos=0)
        for n in range(burst)
    ]
    await asyncio.to_thread(lambda: [info.wait_for_publish(10) for info in sent])
    await until(lambda: state.counters["accepted"] == burst, 10, what)
    assert state.headcounts[(hq[Scope.SPACE], "head_count")].value == (burst - 1) % 40


async def test_a_burst_read_in_chunks_arrives_whole_over_plain_tcp(
    hq, running_bridge, mqtt_client, monkeypatch
):
    # The session reads 64 KiB at a time; a wake-up that ends inside a chunk leaves packets
    # no selector will announce, and they must still be read.
    monkeypatch.setattr(loop_driven, "MAX_PACKETS_PER_WAKE", 4)
    bridge = await running_bridge()
    session = bridge.buildings[hq[Scope.BUILDING]].session
    loop = asyncio.get_running_loop()
    both: list[int] = []

    async def watch() -> None:
        # Each loop turn: a read scheduled for the next turn is the socket's only reader.
        # With the reader still on as well, every turn started one more chain of reads, and
        # a flooded building read more than its share of each turn.
        while True:
            sock = session._sock
            if sock is not None and session._scheduled is not None and sock.fileno() >= 0:
                key = loop._selector.get_map().get(sock.fileno())
                if key is not None and key.events & selectors.EVENT_READ:
                    both.append(1)
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watch())
    try:
        await burst_arrives_whole(bridge, hq, mqtt_client(), "every message of the burst")
    finally:
        watcher.cancel()
    assert not both, f"{len(both)} loop turns with a read scheduled and the reader on"


async def test_the_token_authenticates_and_never_shows_in_logs_or_status(
    hq, running_bridge, publish, broker, caplog
):
    if broker.password is None:
        pytest.skip("this broker has no password file")
    caplog.set_level("DEBUG")
    good = broker.url.replace("mqtt://", f"mqtt://{broker.username}:{broker.password}@")
    bridge = await running_bridge(good)
    await subscribed(bridge, hq[Scope.BUILDING])
    await send(publish, build_topic(Scope.DEVICE, hq[Scope.DEVICE], Kind.META), seed.DEVICE_META)
    state = bridge.buildings[hq[Scope.BUILDING]].state
    await until(lambda: hq[Scope.DEVICE] in state.meta, what="meta with the token")

    wrong_token = "wrong-" + broker.password
    bad = broker.url.replace("mqtt://", f"mqtt://{broker.username}:{wrong_token}@")
    refused = await running_bridge(bad)
    session = refused.buildings[hq[Scope.BUILDING]].session
    await until(lambda: "refused" in session.status.last_error, what="a refused connection")
    assert not session.connected
    for secret in (broker.password, wrong_token):
        assert secret not in caplog.text
        assert secret not in repr(refused.config)
        assert secret not in session.status.last_error


async def test_mutual_tls_connects_with_the_client_certificate_and_says_why_without_one(
    hq, running_bridge, mtls_broker, mqtt_client
):
    """A broker that requires a client certificate (MQTT_CLIENT_CERT / MQTT_CLIENT_KEY)."""
    tls = mtls_broker.tls
    building = hq[Scope.BUILDING]
    without = await running_bridge(config=config_for(mtls_broker.tls_url, ca_file=str(tls.ca_file)))
    browser = await Browser(building).join()
    session = without.buildings[building].session
    await until(lambda: "client certificate" in session.status.last_error, 10, "the refusal")
    assert not session.connected
    assert "may require a client certificate (set MQTT_CLIENT_CERT and MQTT_CLIENT_KEY)" in (
        session.status.last_error
    )
    await browser.wait_for("may require a client certificate")

    config = config_for(
        mtls_broker.tls_url,
        ca_file=str(tls.ca_file),
        client_cert=str(tls.client_cert_file),
        client_key=str(tls.client_key_file),
    )
    bridge = await running_bridge(config=config)
    await subscribed(bridge, building)
    publisher = mqtt_client("tls", broker=mtls_broker, client_cert=True)
    topic = build_topic(Scope.DEVICE, hq[Scope.DEVICE], Kind.META)
    await asyncio.to_thread(brokers.publish, publisher, topic, json.dumps(seed.DEVICE_META))
    state = bridge.buildings[building].state
    await until(lambda: hq[Scope.DEVICE] in state.meta, what="meta over mutual TLS")


async def test_the_demo_clients_show_the_client_certificate_too(mtls_broker):
    tls = mtls_broker.tls
    broker = parse_broker_url(mtls_broker.tls_url)
    shown = DemoClient(
        broker,
        name="demo-mtls",
        ca_file=str(tls.ca_file),
        client_cert=(str(tls.client_cert_file), str(tls.client_key_file)),
    )
    await shown.start(timeout=5)
    await shown.stop()

    hidden = DemoClient(broker, name="demo-no-cert", ca_file=str(tls.ca_file))
    with pytest.raises(ConnectionError):  # the broker closes the link before any CONNACK
        await hidden.start(timeout=3)


async def test_a_qos1_burst_is_acknowledged_in_few_writes_and_arrives_whole(
    hq, running_bridge, mqtt_client
):
    """The broker holds back QoS 1 messages past its in-flight window until acknowledged:
    the burst arrives whole only if every PUBACK the session wrote in one send was read."""
    bridge = await running_bridge()
    await subscribed(bridge, hq[Scope.BUILDING])
    client = bridge.buildings[hq[Scope.BUILDING]].session._client
    sends = 0
    paho_send = client._sock_send

    def counting(data: bytes) -> int:
        nonlocal sends
        sends += 1
        return paho_send(data)

    client._sock_send = counting  # type: ignore[method-assign]
    state = bridge.buildings[hq[Scope.BUILDING]].state
    topic = build_topic(Scope.SPACE, hq[Scope.SPACE], Kind.HEAD_COUNT)
    burst = 2000
    device = mqtt_client()
    sent = [
        device.publish(topic, json.dumps(seed.headcount("headcount", n % 40)), qos=1)
        for n in range(burst)
    ]
    await asyncio.to_thread(lambda: [info.wait_for_publish(20) for info in sent])
    await until(lambda: state.counters["accepted"] == burst, 20, "every message of the burst")
    assert state.headcounts[(hq[Scope.SPACE], "head_count")].value == (burst - 1) % 40
    # One send per PUBACK before; the acknowledgements of a wake-up's packets now go together.
    assert sends < burst / 2, sends


async def test_a_steady_trickle_is_read_a_few_messages_per_wakeup_and_arrives_whole(
    hq, running_bridge, mqtt_client, monkeypatch
):
    """A device sending about a message a millisecond: each wake-up of the bridge reads
    several (loop_driven.READ_WAIT) instead of one, and none is lost or reordered."""
    bridge = await running_bridge()
    await subscribed(bridge, hq[Scope.BUILDING])
    session = bridge.buildings[hq[Scope.BUILDING]].session
    state = bridge.buildings[hq[Scope.BUILDING]].state
    topic = build_topic(Scope.SPACE, hq[Scope.SPACE], Kind.HEAD_COUNT)
    device = mqtt_client()
    trickle = 400

    def send_trickle() -> None:
        for n in range(trickle):
            device.publish(topic, json.dumps(seed.headcount("headcount", n % 40)), qos=1)
            time.sleep(0.001)

    reprs = 0
    plain_repr = socket.socket.__repr__

    def counted_repr(sock: socket.socket) -> str:
        nonlocal reprs
        reprs += sock is session._sock
        return plain_repr(sock)

    monkeypatch.setattr(socket.socket, "__repr__", counted_repr)
    before = session.wakeups
    await asyncio.to_thread(send_trickle)
    await until(lambda: state.counters["accepted"] == trickle, 20, "every message of the trickle")
    assert state.headcounts[(hq[Scope.SPACE], "head_count")].value == (trickle - 1) % 40
    # One wake-up per message without READ_WAIT (about 400 here).
    assert session.wakeups - before < trickle / 2, session.wakeups - before
    # A resume re-registers the socket by its number: asyncio formats no repr of it (two
    # system calls each, twice a resume, when registered as the socket object).
    assert reprs == 0
    # Once the trickle has stopped, the timer's reads end and the socket's reader is back:
    # a lone message a while later is read as it comes, not left waiting.
    await until(lambda: not session._polling, 2, "the reader back once the trickle stopped")
    wakeups = session.wakeups
    await asyncio.sleep(0.2)
    assert session.wakeups == wakeups  # nothing read while nothing comes
    lone = device.publish(topic, json.dumps(seed.headcount("headcount", 77)), qos=1)
    await asyncio.to_thread(lone.wait_for_publish, 5)
    await until(lambda: state.counters["accepted"] == trickle + 1, 2, "the lone message")
    assert state.headcounts[(hq[Scope.SPACE], "head_count")].value == 77
