"""Scenarios 2 and 3, freshness and bandwidth: what open pages receive, and how soon.

Pages (``PageClient``, logged in, acknowledging every frame) are open on one building while
the publisher sends ``rate`` messages per second across its devices, each value a sequence
number. Freshness is publish → value received by a page, over every value a page was shown
(values superseded within a coalescing window are never shown, by design), and the share
of devices whose final value each page ends up with. Its baseline is a bare paho subscriber
on the same topics during the same run (``bench.workers subscriber --record``).

Bandwidth is the bytes (as read from the socket) and frames each page receives per second
of publishing. Its baseline, run right after on the same stream, is as many raw
MQTT-over-WebSocket clients subscribed straight to Mosquitto's websockets listener for the
building's topics: what a browser talking to the broker's WebSocket endpoint would get.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from bench.clients import PageClient, close_all, open_mqtt_clients, open_pages, stats_of
from bench.figures import Figure, Target, figure, percentile
from bench.harness import SEQ_NAME, Building, Stack, Worker
from bench.ingest import run_publisher
from bench.mqttwire import publish_all
from bench.profiling import Profile

SEED = 2000
SETTLE_SECONDS = 15.0  # after the last publish, how long pages may take to show it
# After the last publish, how long the harness leaves the pages alone before reading what
# they got: longer than any value may take and still be on time (a window and 150 ms at
# 1,000 pages). Pages parse their frames lazily, so the first read is seconds of CPU in the
# page processes (the harness's, at 100 pages), and at once it took a core from the server
# while the stream's last values were on their way: those were the late ones, in every run
# (docs/benchmarks.md, "2026-12-05, morning"). A value later than this is late anyway.
GRACE_SECONDS = 0.5

# Something more on the building during a measurement (tests/test_slow_clients.py: a page
# that stops reading): entered once the pages are open and the bridge serves the building,
# before the quiet check and the stream; left once the pages settled.
Beside = Callable[[Stack, Building], contextlib.AbstractAsyncContextManager[Any]]


@dataclass
class Stream:
    """One run of the publisher: when each sequence number left, and each device's last."""

    first: int
    times: array
    last: dict[str, int]  # device hex -> last sequence number
    order: list[str]  # device hex by turn: value first + n went to order[n % len(order)]
    start: float
    end: float

    def device_of(self, seq: int) -> str:
        return self.order[(seq - self.first) % len(self.order)]

    def sent_at(self, seq: int) -> float | None:
        index = seq - self.first
        return self.times[index] if 0 <= index < len(self.times) else None


class Sequencer:
    """Sequence numbers keep rising across runs on a building, so old values never count."""

    def __init__(self) -> None:
        self.next: dict[str, int] = {}

    def take(self, building: str, count: int = 0) -> int:
        first = self.next.get(building, 1)
        self.next[building] = first + count
        return first


SEQUENCER = Sequencer()


async def publish_stream(
    stack: Stack, building: Building, rate: float, duration: float, tag: str
) -> Stream:
    directory = stack.directory / f"stream-{tag}"
    directory.mkdir(exist_ok=True)
    first = SEQUENCER.take(building.id)
    devices_file = directory / "devices.json"
    devices_file.write_text(json.dumps(building.devices))
    times_file = directory / "times.bin"
    pub = await run_publisher(stack, devices_file, times_file, duration, rate, first_seq=first)
    SEQUENCER.take(building.id, pub["published"])
    times = array("d")
    times.frombytes(times_file.read_bytes())
    last = {d.replace("-", ""): seq for d, seq in pub["last"].items()}
    order = [d.replace("-", "") for d in pub["order"]]
    return Stream(first, times, last, order, pub["start"], pub["end"])


def cpu_seconds(processes: list[psutil.Process]) -> float:
    """User and system CPU seconds of the server's processes (one, or web and bridge ones)."""
    return sum(sum(p.cpu_times()[:2]) for p in processes)


async def until_bridged(stack: Stack, building: Building, page: PageClient) -> None:
    """Publish a probe to the building's last device until the page shows it: the served
    bridge has picked the building up and subscribed to all of its topics."""
    device = building.devices[-1]
    hexid = device.replace("-", "")
    value = SEQUENCER.take(building.id, 1)
    body = json.dumps([{"name": SEQ_NAME, "value": value}]).encode()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 120
    while page.stats.latest.get(hexid) != value:
        if loop.time() > deadline:
            raise TimeoutError("the served bridge never showed the probe")
        await asyncio.to_thread(publish_all, stack.broker.port, [(f"devices/{device}/meta", body)])
        for _ in range(10):
            await asyncio.sleep(0.1)
            if page.stats.latest.get(hexid) == value:
                return


@dataclass
class Freshness:
    clients: int
    latencies_ms: list[float]
    bare_latencies_ms: list[float]
    final_share: float  # mean over pages, percent
    worst_final_share: float
    bare_final_share: float
    bytes_per_client: float  # per second of publishing
    frames_per_client: float
    deflated_bytes_per_client: float  # the same frames through permessage-deflate (page 0)
    compressed_once_bytes_per_client: float  # each frame compressed on its own (page 0)
    server_cpu: float  # CPU seconds per second of publishing
    harness_cpu: float
    cut_off: int
    reconnects: int
    resyncs: int  # snapshot frames pages received after their first (they missed a frame)
    published: int

    def summary(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if not k.endswith("latencies_ms")}
        for name in ("latencies_ms", "bare_latencies_ms"):
            values = getattr(self, name)
            data[name] = {f"p{q}": percentile(values, q) for q in (50, 95, 99, 100)}
            data[name]["count"] = len(values)
        return data


async def measure(
    stack: Stack,
    devices: int,
    clients: int,
    rate: float,
    duration: float,
    profile: Path | None = None,
    beside: Beside | None = None,
) -> Freshness:
    """Pages and the bare subscriber on one stream; with ``profile``, py-spy records the
    server while it publishes; with ``beside``, that runs during the measurement too."""
    building = stack.add_building(devices, SEED, clients)
    directory = stack.directory / f"fresh-{clients}"
    directory.mkdir(exist_ok=True)
    topics_file = directory / "topics.json"
    topics_file.write_text(json.dumps({building.id: building.topics}))
    record = directory / "bare.bin"
    bare = await Worker.start(
        "bare subscriber",
        "bench.workers",
        "subscriber",
        "--port",
        str(stack.broker.port),
        "--topics",
        str(topics_file),
        "--record",
        str(record),
    )
    pages: list[PageClient] = []
    extra = contextlib.AsyncExitStack()
    try:
        await bare.expect("READY", timeout=120)
        pages = await open_pages(stack.urls, building.id, building.sessions[:clients])
        await until_bridged(stack, building, pages[0])
        if beside is not None:
            await extra.enter_async_context(beside(stack, building))
        for page in pages:
            page.record_from = SEQUENCER.next.get(building.id, 1)
        await stack.until_quiet()
        marks = [(p.stats.wire_bytes, p.stats.frames) for p in pages]
        deflated = pages[0].stats.deflated_bytes
        once = pages[0].stats.compressed_once_bytes
        servers, me = [psutil.Process(pid) for pid in stack.server_pids], psutil.Process()
        cpu0 = (cpu_seconds(servers), sum(me.cpu_times()[:2]))
        profiler = None
        if profile is not None:
            profiler = await Profile(stack.server_pid, profile, duration).start()
        stream = await publish_stream(stack, building, rate, duration, f"fresh-{clients}")
        await settle(pages, stream)
        if profiler is not None:
            await profiler.stop()
        seconds = stream.end - stream.start
        cpu1 = (cpu_seconds(servers), sum(me.cpu_times()[:2]))
        sent = [
            (p.stats.wire_bytes - b, p.stats.frames - f)
            for p, (b, f) in zip(pages, marks, strict=True)
        ]
        deflated = pages[0].stats.deflated_bytes - deflated
        once = pages[0].stats.compressed_once_bytes - once
        await bare.ask("STOP")
    finally:
        await extra.aclose()
        await close_all(pages)
        await bare.close()
    shares = [final_share(p.stats.latest, stream.last) for p in pages]
    bare_seqs, bare_times = read_record(record)
    bare_latest: dict[str, int] = {}
    bare_latency = []
    for seq, t in zip(bare_seqs, bare_times, strict=True):
        sent_at = stream.sent_at(seq)
        if sent_at is not None:
            bare_latency.append((t - sent_at) * 1000)
            bare_latest[stream.device_of(seq)] = seq
    latencies = [
        (t - sent_at) * 1000
        for p in pages
        for seq, t in zip(p.stats.seqs, p.stats.times, strict=True)
        if (sent_at := stream.sent_at(seq)) is not None
    ]
    return Freshness(
        clients=clients,
        latencies_ms=latencies,
        bare_latencies_ms=bare_latency,
        final_share=statistics.fmean(shares),
        worst_final_share=min(shares),
        bare_final_share=final_share(bare_latest, stream.last),
        bytes_per_client=statistics.fmean(b for b, _ in sent) / seconds,
        frames_per_client=statistics.fmean(f for _, f in sent) / seconds,
        deflated_bytes_per_client=deflated / seconds,
        compressed_once_bytes_per_client=once / seconds,
        server_cpu=(cpu1[0] - cpu0[0]) / seconds,
        harness_cpu=(cpu1[1] - cpu0[1]) / seconds,
        cut_off=sum(p.stats.cut_off for p in pages),
        reconnects=sum(p.stats.connects - 1 for p in pages),
        resyncs=sum(p.stats.resyncs for p in pages),
        published=len(stream.times),
    )


def read_record(path: Path) -> tuple[array, array]:
    data = path.read_bytes()
    half = len(data) // 2
    seqs, times = array("q"), array("d")
    seqs.frombytes(data[:half])
    times.frombytes(data[half:])
    return seqs, times


def final_share(latest: dict[str, int], last: dict[str, int]) -> float:
    """Percent of devices whose last published value is the one shown."""
    if not last:
        return 0.0
    return 100.0 * sum(latest.get(d) == seq for d, seq in last.items()) / len(last)


async def settle(pages: list[PageClient], stream: Stream) -> None:
    """Until every page shows every device's last value, or SETTLE_SECONDS pass."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_SECONDS
    await asyncio.sleep(GRACE_SECONDS)
    while loop.time() < deadline:
        if all(final_share(s.latest, stream.last) == 100.0 for s in await stats_of(pages)):
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)  # frames in flight (status tiles) count too


@dataclass
class Bandwidth:
    clients: int
    bytes_per_client: float
    frames_per_client: float
    published: int


async def measure_baseline(
    stack: Stack, devices: int, clients: int, rate: float, duration: float
) -> Bandwidth:
    """The same stream to raw MQTT-over-WebSocket subscribers (QoS 0) of the building."""
    building = stack.add_building(devices, SEED, 1)
    port = stack.broker.ws_port
    assert port is not None
    subscribers = await open_mqtt_clients(port, building.topics, clients)
    try:
        marks = [(c.wire_bytes, c.frames) for c in subscribers]
        stream = await publish_stream(stack, building, rate, duration, f"ws-{clients}")
        await asyncio.sleep(1.0)
        seconds = stream.end - stream.start
        sent = [
            (c.wire_bytes - b, c.frames - f) for c, (b, f) in zip(subscribers, marks, strict=True)
        ]
    finally:
        await close_all(subscribers)
    return Bandwidth(
        clients=clients,
        bytes_per_client=statistics.fmean(b for b, _ in sent) / seconds,
        frames_per_client=statistics.fmean(f for _, f in sent) / seconds,
        published=len(stream.times),
    )


def slack_ms(pages: int) -> float:
    """How far past the coalescing window a p99 may go: issue #20's 50 ms up to 100 pages,
    150 ms beyond (1,000 pages on one web process)."""
    return 50 if pages <= 100 else 150


def freshness_figures(result: Freshness, window_ms: float, suffix: str = "") -> list[Figure]:
    lat, bare = result.latencies_ms, result.bare_latencies_ms
    slack = slack_ms(result.clients)
    out = [
        figure(
            f"fresh.latency_p{q}{suffix}",
            percentile(lat, q),
            "ms",
            percentile(bare, q),
            Target("value", "<=", window_ms + slack) if q == 99 else None,
        )
        for q in (50, 95, 99)
    ]
    out.append(
        figure(
            f"fresh.final_values{suffix}",
            result.worst_final_share,
            "%",
            result.bare_final_share,
            Target("value", ">=", 100),
        )
    )
    return out


def bandwidth_figures(result: Freshness, baseline: Bandwidth, suffix: str = "") -> list[Figure]:
    return [
        figure(
            f"bandwidth.bytes_per_client{suffix}",
            result.bytes_per_client,
            "B/s",
            baseline.bytes_per_client,
            Target("ratio", "<=", 0.2),
        ),
        figure(
            f"bandwidth.frames_per_client{suffix}",
            result.frames_per_client,
            "frames/s",
            baseline.frames_per_client,
        ),
    ]
