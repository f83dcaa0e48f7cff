"""Variants of the product measured against it in the same run, by monkeypatching inside the
bench's own processes (the product code is not changed).

``python -m bench.experiments [DEVICES [SECONDS [VARIANT ...]]]`` measures bridge variants
(``python -m bench.workers bridge --variant NAME``) against the bare subscriber, each in its
own two phases:

- ``as-is``: the product (history written by a child process, ``HISTORY_WRITER=process``).
- ``thread-history``: history written by a thread of the bridge's process, as before.
- ``no-history``: history records are dropped (an upper bound: what history costs).
- ``django-tiles``: tiles rendered by Django's engine from the fragments as they were before
  Jinja2 (``bench.tile_render.BEFORE``): the previous render, beside the product's.
- ``no-rollups``: history written without its rollup step (``dashboard.live.rollups.write``
  does nothing), in the bridge's process and in the history writer's child, which is then
  started as ``python -m bench.writer_child no-rollups``: what the rollups add to ingest.

``python -m bench.experiments serve [PAGES [SECONDS [VARIANT ...]]]`` measures server variants
(``bench.serve_variant``) by freshness, a fresh server each:

- ``deflate``: daphne also accepts permessage-deflate, which browsers offer, compressing every
  frame again per page (the fan-out already deflates each busy frame once for all pages).
- ``trace``: the product, recording where a value's wait goes (flush period, rendering,
  sending, the last page's forward, event-loop lag); its percentiles are printed.
- ``collections``: the product, recording each full garbage collection (when, how long, how
  many objects it looked at, the types that came since the last one); printed one per line.
- ``cprofile``: the product under cProfile (its event loop's thread), written at exit to
  ``$BENCH_PROFILE`` (``python -m bench.paired --variant cprofile`` profiles the one-page
  stream; py-spy's samples are unusable on some machines of this kind).
- ``stalls``: each process of the dashboard (``serve``, ``serve --no-bridge``, ``run_bridge``)
  recording, as JSON lines to ``$BENCH_TRACE.stalls.<pid>`` with ``time.monotonic()`` (shared
  by every process on the machine): each event-loop lag over 10 ms with the CPU its thread
  spent meanwhile (little CPU: the process waited for a core; as much as the lag: it worked),
  each collection over 5 ms, each busy flush of the fan-out (its sequence numbers) and each
  frame the web process's hub handed out. ``stalls_summary`` lines them up with the late values.
- ``costs``: the product, adding up the CPU its loop's thread spends in each read from the
  broker (the ingest of its messages included), in ingest, in tile renders and in flushes;
  written at exit to ``$BENCH_PROFILE`` as JSON (seconds and calls of each, and the thread's
  total). Timing each call adds about a tenth.

The fixes first prototyped here (one executemany per history batch, reading every waiting
packet per wake-up, no thread hop per frame) are now in the product; docs/benchmarks.md keeps
their measurements.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

VARIANTS = ("as-is", "thread-history", "no-history", "django-tiles", "no-rollups")
SERVER_VARIANTS = ("as-is", "deflate", "trace", "collections", "cprofile", "costs", "stalls")


def apply(variant: str) -> None:
    """Apply a variant, or several joined by "+"."""
    for part in variant.split("+"):
        if part not in VARIANTS:
            raise SystemExit(f"unknown variant {part!r}; one of {', '.join(VARIANTS)}")
        PATCHES.get(part, lambda: None)()


def _no_history() -> None:
    from dashboard.bridge.history import HistoryWriter

    HistoryWriter.add = lambda self, building_id, record: None  # type: ignore[method-assign]


def _no_rollup_step() -> None:
    """The writer's half of ``no-rollups``, for whichever process writes history."""
    from dashboard.live import rollups

    rollups.write = lambda headcounts, meta, tables=None: 0  # type: ignore[assignment]


def _no_rollups() -> None:
    """No rollups in this process (``thread-history``), nor in the writer child it starts:
    a fresh interpreter, so the child is ``bench.writer_child``, which patches itself."""
    import subprocess

    from dashboard.bridge import writer_process

    _no_rollup_step()

    def start(self: writer_process.WriterProcess) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.writer_child", "no-rollups"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=writer_process.ROOT,
        )

    writer_process.WriterProcess._start = start  # type: ignore[method-assign]


def _thread_history() -> None:
    from django.conf import settings

    settings.HISTORY_WRITER = "thread"
    os.environ["HISTORY_WRITER"] = "thread"


def _django_tiles() -> None:
    from django.template import Context, Engine

    from bench.tile_render import BEFORE, git
    from dashboard.live import fragment_engine

    folder = "templates/dashboard/fragments"
    names = git("ls-tree", "--name-only", f"{BEFORE}:{folder}").split()
    texts = {f"dashboard/fragments/{n}": git("show", f"{BEFORE}:{folder}/{n}") for n in names}
    engine = Engine(
        loaders=[("django.template.loaders.locmem.Loader", texts)],
        libraries={"tz": "django.templatetags.tz"},
    )
    compiled = {name: engine.get_template(name) for name in texts}

    def render(template: str, context: dict[str, Any]) -> str:
        return compiled[template].render(Context(context))

    fragment_engine.render = render  # type: ignore[assignment]


def _deflate() -> None:
    import daphne.server
    from autobahn.websocket.compress import PerMessageDeflateOffer, PerMessageDeflateOfferAccept

    def accept(offers: list[Any]) -> Any:
        for offer in offers:
            if isinstance(offer, PerMessageDeflateOffer):
                return PerMessageDeflateOfferAccept(offer)
        return None

    class CompressingFactory(daphne.server.WebSocketFactory):  # type: ignore[misc,name-defined]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.setProtocolOptions(perMessageCompressionAccept=accept)

    daphne.server.WebSocketFactory = CompressingFactory  # type: ignore[attr-defined]


def _trace() -> None:
    """Record where a value's wait goes, as JSON lines to ``$BENCH_TRACE``: each flush (start,
    rendering done, sent), each page's forward of a busy frame, and the event loop's lag."""
    import json
    import time

    from dashboard.bridge.fanout import Fanout
    from dashboard.consumers import LiveConsumer

    out = open(os.environ["BENCH_TRACE"], "a")  # noqa: SIM115 - open while the server runs
    flush, render_one, live_fragments = (
        Fanout.flush,
        Fanout._render_one,
        LiveConsumer.live_fragments,
    )

    def write(**record: float) -> None:
        out.write(json.dumps(record) + "\n")

    def traced_render_one(self: Any, tile: Any) -> str:
        html = render_one(self, tile)
        self.trace_rendered = time.monotonic()
        return html

    async def traced_flush(self: Any) -> None:
        self.trace_rendered = start = time.monotonic()
        await flush(self)
        write(start=start, rendered=self.trace_rendered, end=time.monotonic())
        if not hasattr(self, "trace_lag"):
            self.trace_lag = asyncio.get_running_loop().create_task(lag())

    async def lag() -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.005)
            write(lag=time.monotonic() - before - 0.005)

    async def traced_live_fragments(self: Any, event: dict[str, Any]) -> None:
        await live_fragments(self, event)
        if isinstance(event["frame"], bytes):
            write(seq=event["seq"], forwarded=time.monotonic())

    Fanout.flush = traced_flush  # type: ignore[method-assign]
    Fanout._render_one = traced_render_one  # type: ignore[method-assign]
    LiveConsumer.live_fragments = traced_live_fragments  # type: ignore[method-assign]


def trace_summary(path: str) -> str:
    """Percentiles of what ``_trace`` recorded: flush period and parts, forwards, loop lag."""
    import bisect
    import json
    from collections import defaultdict

    from bench.figures import percentile

    flushes, lags, forwards = [], [], defaultdict(list)
    with open(path) as lines:
        for line in lines:
            record = json.loads(line)
            if "lag" in record:
                lags.append(record["lag"] * 1000)
            elif "forwarded" in record:
                forwards[record["seq"]].append(record["forwarded"])
            elif record["end"] - record["start"] > 0.003:  # a busy frame, not a status tile
                flushes.append(record)
    starts = [f["start"] for f in flushes]
    ends = sorted(f["end"] for f in flushes)
    last_forward = []
    for times in forwards.values():
        i = bisect.bisect_right(ends, min(times)) - 1
        if i >= 0:
            last_forward.append((max(times) - ends[i]) * 1000)
    rows = {
        "flush period": [(b - a) * 1000 for a, b in itertools.pairwise(starts)],
        "flush: rendering": [(f["rendered"] - f["start"]) * 1000 for f in flushes],
        "flush: packing, sending": [(f["end"] - f["rendered"]) * 1000 for f in flushes],
        "last page forwarded after": last_forward,
        "event loop lag": lags,
    }
    return "\n".join(
        f"{name:28} p50 {percentile(v, 50):7.1f}  p90 {percentile(v, 90):7.1f}  "
        f"p99 {percentile(v, 99):7.1f} ms"
        for name, v in rows.items()
        if v
    )


def _collections() -> None:
    """Record each full collection as JSON lines to ``$BENCH_TRACE.collections``."""
    import gc
    import json
    import time
    from collections import Counter

    out = open(os.environ["BENCH_TRACE"] + ".collections", "a")  # noqa: SIM115
    left: Counter[str] = Counter()  # types in the oldest generation after the last one
    began = [0.0, 0]

    def census() -> Counter[str]:
        return Counter(type(o).__qualname__ for o in gc.get_objects(generation=2))

    def callback(phase: str, info: dict[str, Any]) -> None:
        nonlocal left
        if info["generation"] != 2:
            return
        if phase == "start":
            seen = census()
            came = (seen - left).most_common(8)
            began[:] = [time.perf_counter(), sum(seen.values())]
            out.write(json.dumps({"at": time.time(), "objects": began[1], "came": came}) + "\n")
        else:
            took = (time.perf_counter() - began[0]) * 1000
            out.write(json.dumps({"took_ms": round(took, 1), "collected": info["collected"]}))
            out.write("\n")
            out.flush()
            left = census()  # before the product's own callback, if any, freezes it

    gc.callbacks.insert(0, callback)


def collections_summary(path: str) -> str:
    import json

    with open(path) as records:
        lines = [json.loads(line) for line in records]
    return "\n".join(
        f"{a['at'] % 1000:8.1f} s  {a['objects']:7d} objects  {b['took_ms']:6.1f} ms  "
        f"collected {b['collected']:6d}  came {a['came'][:4]}"
        for a, b in zip(lines[::2], lines[1::2], strict=False)
    )


def _stalls() -> None:
    """See the module's docstring: where a stall of the whole stream comes from."""
    import gc
    import json
    import time

    from dashboard.bridge.fanout import Fanout
    from dashboard.live.hub import Hub

    out = open(f"{os.environ['BENCH_TRACE']}.stalls.{os.getpid()}", "a")  # noqa: SIM115
    sampled: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}

    def write(**record: Any) -> None:
        out.write(json.dumps(record) + "\n")
        out.flush()  # a few a second; a process that is killed keeps what it recorded

    async def lag() -> None:
        while True:
            before, cpu = time.monotonic(), time.thread_time()
            await asyncio.sleep(0.005)
            late = time.monotonic() - before - 0.005
            if late > 0.010:
                write(lag=late * 1000, at=before, cpu=(time.thread_time() - cpu) * 1000)

    def sample() -> None:
        loop = asyncio.get_running_loop()
        if loop not in sampled:
            sampled[loop] = loop.create_task(lag())

    began = [0.0]

    def collected(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            began[0] = time.monotonic()
        elif (took := time.monotonic() - began[0]) > 0.005:
            write(gc=info["generation"], at=began[0], took=took * 1000)

    gc.callbacks.append(collected)
    flush, hand_out = Fanout.flush, Hub.hand_out

    async def traced_flush(self: Any) -> None:
        sample()
        start = time.monotonic()
        await flush(self)
        if (end := time.monotonic()) - start > 0.003:
            write(flush=start, end=end, seq=dict(self.seq))

    def traced_hand_out(self: Any, message: dict[str, Any]) -> None:
        sample()
        start = time.monotonic()
        hand_out(self, message)
        if "frame" in message and len(message["frame"]) > 2000:
            write(hub=start, end=time.monotonic(), seq=message.get("seq"))

    Fanout.flush = traced_flush  # type: ignore[method-assign]
    Hub.hand_out = traced_hand_out  # type: ignore[method-assign]


def _when(starts: list[float], at: float) -> str:
    """A moment as the round whose stream it falls in (or the last before it) and its second."""
    i = max([i for i, s in enumerate(starts) if s <= at + 1] or [0])
    return f"r{i + 1} {at - starts[i]:6.2f} s"


def stalls_summary(results: str) -> str:
    """What ``_stalls`` recorded in each process next to the late values of scenario 8 in a
    ``bench.run --server-variant stalls`` results file (times from each round's first publish)."""
    import glob
    import json

    from bench.figures import percentile

    details = json.loads(Path(results).read_text())["details"]["broadcast"]
    lines: list[str] = []
    for name, result in details.items() if isinstance(details, dict) else ():
        if not isinstance(result, dict) or "stream_starts" not in result:
            continue
        starts = result["stream_starts"]
        lines.append(f"{name}: late values by decisecond {result['late_by_publish_decisecond']}")

        spans = [(s - 1, s + 40) for s in starts]
        for path in sorted(glob.glob(str(Path(results).with_suffix(".trace")) + ".stalls.*")):
            records = [json.loads(line) for line in Path(path).read_text().splitlines()]
            records = [
                r
                for r in records
                if any(a <= r.get("at", r.get("flush", r.get("hub", -1))) <= b for a, b in spans)
            ]
            role = (
                "bridge"
                if any("flush" in r for r in records)
                else "web with pages"
                if any("hub" in r for r in records)
                else "other"
            )
            lags = [r for r in records if "lag" in r]
            gcs = [r for r in records if "gc" in r]
            lines.append(
                f"  {role} ({path.rsplit('.', 1)[1]}): {len(lags)} lags over 10 ms, "
                f"{sum(r['lag'] for r in lags):.0f} ms in all; {len(gcs)} collections over "
                f"5 ms, {sum(r['took'] for r in gcs):.0f} ms"
            )
            for r in sorted(lags, key=lambda r: -r["lag"])[:8]:
                lines.append(
                    f"    lag {r['lag']:6.1f} ms at {_when(starts, r['at'])}, CPU {r['cpu']:6.1f} ms"
                )
            for r in sorted(gcs, key=lambda r: -r["took"])[:4]:
                lines.append(
                    f"    gen{r['gc']} collection {r['took']:6.1f} ms at {_when(starts, r['at'])}"
                )
            flushes = {tuple(sorted(r["seq"].items())): r for r in records if "flush" in r}
            if flushes:
                took = [(r["end"] - r["flush"]) * 1000 for r in flushes.values()]
                lines.append(
                    f"    flush p50 {percentile(took, 50):.1f} p99 {percentile(took, 99):.1f} max {max(took):.1f} ms"
                )
            hubs = [r for r in records if "hub" in r]
            if hubs:
                took = [(r["end"] - r["hub"]) * 1000 for r in hubs]
                lines.append(
                    f"    hand-out p50 {percentile(took, 50):.1f} p99 {percentile(took, 99):.1f} max {max(took):.1f} ms"
                )
    return "\n".join(lines)


def _cprofile() -> None:
    """Profile the server's main thread until it exits (a clean ``serve`` shutdown)."""
    import atexit
    import cProfile

    profile = cProfile.Profile()
    atexit.register(lambda: profile.dump_stats(os.environ["BENCH_PROFILE"]))
    profile.enable()


def _costs() -> None:
    """CPU seconds of the loop's thread in the bridge's steps (see the module's docstring)."""
    import atexit
    import functools
    import json
    import time

    from dashboard.bridge.building import BuildingBridge
    from dashboard.bridge.fanout import Fanout
    from dashboard.bridge.loop_driven import LoopDriven

    totals: dict[str, list[float]] = {}

    def timed(owner: type, attribute: str, step: str) -> None:
        real = getattr(owner, attribute)
        spent = totals[step] = [0.0, 0]

        def add(began: float) -> None:
            spent[0] += time.thread_time() - began
            spent[1] += 1

        if asyncio.iscoroutinefunction(real):

            @functools.wraps(real)
            async def waited(*args: Any, **kwargs: Any) -> Any:
                began = time.thread_time()
                try:
                    return await real(*args, **kwargs)
                finally:
                    add(began)

            setattr(owner, attribute, waited)
        else:

            @functools.wraps(real)
            def called(*args: Any, **kwargs: Any) -> Any:
                began = time.thread_time()
                try:
                    return real(*args, **kwargs)
                finally:
                    add(began)

            setattr(owner, attribute, called)

    timed(LoopDriven, "_read", "read")
    timed(BuildingBridge, "on_message", "ingest")
    timed(Fanout, "_render_one", "render")
    timed(Fanout, "flush", "flush")

    def write() -> None:
        with open(os.environ["BENCH_PROFILE"], "w") as out:
            json.dump({"thread": time.thread_time(), **totals}, out)

    atexit.register(write)


def apply_server(variant: str) -> None:
    if variant not in SERVER_VARIANTS:
        raise SystemExit(f"unknown server variant {variant!r}; one of {SERVER_VARIANTS}")
    SERVER_PATCHES.get(variant, lambda: None)()


SERVER_PATCHES: dict[str, Callable[[], None]] = {
    "deflate": _deflate,
    "trace": _trace,
    "collections": _collections,
    "cprofile": _cprofile,
    "costs": _costs,
    "stalls": _stalls,
}
PATCHES: dict[str, Callable[[], None]] = {
    "no-history": _no_history,
    "thread-history": _thread_history,
    "django-tiles": _django_tiles,
    "no-rollups": _no_rollups,
}
# What each variant changes in the history writer's child process (bench.writer_child).
WRITER_PATCHES: dict[str, Callable[[], None]] = {"no-rollups": _no_rollup_step}


async def main(devices: int = 500, seconds: float = 15.0, variants: tuple[str, ...] = ()) -> None:
    from bench.harness import Stack, workdir
    from bench.ingest import measure

    directory = workdir()
    stack = Stack(directory).start()
    try:
        for variant in variants or VARIANTS:
            result, _ = await measure(stack, devices, seconds, variant=variant)
            print(
                f"{variant:18} bridge {result.bridge_rate:8.0f} msg/s  bare "
                f"{result.baseline_rate:8.0f} msg/s  ratio "
                f"{result.bridge_rate / result.baseline_rate:.3f}  missing {result.bridge_missing}"
                f"  history write failures {result.history_failures}",
                flush=True,
            )
    finally:
        stack.stop()
        shutil.rmtree(directory, ignore_errors=True)


async def serve_main(
    clients: int = 100, seconds: float = 15.0, variants: tuple[str, ...] = ()
) -> None:
    from bench import freshness
    from bench.figures import percentile
    from bench.harness import Stack, workdir

    # as-is again at the end: how much the machine drifted meanwhile
    for variant in variants or (*SERVER_VARIANTS, "as-is"):
        directory = workdir()
        trace = directory / "trace.jsonl"
        os.environ["BENCH_TRACE"] = str(trace)  # for the served process
        stack = Stack(directory, server_variant=variant).start()
        try:
            r = await freshness.measure(stack, 500, clients, 2000, seconds)
            print(
                f"{variant:22} p50 {percentile(r.latencies_ms, 50):6.0f} ms  p99 "
                f"{percentile(r.latencies_ms, 99):6.0f} ms  final {r.worst_final_share:5.1f} %  "
                f"{r.bytes_per_client:9.0f} B/s per page  server CPU {r.server_cpu:.2f} s/s  "
                f"resyncs {r.resyncs}",
                flush=True,
            )
            if trace.exists():
                print(trace_summary(str(trace)), flush=True)
            if os.path.exists(f"{trace}.collections"):
                print(collections_summary(f"{trace}.collections"), flush=True)
        finally:
            stack.stop()
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    if args and args[0] == "stalls":  # stalls RESULTS.json
        print(stalls_summary(args[1]))
    elif args and args[0] == "serve":  # serve [pages [seconds [variant ...]]]
        pages = int(args[1]) if len(args) > 1 else 100
        seconds = float(args[2]) if len(args) > 2 else 15.0
        asyncio.run(serve_main(pages, seconds, tuple(args[3:])))
    else:
        devices = int(args[0]) if args else 500  # [devices [seconds [variant ...]]]
        asyncio.run(main(devices, float(args[1]) if len(args) > 1 else 15.0, tuple(args[2:])))
