"""Just enough MQTT 3.1.1 and WebSocket framing to publish and subscribe at full speed."""

from __future__ import annotations

import struct


def _length(n: int) -> bytes:
    """MQTT's variable-length "remaining length"."""
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(text: bytes) -> bytes:
    return struct.pack("!H", len(text)) + text


def connect_packet(client_id: str, keepalive: int = 0) -> bytes:
    """CONNECT, clean session; keepalive 0 switches the broker's keepalive check off."""
    body = _string(b"MQTT") + bytes([4, 0x02]) + struct.pack("!H", keepalive)
    body += _string(client_id.encode())
    return b"\x10" + _length(len(body)) + body


def publish_packet(
    topic: bytes, payload: bytes, packet_id: int, qos: int = 1, flags: int = 0
) -> bytes:
    """PUBLISH, QoS 1 unless told; ``flags``: DUP (0x08) and RETAIN (0x01)."""
    body = _string(topic) + (struct.pack("!H", packet_id) if qos else b"") + payload
    return bytes([0x30 | qos << 1 | flags]) + _length(len(body)) + body


def subscribe_packet(topics: list[str], packet_id: int, qos: int = 0) -> bytes:
    body = struct.pack("!H", packet_id)
    for topic in topics:
        body += _string(topic.encode()) + bytes([qos])
    return b"\x82" + _length(len(body)) + body


def ws_frame(payload: bytes) -> bytes:
    """A masked binary WebSocket frame (client to server), with the all-zero mask key.

    A zero key leaves the payload as it is, so nothing needs XOR-ing; servers accept it.
    """
    n = len(payload)
    if n < 126:
        header = bytes([0x82, 0x80 | n])
    elif n < 1 << 16:
        header = bytes([0x82, 0x80 | 126]) + struct.pack("!H", n)
    else:
        header = bytes([0x82, 0x80 | 127]) + struct.pack("!Q", n)
    return header + b"\x00\x00\x00\x00" + payload


def publish_all(port: int, messages: list[tuple[str, bytes]], host: str = "127.0.0.1") -> None:
    """Publish with QoS 1 and wait for every PUBACK (blocking; for set-up and probes)."""
    import socket

    with socket.create_connection((host, port), timeout=60) as sock:
        sock.sendall(connect_packet(f"bench-setup-{id(messages):x}"))
        acks = 4 + 4 * len(messages)  # CONNACK, then a PUBACK each
        for start in range(0, len(messages), 1000):
            batch = messages[start : start + 1000]
            sock.sendall(
                b"".join(
                    publish_packet(topic.encode(), body, (start + n) % 65535 + 1)
                    for n, (topic, body) in enumerate(batch)
                )
            )
        got = 0
        while got < acks:
            chunk = sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("the broker closed the connection")
            got += len(chunk)
        sock.sendall(b"\xe0\x00")  # DISCONNECT
