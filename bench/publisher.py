"""The load generator: device meta whose value is a sequence number, at a rate or flat out.

``python -m bench.publisher --port P --devices FILE --duration S [--rate R] --times OUT``

Each message is ``devices/<id>/meta`` with one item, ``bench_seq``, whose value is the
message's sequence number (``--first-seq``, then one more each), in the simulator's item shape; devices take turns in
a shuffled order fixed by ``--seed``, so two runs with the same arguments publish the same
sequence. QoS 1. With ``--rate 0`` it floods: as fast as the broker acknowledges, at most
``--window`` unacknowledged and, with ``--pace FILE``, at most ``--ahead`` messages past
what the consumer under test has taken (its running total, which it keeps in FILE): the
consumer never waits for work, and the broker's queue for it stays short.

MQTT is written straight to the socket (pre-built packets, sent in batches): paho's
publisher tops out near 6,000 messages/s here, below what a bare subscriber can take, and a
flood must not be limited by its own publisher.

Prints ``START <monotonic time>`` when it begins, then one line ``= {json}``; writes each
message's publish time (``time.monotonic()``, shared by every process on the machine) to
``--times`` as doubles, index ``seq - first``; the JSON has the devices' turn ``order``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import sys
import threading
import time
import uuid
from array import array
from datetime import UTC, datetime

from bench.harness import SEQ_NAME
from bench.mqttwire import connect_packet, publish_packet

TICK = 0.002
FLOOD_BATCH = 500


def payload(seq: int, when: bytes) -> bytes:
    return b'[{"name": "%s", "value": %d, "timestamp": "%s"}]' % (SEQ_NAME.encode(), seq, when)


class Acks:
    """Counts PUBACKs (4 bytes each) read by a thread; the broker sends nothing else here."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.count = 0
        self._bytes = 0
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except OSError:
                return
            if not data:
                return
            with self.cond:
                self._bytes += len(data)
                self.count = self._bytes // 4
                self.cond.notify_all()


def now_text() -> bytes:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--devices", required=True, help="JSON file: a list of device ids")
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--rate", type=float, default=0.0, help="messages/s; 0 floods")
    parser.add_argument("--window", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--first-seq", type=int, default=1)
    parser.add_argument("--times", required=True)
    parser.add_argument("--pace", help="flood no further than --ahead past the count in this file")
    parser.add_argument("--ahead", type=int, default=5000)
    args = parser.parse_args(argv)
    pace = os.open(args.pace, os.O_RDONLY) if args.pace else None

    def allowed() -> int:
        if pace is None:
            return sys.maxsize
        return int.from_bytes(os.pread(pace, 8, 0) or b"\0", "little") + args.ahead

    with open(args.devices, encoding="utf-8") as f:
        devices = json.load(f)
    random.Random(args.seed).shuffle(devices)
    topics = [f"devices/{d}/meta".encode() for d in devices]

    sock = socket.create_connection((args.host, args.port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(connect_packet(f"bench-publisher-{uuid.uuid4().hex[:8]}", keepalive=0))
    connack = sock.recv(4)
    if len(connack) < 4 or connack[0] != 0x20 or connack[3] != 0:
        raise SystemExit(f"connection refused: {connack!r}")
    acks = Acks(sock)

    times = array("d")
    last: dict[str, int] = {}
    seq = 0  # messages sent; the n-th carries first_seq + n - 1
    start = time.monotonic()
    print(f"START {start:.6f}", flush=True)
    while True:
        now = time.monotonic()
        elapsed = now - start
        if elapsed >= args.duration:
            break
        if args.rate > 0:
            due = int(elapsed * args.rate) + 1 - seq
        else:
            due = min(FLOOD_BATCH, args.window - (seq - acks.count), allowed() - seq)
        if due > 0:
            when = now_text()
            packets = []
            for _ in range(due):
                index = seq % len(topics)
                value = args.first_seq + seq
                packets.append(publish_packet(topics[index], payload(value, when), seq % 65535 + 1))
                last[devices[index]] = value
                seq += 1
            sent_at = time.monotonic()
            times.extend([sent_at] * due)
            sock.sendall(b"".join(packets))
        if args.rate > 0:
            time.sleep(TICK)
        elif due <= 0:
            time.sleep(0.001)
    end = time.monotonic()
    with acks.cond:
        acks.cond.wait_for(lambda: acks.count >= seq, timeout=120)
    acked_at = time.monotonic()
    sock.sendall(b"\xe0\x00")  # DISCONNECT
    sock.close()
    with open(args.times, "wb") as out:
        times.tofile(out)
    result = {
        "published": seq,
        "acked": acks.count,
        "start": start,
        "end": end,
        "acked_at": acked_at,
        "rate": seq / (end - start) if end > start else 0.0,
        "first": args.first_seq,
        "order": devices,
        "last": last,
    }
    sys.stdout.write("= " + json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
