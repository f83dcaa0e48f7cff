"""Consumers under test, each in its own process, driven by line commands on stdin.

``python -m bench.workers bridge ...``: the dashboard's bridge (``dashboard.bridge.supervisor.
Bridge``) in-process, as ``serve`` runs it (sessions, ingest, live state, coalesced fan-out
rendering every changed tile, batched history writes to SQLite), with a ``send`` that only
counts the frames the fan-out hands to the channel layer.

``python -m bench.workers subscriber ...``: the baseline, a bare paho subscriber on the same
topics (same QoS) that only ``json.loads`` each message.

Both print ``READY`` once subscribed, then answer ``COUNT`` (messages turned into state per
building), ``SAMPLES`` (timestamped counts since the last call) and ``STOP`` (final stats,
then exit) with one line ``= {json}``. Counts are sampled every 20 ms on ``time.monotonic()``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import select
import sys
import threading
import time
import uuid
from array import array
from pathlib import Path
from typing import Any

SAMPLE_EVERY = 0.02
SUBSCRIBE_BATCH = 100


def reply(data: Any) -> None:
    sys.stdout.write("= " + json.dumps(data) + "\n")
    sys.stdout.flush()


class Sampler:
    """Timestamped per-building counts, taken every SAMPLE_EVERY seconds.

    With ``progress``, the total is also written there (8 bytes, little-endian) for the
    publisher to pace itself by.
    """

    def __init__(self, read: Any, progress: str | None = None) -> None:
        self._read = read
        self._fd = os.open(progress, os.O_RDWR | os.O_CREAT) if progress else None
        self.times: list[float] = []
        self.counts: list[dict[str, int]] = []

    def take(self) -> None:
        counts = self._read()
        self.times.append(time.monotonic())
        self.counts.append(counts)
        if self._fd is not None:
            os.pwrite(self._fd, sum(counts.values()).to_bytes(8, "little"), 0)

    def dump(self) -> dict[str, Any]:
        data = {"t": self.times, "counts": self.counts}
        self.times, self.counts = [], []
        return data


# ------------------------------------------------------------------------------ the bridge


def bridge_main(args: argparse.Namespace) -> None:
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "gooee_site.settings",
            "SECRET_KEY": "insecure-key-for-benchmarks",
            "DEBUG": "false",
            "DATABASE_URL": f"sqlite:///{args.db}",
            "MQTT_URL": args.broker,
            "LOG_LEVEL": "WARNING",
            "HISTORY_WRITER": "process",
            # The bench's Mosquitto keeps every unread message (harness.BenchBroker): the
            # broker HISTORY_HOLD is for.
            "HISTORY_HOLD": "true",
        }
    )
    import django

    django.setup()
    from bench import experiments
    from bench.dbsetup import import_building

    experiments.apply(args.variant)

    for path in args.inventory:
        import_building(path)
    from dashboard.live import gc_tuning

    gc_tuning.tune(ingest_only=True)  # as run_bridge does
    asyncio.run(run_bridge(args))


async def run_bridge(args: argparse.Namespace) -> None:
    from django.conf import settings

    from dashboard.bridge.broker_url import parse_broker_url
    from dashboard.bridge.session import SessionConfig
    from dashboard.bridge.supervisor import Bridge

    sent = {"frames": 0, "bytes": 0}

    async def send(building_id: uuid.UUID, html: str, audience: str, stream: str, seq: int) -> None:
        sent["frames"] += 1
        sent["bytes"] += len(html)

    bridge = Bridge(
        SessionConfig(broker=parse_broker_url(args.broker)),
        window=args.window,
        poll_interval=3600,
        history_interval=args.history,
        history_process=settings.HISTORY_WRITER == "process",  # as serve runs it
        history_hold=settings.HISTORY_HOLD,
        send=send,
    )
    task = asyncio.create_task(bridge.run())
    await asyncio.wait_for(bridge.ready.wait(), 60)
    while not all(
        b.session.connected and not b.session._pending_subs for b in bridge.buildings.values()
    ):
        await asyncio.sleep(0.05)
    for building in bridge.buildings.values():
        building.take_confirmations(awaiting(args.pending, list(building.inventory.devices)))

    def counts() -> dict[str, int]:
        return {str(k): b.state.counters["accepted"] for k, b in bridge.buildings.items()}

    sampler = Sampler(counts, args.progress)
    commands: asyncio.Queue[str] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    loop.add_reader(sys.stdin.fileno(), lambda: commands.put_nowait(sys.stdin.readline().strip()))
    print("READY", flush=True)
    while True:
        sampler.take()
        try:
            command = await asyncio.wait_for(commands.get(), SAMPLE_EVERY)
        except TimeoutError:
            continue
        if command == "COUNT":
            reply(counts())
        elif command == "SAMPLES":
            reply(sampler.dump())
        elif command in ("STOP", ""):
            break
    loop.remove_reader(sys.stdin.fileno())
    bridge.stop()
    await asyncio.wait_for(task, 120)
    reply(
        {
            "counters": {str(k): dict(b.state.counters) for k, b in bridge.buildings.items()},
            "history": {
                "written": bridge.history.written,
                "dropped": bridge.history.dropped,
                "pending": bridge.history.pending,
                "failures": bridge.history.failures,
                "peak": bridge.history.peak,
            },
            "fanout": {str(k): {"flushes": b.fanout.flushes} for k, b in bridge.buildings.items()},
            "sent": sent,
        }
    )


def awaiting(count: int, streamed: list[uuid.UUID]) -> list[Any]:
    """``count`` actions of four lamps each, pending for an hour: one in five on lamps the
    flood reports from (their reports are looked at, and do not follow), the others on lamps
    that send nothing meanwhile, as most of a building's are."""
    from datetime import UTC, datetime, timedelta

    from dashboard.live.confirmation import Command, Pending

    now = datetime.now(UTC)
    found = []
    for n in range(count):
        if n % 5 == 0 and streamed:
            lamps = [streamed[(n * 4 + k) % len(streamed)] for k in range(4)]
        else:
            lamps = [uuid.uuid4() for _ in range(4)]
        names = {lamp: f"Lamp {k}" for k, lamp in enumerate(lamps)}
        label = f"Dim space {n} to 40 %"
        found.append(
            Pending(-1 - n, label, Command("dim", 40), now, now + timedelta(hours=1), names)
        )
    return found


# -------------------------------------------------------------------- the bare subscriber


def subscriber_main(args: argparse.Namespace) -> None:
    import paho.mqtt.client as mqtt

    by_building: dict[str, list[str]] = json.loads(Path(args.topics).read_text())
    building_of = {t: b for b, topics in by_building.items() for t in topics}
    counts = dict.fromkeys(by_building, 0)
    seqs, times = array("q"), array("d")
    record = args.record is not None
    subacks: set[int] = set()
    lock = threading.Condition()

    def on_message(client: Any, userdata: Any, message: Any) -> None:
        data = json.loads(message.payload)
        counts[building_of[message.topic]] += 1
        if record:
            times.append(time.monotonic())
            seqs.append(data[0]["value"])

    def on_subscribe(client: Any, userdata: Any, mid: int, codes: Any, properties: Any) -> None:
        with lock:
            subacks.add(mid)
            lock.notify_all()

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"bench-baseline-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv311,
    )
    client.on_message = on_message
    client.on_subscribe = on_subscribe
    client.connect("127.0.0.1", args.port, keepalive=60)
    client.loop_start()
    topics = list(building_of)
    mids = []
    for start in range(0, len(topics), SUBSCRIBE_BATCH):
        _, mid = client.subscribe([(t, 1) for t in topics[start : start + SUBSCRIBE_BATCH]])
        mids.append(mid)
    with lock:
        if not lock.wait_for(lambda: subacks.issuperset(mids), 300):
            raise SystemExit("no SUBACK")
    sampler = Sampler(lambda: dict(counts), args.progress)
    print("READY", flush=True)
    while True:
        sampler.take()
        ready, _, _ = select.select([sys.stdin], [], [], SAMPLE_EVERY)
        if not ready:
            continue
        command = sys.stdin.readline().strip()
        if command == "COUNT":
            reply(dict(counts))
        elif command == "SAMPLES":
            reply(sampler.dump())
        elif command in ("STOP", ""):
            break
    client.disconnect()
    client.loop_stop()
    if record:
        with open(args.record, "wb") as out:
            seqs.tofile(out)
            times.tofile(out)
    reply({"counts": counts, "recorded": len(seqs)})


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="mode", required=True)
    bridge = sub.add_parser("bridge")
    bridge.add_argument("--broker", required=True)
    bridge.add_argument("--db", required=True, help="a migrated SQLite file (a copy)")
    bridge.add_argument("--inventory", nargs="+", required=True)
    bridge.add_argument("--window", type=float, default=0.25)
    bridge.add_argument("--history", type=float, default=2.0)
    bridge.add_argument("--progress", help="keep the running total in this file")
    bridge.add_argument("--variant", default="as-is", help="a prototype (bench/experiments.py)")
    bridge.add_argument(
        "--pending", type=int, default=0, help="actions awaiting confirmation meanwhile"
    )
    subscriber = sub.add_parser("subscriber")
    subscriber.add_argument("--port", type=int, required=True)
    subscriber.add_argument("--topics", required=True, help="JSON file: {building: [topics]}")
    subscriber.add_argument("--record", help="write (seq, receive time) of every message here")
    subscriber.add_argument("--progress", help="keep the running total in this file")
    args = parser.parse_args()
    if args.mode == "bridge":
        bridge_main(args)
    else:
        subscriber_main(args)


if __name__ == "__main__":
    main()
