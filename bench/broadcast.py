"""Scenario 8, broadcast: the server's CPU per page-frame against a bare WebSocket server.

Pages (``bench.pagefleet``, in several processes so the harness is not what is measured)
are open on one building while the publisher streams values, as in scenario 2; one more page,
in the harness, records every frame as it came off the wire and when. Then the baseline: a
bare asyncio server of the ``websockets`` library (``python -m bench.broadcast serve``),
nothing but a set of connections and ``websockets.broadcast``, sends the same frames at the
same moments to as many pages of the same client code, which acknowledge each as they do the
dashboard's. Each side's figure is its process's CPU seconds over the frames its pages got,
over ``ROUNDS`` rounds each, in the order dashboard, bare, bare, dashboard.

The dashboard's process is the web server with its bridge (``manage.py serve``), so its
figure also holds the stream's MQTT ingest and the tiles' render; the baseline only sends.
Also reported: the same per page-frame less the server's CPU for the same stream with one page
open (what the pages add: forwarding, not ingest and render), freshness (p99) and final values of the dashboard's pages, and the CPU the
page processes and the harness used.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import pickle
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from bench.clients import PageClient, close_all, open_pages
from bench.figures import Figure, Target, figure
from bench.freshness import (
    SEED,
    SEQUENCER,
    SETTLE_SECONDS,
    publish_stream,
    settle,
    slack_ms,
    until_bridged,
)
from bench.harness import Building, Stack, Worker, quiet
from bench.pagefleet import PageFleet, percentile_of
from bench.profiling import Profile

PROCESSES = 3  # page processes: with the harness and the server, more than the two cores


@dataclass
class Broadcast:
    pages: int
    processes: int
    rounds: int  # the dashboard's streams, and as many replays by the bare server (ROUNDS)
    seconds: float  # of publishing, over every round
    frames_per_page: float  # dashboard, per second of publishing
    server_cpu: float  # CPU seconds of the dashboard's process over the stream
    server_us_per_page_frame: float
    server_cpu_by_round: list[float]
    solo_cpu: float  # the same stream with one page open: ingest and render, next to nothing sent
    others_cpu: float  # scaled out: the dashboard's other processes (its bridge worker)
    fanout_us_per_page_frame: float  # what the pages added, per page-frame
    bare_frames_per_page: float
    bare_cpu: float
    bare_us_per_page_frame: float
    bare_cpu_by_round: list[float]
    pages_cpu: float  # the page processes, per second, during the dashboard's stream
    harness_cpu: float  # the harness itself, likewise
    window_seconds: float  # from the counters' start to their end: the stream and its settling
    machine_cpu: float  # cores the whole machine was busy over that window
    machine_steal: float  # cores the hypervisor took from the machine over it
    bare_pages_cpu: float
    bare_machine_cpu: float  # cores, over the bare server's own window
    bare_delivered: float  # percent of the recorded frames each bare page received
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    # Values shown later than the target, by the tenth of a second of the stream they were
    # published in (the ten busiest): where the late ones cluster.
    late_by_publish_decisecond: dict[int, int]
    # Each round's first publish (time.monotonic(), the same in every process): where the
    # deciseconds above begin, to line them up with a server variant's records.
    stream_starts: list[float]
    worst_final_share: float
    reconnects: dict[str, int]

    def summary(self) -> dict[str, Any]:
        return asdict(self)


def cpu(pid: int) -> float:
    return sum(psutil.Process(pid).cpu_times()[:2])


def others_cpu_of(stack: Stack) -> float:
    """CPU seconds of the dashboard's processes but the measured server (scaled out: the
    bridge worker and the other web process; none in one process)."""
    return sum(cpu(pid) for pid in stack.server_pids if pid != stack.server_pid)


def machine() -> tuple[float, float, float]:
    """Now, with the CPU seconds the whole machine was busy (every process: Mosquitto, the
    publisher, the history writer too) and those the hypervisor took from it (steal)."""
    times = psutil.cpu_times()
    idle = times.idle + getattr(times, "iowait", 0.0)
    steal = getattr(times, "steal", 0.0)
    return time.monotonic(), sum(times) - idle - steal, steal


# The dashboard's stream, the bare server's replay, the replay again, the stream again: the
# machine's speed drifts within a run (the bare server's CPU for the same frames was 1.95 and
# 2.75 s in two runs minutes apart), and in this order a steady drift meets both sides alike.
ROUNDS = 2


@dataclass
class _Round:
    """One stream of the dashboard to its pages, and what its counters said."""

    seconds: float
    server_cpu: float
    others_cpu: float
    frames_got: int
    pages_cpu: float
    harness_cpu: float
    window_seconds: float
    machine_busy: float
    machine_steal: float
    histogram: Counter[int]
    late: Counter[int]
    started: float
    shares: list[float]
    reconnects: dict[str, int]


async def measure(
    stack: Stack,
    devices: int,
    pages: int,
    rate: float,
    duration: float,
    window_ms: float,
    processes: int = PROCESSES,
    profile: Path | None = None,
    rounds: int = ROUNDS,
) -> Broadcast:
    """With ``profile``, py-spy records the server while the pages get the first stream."""
    building = stack.add_building(devices, SEED, pages + 1)
    url = stack.url
    recorder = await open_pages(url, building.id, building.sessions[:1])
    # The building may have more sessions than this needs (scenario 6 made 1,000 of them).
    sessions = building.sessions[1 : pages + 1]
    frames: list[tuple[float, str | bytes]] = []
    try:
        await until_bridged(stack, building, recorder[0])
        solo_cpu = await alone(stack, building, recorder[0], rate, duration)
        stream = functools.partial(
            _stream, stack, building, recorder[0], sessions, processes, rate, duration, window_ms
        )
        ours = [await stream(1, frames, profile)]
        bare = [await measure_bare(stack, building.id, sessions, frames, processes)]
        for round_ in range(2, rounds + 1):
            bare.append(await measure_bare(stack, building.id, sessions, frames, processes))
            ours.append(await stream(round_, None, None))
    finally:
        await close_all(recorder)
    seconds = sum(r.seconds for r in ours)
    server_cpu = sum(r.server_cpu for r in ours)
    frames_got = sum(r.frames_got for r in ours)
    window = sum(r.window_seconds for r in ours)
    histogram: Counter[int] = sum((r.histogram for r in ours), Counter())
    late: Counter[int] = sum((r.late for r in ours), Counter())
    bare_cpu = sum(b["cpu"] for b in bare)
    bare_frames = sum(b["frames"] for b in bare)
    bare_seconds = len(bare) * seconds / len(ours)
    return Broadcast(
        pages=pages,
        processes=processes,
        rounds=len(ours),
        seconds=seconds,
        frames_per_page=frames_got / pages / seconds,
        server_cpu=server_cpu,
        server_us_per_page_frame=server_cpu / frames_got * 1e6 if frames_got else 0.0,
        server_cpu_by_round=[round(r.server_cpu, 2) for r in ours],
        solo_cpu=solo_cpu,
        others_cpu=sum(r.others_cpu for r in ours),
        # The solo stream is one round's.
        fanout_us_per_page_frame=(server_cpu - solo_cpu * len(ours)) / frames_got * 1e6
        if frames_got
        else 0.0,
        bare_frames_per_page=bare_frames / pages / bare_seconds,
        bare_cpu=bare_cpu,
        bare_us_per_page_frame=bare_cpu / bare_frames * 1e6 if bare_frames else 0.0,
        bare_cpu_by_round=[round(b["cpu"], 2) for b in bare],
        pages_cpu=sum(r.pages_cpu for r in ours) / seconds,
        harness_cpu=sum(r.harness_cpu for r in ours) / seconds,
        window_seconds=window,
        machine_cpu=sum(r.machine_busy for r in ours) / window,
        machine_steal=sum(r.machine_steal for r in ours) / window,
        bare_pages_cpu=sum(b["pages_cpu"] for b in bare) / bare_seconds,
        bare_machine_cpu=sum(b["machine_cpu"] for b in bare) / len(bare),
        bare_delivered=100 * bare_frames / (pages * len(frames) * len(bare)) if frames else 0.0,
        latency_p50_ms=percentile_of(histogram, 50),
        latency_p99_ms=percentile_of(histogram, 99),
        late_by_publish_decisecond=dict(sorted(late.most_common(10))),
        stream_starts=[r.started for r in ours],
        worst_final_share=min((min(r.shares, default=0.0) for r in ours), default=0.0),
        reconnects=dict(sum((Counter(r.reconnects) for r in ours), Counter())),
    )


async def _stream(
    stack: Stack,
    building: Building,
    recorder: PageClient,
    sessions: list[str],
    processes: int,
    rate: float,
    duration: float,
    window_ms: float,
    round_: int,
    frames: list[tuple[float, str | bytes]] | None,
    profile: Path | None,
) -> _Round:
    """One stream to a fleet of pages opened for it; ``frames`` gets the recorder's frames."""
    pages = len(sessions)
    directory = stack.directory / f"broadcast-{pages}-{round_}"
    directory.mkdir(exist_ok=True)
    fleet = await PageFleet.open(stack.url, building.id, sessions, processes, directory)
    try:
        first = SEQUENCER.next.get(building.id, 1)
        recorder.record_from = first
        await fleet.record_from(first)
        # Counting reads each page's snapshot into its stats (pages parse what they got
        # lazily): done here, that work is not counted as the stream's.
        counted = await fleet.counts()
        await stack.until_quiet()
        recorder.recording = frames
        me = psutil.Process()
        began = (cpu(stack.server_pid), fleet.cpu_seconds(), sum(me.cpu_times()[:2]), *machine())
        others_began = others_cpu_of(stack)
        profiler = None
        if profile is not None:
            profiler = await Profile(stack.server_pid, profile, duration).start()
        stream = await publish_stream(
            stack, building, rate, duration, f"broadcast-{pages}-{round_}"
        )
        if profiler is not None:
            await profiler.stop()
        last_file = directory / "last.json"
        last_file.write_text(json.dumps(stream.last))
        shares = await fleet.settle(last_file, SETTLE_SECONDS)
        await asyncio.sleep(0.5)
        ended = (cpu(stack.server_pid), fleet.cpu_seconds(), sum(me.cpu_times()[:2]), *machine())
        others_cpu = others_cpu_of(stack) - others_began
        frames_got = (await fleet.counts())[0] - counted[0]
        recorder.recording = None
        times_file = directory / "times.bin"
        times_file.write_bytes(stream.times.tobytes())
        histogram = await fleet.freshness(times_file, stream.first)
        late = await fleet.late(times_file, stream.first, window_ms + slack_ms(pages))
        reconnects = await fleet.reconnects()
    finally:
        await fleet.close()
    return _Round(
        seconds=stream.end - stream.start,
        server_cpu=ended[0] - began[0],
        others_cpu=others_cpu,
        frames_got=frames_got,
        pages_cpu=ended[1] - began[1],
        harness_cpu=ended[2] - began[2],
        window_seconds=ended[3] - began[3],
        machine_busy=ended[4] - began[4],
        machine_steal=ended[5] - began[5],
        histogram=histogram,
        late=late,
        started=stream.times[0] if stream.times else stream.start,
        shares=shares,
        reconnects=reconnects,
    )


async def alone(
    stack: Stack, building: Building, page: PageClient, rate: float, duration: float
) -> float:
    """The server's CPU seconds for the same stream with one page open."""
    await stack.until_quiet()
    began = cpu(stack.server_pid)
    stream = await publish_stream(stack, building, rate, duration, "broadcast-alone")
    await settle([page], stream)
    return cpu(stack.server_pid) - began


async def measure_bare(
    stack: Stack,
    building_id: str,
    sessions: list[str],
    frames: list[tuple[float, str | bytes]],
    processes: int,
) -> dict[str, float]:
    """The recorded frames, at their moments, from a bare ``websockets`` server to as many
    pages; its CPU seconds and the frames the pages got."""
    directory = stack.directory / f"broadcast-bare-{len(sessions)}"
    directory.mkdir(exist_ok=True)
    recording = directory / "frames.pickle"
    recording.write_bytes(pickle.dumps(frames))
    server = await Worker.start(
        "bare websockets server", "bench.broadcast", "serve", str(recording)
    )
    try:
        port = await server.expect("PORT", timeout=60)
        fleet = await PageFleet.open(
            f"http://127.0.0.1:{port}", building_id, sessions, processes, directory
        )
        try:
            await quiet(server.pid)
            counted = await fleet.counts()
            began = (cpu(server.pid), fleet.cpu_seconds(), *machine())
            span = frames[-1][0] - frames[0][0] if frames else 0.0
            await server.ask("PLAY", timeout=span + 120)
            expected = counted[0] + len(sessions) * len(frames)
            deadline = time.monotonic() + SETTLE_SECONDS
            while (await fleet.counts())[0] < expected and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            ended = (cpu(server.pid), fleet.cpu_seconds(), *machine())
            got = (await fleet.counts())[0] - counted[0]
        finally:
            await fleet.close()
    finally:
        await server.close()
    return {
        "cpu": ended[0] - began[0],
        "frames": got,
        "pages_cpu": ended[1] - began[1],
        "machine_cpu": (ended[3] - began[3]) / (ended[2] - began[2]),
        "machine_steal": (ended[4] - began[4]) / (ended[2] - began[2]),
    }


def figures(result: Broadcast, window_ms: float) -> list[Figure]:
    suffix = f"@{result.pages}pages"
    slack = slack_ms(result.pages)
    return [
        figure(
            f"broadcast.cpu_per_page_frame{suffix}",
            result.server_us_per_page_frame,
            "µs",
            result.bare_us_per_page_frame,
            # Issue #20's target is at 1,000 pages; at 100 the stream's ingest and render,
            # which the bare server does not do, are most of the server's CPU.
            Target("ratio", "<=", 2.0) if result.pages >= 1000 else None,
        ),
        figure(
            f"broadcast.fanout_cpu_per_page_frame{suffix}",
            result.fanout_us_per_page_frame,
            "µs",
            result.bare_us_per_page_frame,
        ),
        # Baseline: the coalescing window, a value's wait by design.
        figure(
            f"broadcast.latency_p99{suffix}",
            result.latency_p99_ms,
            "ms",
            window_ms,
            Target("value", "<=", window_ms + slack),
        ),
        # Baseline: the share of the recorded frames the bare server's pages received.
        figure(
            f"broadcast.final_values{suffix}",
            result.worst_final_share,
            "%",
            result.bare_delivered,
            Target("value", ">=", 100),
        ),
        # The pages' processes and the harness, against the pages' processes on the bare server.
        figure(
            f"broadcast.client_cpu{suffix}",
            result.pages_cpu + result.harness_cpu,
            "cores",
            result.bare_pages_cpu,
        ),
        # Every process on the machine (Mosquitto, the publisher, the history writer, the
        # pages), over the window: near all cores, latency is the machine's, not the server's.
        figure(
            f"broadcast.machine_cpu{suffix}",
            result.machine_cpu,
            "cores",
            result.bare_machine_cpu,
        ),
    ]


# ------------------------------------------------------------------- the bare server


async def serve(recording: Path) -> None:
    import websockets
    from websockets.asyncio.server import ServerConnection

    frames: list[tuple[float, str | bytes]] = pickle.loads(recording.read_bytes())
    clients: set[ServerConnection] = set()

    async def page(ws: ServerConnection) -> None:
        await ws.send('<div id="bench-hello"></div>')  # a page opens on its first frame
        clients.add(ws)
        try:
            async for _ in ws:  # the acknowledgements, read as the dashboard reads them
                pass
        except websockets.ConnectionClosed:
            pass  # the page fleet ending its processes at the end of the run
        finally:
            clients.discard(ws)

    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[str] = asyncio.Queue()
    loop.add_reader(sys.stdin.fileno(), lambda: commands.put_nowait(sys.stdin.readline().strip()))
    async with websockets.serve(
        page, "127.0.0.1", 0, compression=None, max_size=None, ping_interval=None
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(f"PORT {port}", flush=True)
        while (command := await commands.get()) not in ("STOP", ""):
            if command == "PLAY":
                start = loop.time()
                base = frames[0][0] if frames else 0.0
                for at, frame in frames:
                    if (wait := start + at - base - loop.time()) > 0:
                        await asyncio.sleep(wait)
                    websockets.broadcast(clients, frame)
                print(
                    "= " + json.dumps({"sent": len(frames) - 1, "pages": len(clients)}), flush=True
                )
    loop.remove_reader(sys.stdin.fileno())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.broadcast")
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("recording", type=Path)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.recording))
    return 0


if __name__ == "__main__":
    sys.exit(main())
