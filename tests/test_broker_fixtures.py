"""The broker fixtures themselves: every listener, crash recovery, auth, the amqtt fallback."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests import brokers

pytestmark = pytest.mark.broker

AnyBroker = brokers.MosquittoBroker | brokers.AmqttBroker
ClientFactory = Callable[..., mqtt.Client]
SubscriberFactory = Callable[..., brokers.Subscriber]

needs_mosquitto = pytest.mark.skipif(
    brokers.find_mosquitto() is None, reason="mosquitto binary not installed"
)


def _topic() -> str:
    # Unique per test so a stray retained message or parallel run cannot satisfy a wait.
    return f"test/gooee/{uuid.uuid4().hex}/status"


def _roundtrip(
    pub: mqtt.Client, sub_client: mqtt.Client, payload: bytes = b'{"on": true}'
) -> mqtt.MQTTMessage:
    topic = _topic()
    sub = brokers.Subscriber(sub_client).subscribe(topic)
    brokers.publish(pub, topic, payload, qos=1)
    [msg] = sub.wait_for(topic)
    assert msg.payload == payload
    assert msg.qos == 1
    return msg


def test_free_port_is_bindable() -> None:
    port = brokers.free_port()
    assert not brokers.port_accepts(port)
    assert len(set(brokers.free_ports(5))) == 5


def test_plain_publish_and_receive(broker: AnyBroker, mqtt_client: ClientFactory) -> None:
    assert broker.url == f"mqtt://127.0.0.1:{broker.port}"
    _roundtrip(mqtt_client(), mqtt_client())


def test_fixture_helpers(
    broker: AnyBroker,
    subscriber: SubscriberFactory,
    publish: Callable[..., mqtt.MQTTMessageInfo],
) -> None:
    sub = subscriber("test/helpers/#")
    publish("test/helpers/a", b"1")
    publish("test/helpers/b", b"2", qos=0)
    msgs = sub.wait_for(lambda m: m.topic.startswith("test/helpers/"), count=2)
    assert sorted(m.payload for m in msgs) == [b"1", b"2"]


def test_tls_publish_and_receive(broker: AnyBroker, mqtt_client: ClientFactory) -> None:
    if broker.tls_port is None:
        pytest.skip(f"{broker.name} fixture has no TLS listener")
    assert broker.tls_url == f"mqtts://127.0.0.1:{broker.tls_port}"
    pub, sub = mqtt_client("tls"), mqtt_client("tls")
    # Really TLS, not the plain listener by mistake.
    assert isinstance(pub.socket(), ssl.SSLSocket)
    _roundtrip(pub, sub)


def test_tls_rejects_a_client_that_does_not_trust_the_ca(broker: AnyBroker) -> None:
    if broker.tls_port is None:
        pytest.skip(f"{broker.name} fixture has no TLS listener")
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.tls_set()  # system CAs only
    try:
        with pytest.raises(ssl.SSLCertVerificationError):
            client.connect(broker.host, broker.tls_port)
    finally:
        brokers.close_client(client)


def test_websockets_publish_and_receive(broker: AnyBroker, mqtt_client: ClientFactory) -> None:
    assert broker.ws_url == f"ws://127.0.0.1:{broker.ws_port}/mqtt"
    _roundtrip(mqtt_client("websockets"), mqtt_client("websockets"))


def test_secure_websockets_publish_and_receive(
    broker: AnyBroker, mqtt_client: ClientFactory
) -> None:
    if broker.wss_port is None:
        pytest.skip(f"{broker.name} fixture has no TLS listener")
    assert broker.wss_url == f"wss://127.0.0.1:{broker.wss_port}/mqtt"
    pub, sub = mqtt_client("wss"), mqtt_client("wss")
    # Really TLS under the websocket, not the plain websockets listener by mistake.
    assert isinstance(pub.socket()._socket, ssl.SSLSocket)
    _roundtrip(pub, sub)


def test_transports_share_one_broker(broker: AnyBroker, mqtt_client: ClientFactory) -> None:
    _roundtrip(mqtt_client("tcp"), mqtt_client("websockets"))


def test_reconnect_after_crash_and_restart(broker: AnyBroker, mqtt_client: ClientFactory) -> None:
    old = mqtt_client()
    port, pid = broker.port, broker.pid
    broker.kill()
    assert not broker.running
    assert not brokers.port_accepts(port)
    broker.restart()
    assert broker.running and broker.pid != pid
    assert broker.port == port
    _roundtrip(mqtt_client(), mqtt_client())
    del old  # closed by the fixture even though its broker died under it


@needs_mosquitto
def test_password_auth(broker: AnyBroker, mqtt_client: ClientFactory) -> None:
    if broker.username is None:
        pytest.skip(f"{broker.name} fixture does not check passwords")
    assert broker.username == "authorization"
    mqtt_client(username=broker.username, password=broker.password)
    mqtt_client()  # anonymous stays allowed, like the fixture promises
    with pytest.raises(brokers.ConnectError) as excinfo:
        mqtt_client(username=broker.username, password="wrong-token")
    assert excinfo.value.reason_code is not None
    assert excinfo.value.reason_code.is_failure


@needs_mosquitto
def test_password_file_without_mosquitto_passwd(
    monkeypatch: pytest.MonkeyPatch, mqtt_client: ClientFactory
) -> None:
    monkeypatch.setattr(brokers, "find_mosquitto_passwd", lambda: None)
    with brokers.MosquittoBroker(websockets=False, users={"authorization": "t0ken"}) as broker:
        assert broker.password_file is not None
        assert broker.password_file.read_text().startswith("authorization:$6$")
        mqtt_client(broker=broker, username="authorization", password="t0ken")
        with pytest.raises(brokers.ConnectError):
            mqtt_client(broker=broker, username="authorization", password="nope")


@needs_mosquitto
def test_start_failure_reports_the_log(tmp_path: Path) -> None:
    # Missing certificate files: mosquitto must exit, and we must say why instead of hanging.
    bogus = brokers.TlsMaterial(*(tmp_path / n for n in ("ca", "cakey", "crt", "key")))
    broker = brokers.MosquittoBroker(tls=bogus, websockets=False)
    expected = pytest.raises(
        brokers.BrokerStartError, match=r"(?s)exited with 1.*Unable to load CA"
    )
    with expected, broker:
        pytest.fail("start() should have raised")
    assert not broker.running
    assert not broker.directory.exists()  # cleaned up although __exit__ never ran


def test_interpreter_exit_kills_a_forgotten_broker() -> None:
    script = (
        "from tests import brokers\n"
        "cls = brokers.MosquittoBroker if brokers.find_mosquitto() else brokers.AmqttBroker\n"
        "b = cls(websockets=False).start()\n"
        "print(b.pid, b.directory)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    ).stdout
    pid, directory = out.split()
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid), 0)
    assert not Path(directory).exists()


def test_amqtt_fallback(amqtt_broker: brokers.AmqttBroker, mqtt_client: ClientFactory) -> None:
    assert amqtt_broker.tls_port is None and amqtt_broker.username is None
    _roundtrip(mqtt_client(broker=amqtt_broker), mqtt_client(broker=amqtt_broker))
    _roundtrip(
        mqtt_client("websockets", broker=amqtt_broker),
        mqtt_client("websockets", broker=amqtt_broker),
    )
    port = amqtt_broker.port
    amqtt_broker.kill()
    amqtt_broker.restart()
    assert amqtt_broker.port == port
    _roundtrip(mqtt_client(broker=amqtt_broker), mqtt_client(broker=amqtt_broker))


def test_stopped_broker_leaves_no_process() -> None:
    with brokers.AmqttBroker(websockets=False) as broker:
        pid = broker.pid
        assert pid is not None
    assert not broker.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@needs_mosquitto
def test_start_retries_when_a_port_was_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    real_free_ports = brokers.free_ports
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        calls: list[int] = []

        def racy_free_ports(count: int) -> list[int]:
            # The first pick loses the race that free_ports() cannot rule out.
            calls.append(count)
            return [taken] if len(calls) == 1 else real_free_ports(count)

        monkeypatch.setattr(brokers, "free_ports", racy_free_ports)
        with brokers.MosquittoBroker(websockets=False) as broker:
            assert broker.port != taken
            assert len(calls) == 2


def test_mutual_tls_takes_the_client_certificate_and_refuses_a_client_without(
    mtls_broker: brokers.MosquittoBroker, mqtt_client: ClientFactory
) -> None:
    pub = mqtt_client("tls", broker=mtls_broker, client_cert=True)
    sub = mqtt_client("tls", broker=mtls_broker, client_cert=True)
    _roundtrip(pub, sub)
    with pytest.raises(brokers.ConnectError):
        mqtt_client("tls", broker=mtls_broker, timeout=3)
