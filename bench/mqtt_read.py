"""Scenario 10, MQTT read: the bridge's CPU per PUBLISH packet read, against paho's own read.

The bridge hands whole QoS 0/1 PUBLISH packets from its read buffer to the session itself
(``BufferedClient.take_publishes``) and leaves every other packet to paho. Here the same
20,000 QoS 1 packets (a device's meta topic, a 60-byte JSON payload) go through a socket pair
into a ``BufferedClient``, read once by paho alone and once the bridge's way, alternating
rounds in this process so both see the same machine; the figure is the best round of each.
Both queue a PUBACK per packet; neither sends it (the write path is the same for both).
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from dataclasses import asdict, dataclass
from typing import Any

from bench.figures import Figure, Target, figure
from bench.mqttwire import publish_packet

TOPIC = b"gooee/device/0123456789abcdef0123456789abcdef/meta"
PAYLOAD = json.dumps({"name": "temperature", "value": 21.5, "unit": "C", "seq": 123456}).encode()


@dataclass
class MqttRead:
    messages: int
    rounds: int
    paho_us: list[float]  # µs per message, each round
    bridge_us: list[float]

    def summary(self) -> dict[str, Any]:
        return asdict(self)


def read_all(data: bytes, messages: int, bridge: bool) -> float:
    """CPU µs per message to read ``data`` (``messages`` PUBLISH packets) through a socket."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from dashboard.bridge.loop_driven import BufferedClient

    client = BufferedClient(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    got: list[str] = []
    client.on_message = lambda c, u, m: got.append(m.topic)
    client.on_socket_register_write = lambda c, u, s: None  # as the session registers one

    def handle(topic: str, payload: bytes) -> None:
        got.append(topic)

    ours, broker = socket.socketpair()
    with ours, broker:
        ours.setblocking(False)
        broker.setblocking(False)
        client._sock = ours
        sent = 0
        began = time.process_time()
        while len(got) < messages:
            if sent < len(data):
                with contextlib.suppress(BlockingIOError):  # the pair's buffer is full
                    sent += broker.send(data[sent : sent + 65536])
            while True:  # as LoopDriven._read does
                if not (bridge and client.take_publishes(handle, 256)):
                    client.loop_read()
                if not client.buffered():
                    break
            client._out_packet.clear()  # PUBACKs: the same write for both, not measured here
            client._registered_write = False
        spent = time.process_time() - began
        client._sock = None
    return spent / messages * 1e6


def measure(messages: int, rounds: int) -> MqttRead:
    data = b"".join(publish_packet(TOPIC, PAYLOAD, n % 65535 + 1) for n in range(messages))
    result = MqttRead(messages, rounds, [], [])
    for _ in range(rounds):
        result.paho_us.append(read_all(data, messages, bridge=False))
        result.bridge_us.append(read_all(data, messages, bridge=True))
    return result


def figures(result: MqttRead) -> list[Figure]:
    return [
        figure(
            "mqtt.read_us_per_message",
            min(result.bridge_us),
            "µs",
            min(result.paho_us),
            # 0.15 measured on the 2-core machine (docs/benchmarks.md, "MQTT read").
            Target("ratio", "<=", 0.5),
        )
    ]
