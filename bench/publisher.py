"""The load generator: device meta whose value is a sequence number, at a rate or flat out.

``python -m bench.publisher --port P --devices FILE --duration S [--rate R] --times OUT``

Each message is ``devices/<id>/meta`` with one item, ``bench_seq``, whose value is the
message's sequence number (1, 2, ...), in the simulator's item shape; devices take turns in
a shuffled order fixed by ``--seed``, so two runs with the same arguments publish the same
sequence. QoS 1. With ``--rate 0`` it floods: as fast as the broker acknowledges, at most
``--window`` unacknowledged. Prints ``START <monotonic time>`` when it begins, then one
line ``= {json}``; writes each message's publish time (``time.monotonic()``, which every
process on the machine shares) to ``--times`` as doubles, index ``seq - 1``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
import uuid
from array import array
from datetime import UTC, datetime

import paho.mqtt.client as mqtt

from bench.harness import SEQ_NAME

TICK = 0.002


def payload(seq: int, when: str) -> bytes:
    return b'[{"name": "%s", "value": %d, "timestamp": "%s"}]' % (
        SEQ_NAME.encode(),
        seq,
        when.encode(),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--devices", required=True, help="JSON file: a list of device ids")
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--rate", type=float, default=0.0, help="messages/s; 0 floods")
    parser.add_argument("--window", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--times", required=True)
    args = parser.parse_args(argv)

    devices = json.loads(open(args.devices, encoding="utf-8").read())
    random.Random(args.seed).shuffle(devices)
    topics = [f"devices/{d}/meta" for d in devices]

    acked = 0
    done = threading.Condition()

    def on_publish(client, userdata, mid, reason_code, properties) -> None:
        nonlocal acked
        with done:
            acked += 1
            done.notify_all()

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"bench-publisher-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv311,
    )
    client.max_inflight_messages_set(args.window)
    client.max_queued_messages_set(0)
    client.on_publish = on_publish
    client.connect(args.host, args.port, keepalive=60)
    client.loop_start()
    time.sleep(0.2)

    times = array("d")
    last: dict[str, int] = {}
    seq = 0
    start = time.monotonic()
    print(f"START {start:.6f}", flush=True)
    when = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    while True:
        now = time.monotonic()
        elapsed = now - start
        if elapsed >= args.duration:
            break
        when = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        if args.rate > 0:
            due = int(elapsed * args.rate) + 1 - seq
        else:
            due = min(200, args.window - (seq - acked))
        for _ in range(max(0, due)):
            seq += 1
            index = (seq - 1) % len(topics)
            times.append(time.monotonic())
            client.publish(topics[index], payload(seq, when), qos=1)
            last[devices[index]] = seq
        if args.rate > 0 or due <= 0:
            time.sleep(TICK if args.rate > 0 else 0.0005)
    end = time.monotonic()
    with done:
        done.wait_for(lambda: acked >= seq, timeout=120)
    acked_at = time.monotonic()
    client.disconnect()
    client.loop_stop()
    with open(args.times, "wb") as out:
        times.tofile(out)
    result = {
        "published": seq,
        "acked": acked,
        "start": start,
        "end": end,
        "acked_at": acked_at,
        "rate": seq / (end - start) if end > start else 0.0,
        "last": last,
    }
    sys.stdout.write("= " + json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
