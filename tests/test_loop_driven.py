"""The bridge's own read of PUBLISH packets, beside paho's, on the bytes a broker sends."""

from __future__ import annotations

import asyncio
import os
import resource
import socket
import struct
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from bench.mqttwire import publish_packet
from dashboard.bridge.loop_driven import BufferedClient, LoopDriven, readable


def publish(topic: bytes, payload: bytes, qos: int = 1, mid: int = 1, flags: int = 0) -> bytes:
    """A PUBLISH packet as a broker sends it (MQTT 3.1.1)."""
    return publish_packet(topic, payload, mid, qos, flags)


def reading(data: bytes) -> tuple[BufferedClient, socket.socket]:
    """A client whose socket has ``data`` waiting, and the broker's end of it."""
    client = BufferedClient(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    ours, broker = socket.socketpair()
    ours.setblocking(False)
    client._sock = ours
    broker.sendall(data)
    client._sock_recv(0)  # fills the buffer with what is waiting, takes none of it
    return client, broker


def acks(client: BufferedClient) -> bytes:
    """The PUBACKs queued, as the broker will read them."""
    return b"".join(bytes(packet["packet"]) for packet in client._out_packet)


def test_whole_publishes_are_handed_over_in_order_with_their_pubacks_queued():
    big = b"x" * 300  # a remaining length of two bytes
    client, _ = reading(
        publish(b"a/b", b"1", mid=7)
        + publish(b"c", b"2", qos=0)
        + publish(b"d", big, mid=8, flags=0x09)  # dup and retain set
    )
    got: list[tuple[str, bytes]] = []
    assert client.take_publishes(lambda t, p: got.append((t, p)), 10) == 3
    assert got == [("a/b", b"1"), ("c", b"2"), ("d", big)]
    assert acks(client) == b"\x40\x02\x00\x07" + b"\x40\x02\x00\x08"
    assert len(client._out_packet) == 1  # one packet, one send
    assert not client.buffered()


def test_a_handler_that_raises_leaves_the_pubacks_of_the_messages_before_it_queued():
    client, _ = reading(b"".join(publish(b"t", str(n).encode(), mid=n + 1) for n in range(3)))

    def handle(topic: str, payload: bytes) -> None:
        if payload == b"1":
            raise RuntimeError("a handler's bug")

    with pytest.raises(RuntimeError):
        client.take_publishes(handle, 10)
    assert acks(client) == b"\x40\x02\x00\x01"  # the first; the second was not handled
    assert client.take_publishes(handle, 10) == 1  # the third, after it
    assert acks(client) == b"\x40\x02\x00\x01\x40\x02\x00\x03"


@pytest.mark.parametrize(
    "rest",
    [
        pytest.param(publish(b"q2", b"v", qos=2), id="QoS 2"),
        pytest.param(b"\x90\x03\x00\x01\x01", id="a SUBACK"),
        pytest.param(publish(b"", b"v"), id="an empty topic"),
        pytest.param(publish(b"\xff\xfe", b"v"), id="a topic that is not UTF-8"),
        pytest.param(b"\x32\x01\x00", id="a length too short for its topic"),
        pytest.param(b"\x32\xff\xff\xff\xff\x7f", id="a remaining length of five bytes"),
        pytest.param(publish(b"cut", b"v" * 50)[:-1], id="a packet cut at the buffer's end"),
    ],
)
def test_what_the_fast_read_does_not_know_is_left_where_paho_will_read_it(rest):
    client, _ = reading(publish(b"first", b"1") + rest)
    got: list[tuple[str, bytes]] = []
    assert client.take_publishes(lambda t, p: got.append((t, p)), 10) == 1
    assert got == [("first", b"1")]
    assert client._chunk[client._taken :] == rest


def test_it_takes_no_more_than_its_limit():
    client, _ = reading(b"".join(publish(b"t", str(n).encode(), mid=n + 1) for n in range(5)))
    got: list[bytes] = []
    assert client.take_publishes(lambda t, p: got.append(p), 2) == 2
    assert client.take_publishes(lambda t, p: got.append(p), 10) == 3
    assert got == [b"0", b"1", b"2", b"3", b"4"]
    assert acks(client) == b"".join(b"\x40\x02\x00" + bytes([n + 1]) for n in range(5))


def test_a_packet_split_across_reads_goes_to_paho_and_the_order_holds():
    """The fast read takes the whole packet; paho reads the one cut in two, finishing it
    from the socket, and its PUBACK queues after the first's."""
    second = publish(b"second", b"2", mid=2)
    client, broker = reading(publish(b"first", b"1", mid=1) + second[:4])
    got: list[tuple[str, bytes]] = []
    client.on_message = lambda c, u, m: got.append((m.topic, m.payload))
    assert client.take_publishes(lambda t, p: got.append((t, p)), 10) == 1
    assert client.take_publishes(lambda t, p: got.append((t, p)), 10) == 0
    client.loop_read()  # paho takes the four bytes, then waits for the rest
    assert got == [("first", b"1")]
    assert client.take_publishes(lambda t, p: got.append((t, p)), 10) == 0  # paho is mid-packet
    broker.sendall(second[4:] + publish(b"third", b"3", mid=3))
    client.loop_read()
    assert got == [("first", b"1"), ("second", b"2")]
    assert client.take_publishes(lambda t, p: got.append((t, p)), 10) == 1
    assert got[-1] == ("third", b"3")
    client.loop_write()  # (paho already wrote the first two when it queued its own)
    broker.settimeout(5)
    sent = b""
    while len(sent) < 12:
        sent += broker.recv(100)
    assert sent == b"\x40\x02\x00\x01\x40\x02\x00\x02\x40\x02\x00\x03"


def test_a_wake_up_reads_the_socket_itself_and_hands_over_its_first_packet_too():
    """``fill`` reads what waits, so no packet of a wake-up goes through paho's slow path,
    and says when the socket is empty: no select() is needed to find out."""
    client = BufferedClient(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    ours, broker = socket.socketpair()
    ours.setblocking(False)
    client._sock = ours
    assert not client.fill()  # nothing has come
    client.on_message = lambda c, u, m: pytest.fail("paho read a message itself")
    broker.sendall(publish(b"a", b"1", mid=1) + publish(b"b", b"2", mid=2))
    got: list[tuple[str, bytes]] = []
    assert client.fill()
    assert client.take_publishes(lambda t, p: got.append((t, p)), 10) == 2
    assert got == [("a", b"1"), ("b", b"2")]
    assert client.fill() is False


def test_the_broker_closing_is_kept_for_paho_to_report():
    client = BufferedClient(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    ours, broker = socket.socketpair()
    ours.setblocking(False)
    client._sock = ours
    broker.sendall(publish(b"last", b"1"))
    broker.close()
    got: list[bytes] = []
    assert client.fill()
    assert client.take_publishes(lambda t, p: got.append(p), 10) == 1
    assert client.fill()  # the end: something for paho
    assert client.take_publishes(lambda t, p: got.append(p), 10) == 0
    assert got == [b"1"]
    assert client._packet_read() == mqtt.MQTT_ERR_CONN_LOST


def test_a_reset_connection_is_kept_for_paho_to_report():
    listener = socket.create_server(("127.0.0.1", 0))
    ours = socket.create_connection(listener.getsockname())
    theirs, _ = listener.accept()
    # Closed with a zero linger: the broker's end resets the connection.
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    theirs.close()
    listener.close()
    ours.setblocking(False)
    client = BufferedClient(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client._sock = ours
    for _ in range(100):  # the reset reaches our end at once on loopback; allow a moment
        if client.fill():
            break
        time.sleep(0.01)
    assert isinstance(client._ended, ConnectionResetError)
    assert client.take_publishes(lambda t, p: pytest.fail("nothing to take"), 10) == 0
    assert client._packet_read() == mqtt.MQTT_ERR_CONN_LOST
    ours.close()


def test_bytes_waiting_are_seen_on_a_socket_numbered_past_1024():
    """A web process with a thousand pages open gives its broker sockets such numbers;
    select() refuses them, and the session would think nothing was waiting."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft <= 1500:  # as a service manager allows a busy server
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    ours, broker = socket.socketpair()
    high = socket.socket(fileno=os.dup2(ours.fileno(), 1500))
    ours.close()
    try:
        assert high.fileno() >= 1024
        assert not readable(high)
        broker.sendall(publish(b"t", b"1"))
        assert readable(high)
    finally:
        high.close()
        broker.close()


class _Driven(LoopDriven):
    """The loop's reads of ``client``'s socket, with a handler that raises on ``fail_on``."""

    def __init__(self, client: BufferedClient, fail_on: bytes) -> None:
        super().__init__()
        self._client = client
        self._fail_on = fail_on
        self.got: list[bytes] = []

    def _message(self, topic: str, payload: bytes) -> None:
        if payload == self._fail_on:
            raise RuntimeError("a callback's bug")
        self.got.append(payload)


async def test_packets_left_in_the_buffer_by_a_read_that_raised_are_read_without_new_bytes():
    """The packets after a raising handler wait in the buffer, where epoll cannot see them:
    the loop reads them on its next turn, not when the broker happens to send again."""
    loop = asyncio.get_running_loop()
    raised: list[BaseException | None] = []
    loop.set_exception_handler(lambda _loop, context: raised.append(context.get("exception")))
    client = BufferedClient(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    driven = _Driven(client, fail_on=b"1")
    driven._drive(client)
    ours, broker = socket.socketpair()
    ours.setblocking(False)
    try:
        client._sock = ours
        driven._socket_open(ours)
        broker.sendall(b"".join(publish(b"t", str(n).encode(), mid=n + 1) for n in range(5)))
        deadline = loop.time() + 2
        while driven.got != [b"0", b"2", b"3", b"4"] and loop.time() < deadline:
            await asyncio.sleep(0.01)
        assert driven.got == [b"0", b"2", b"3", b"4"]
        assert [type(e) for e in raised] == [RuntimeError]
        broker.settimeout(5)
        sent = b""
        while len(sent) < 16:
            sent += broker.recv(100)
        # Every handled message acknowledged, in order; the one whose handler raised is not.
        assert sent == b"".join(b"\x40\x02\x00" + bytes([mid]) for mid in (1, 3, 4, 5))
    finally:
        loop.set_exception_handler(None)
        driven._socket_close(ours)
        ours.close()
        broker.close()
