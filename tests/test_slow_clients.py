"""A page that stops reading is cut off, and the other people watching do not notice.

A wall screen's browser hangs, or a laptop's network stalls: its page keeps the WebSocket
open but reads nothing more. The server must not keep queueing that page's frames without
bound, and everyone else watching the building must keep getting every value, as soon as
before. Two ways a page stops:

- **stalled**: not one more byte read from the socket (a raw socket, with a receive buffer as
  small as the kernel allows, that completed the handshake with a logged-in session and the
  page's Origin). What the server sends piles up in its kernel send buffer;
- **frozen**: the browser still reads the socket (and answers pings) but the page's script
  no longer runs, so no frame is acknowledged (``dashboard/consumers.py``: ``MAX_UNACKED``).

What really happens on ``manage.py serve`` (daphne, Twisted, autobahn), measured here:

- the consumer cuts a page off once ``MAX_UNACKED`` frames are unacknowledged, with close
  code 4013 (it asked for 1013 at first, which autobahn refuses: it allows 1000 and
  3000-4999; the consumer died with an error and left its groups behind, found here);
- daphne pings a page that has sent nothing for 20 s and drops it when no pong came within
  30 s. At the product's 250 ms coalescing window a viewer's page gets at most four frames a
  second, so a stalled socket is let go by this, after about 50 s, before the count; a
  frozen page answers pings, so only the count lets it go;
- after the close autobahn gives the page 1 s to answer, then aborts the connection (after
  an unanswered ping, at once): the server's kernel drops what it still held, and the server
  holds nothing more for it. Until then what was sent sits in the server's kernel send
  buffer (up to 4 MB here), not in the server's heap.

The stack, the publisher and the pages are the benchmark's (``bench/``,
docs/benchmarks.md). The default run is CI's: one run, with the coalescing window at 50 ms
so that ``MAX_UNACKED`` frames come within about 15 s. The strict comparison of the other
pages' freshness with and without a stalled page, alternating runs at the product's
timings, is ``@pytest.mark.soak`` (``make soak``). Figures: docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import statistics
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest
import websockets

import bench.harness
from bench.clients import PageClient, close_all, open_pages
from bench.figures import percentile
from bench.freshness import (
    SEED,
    Beside,
    Freshness,
    Stream,
    final_share,
    measure,
    publish_stream,
    settle,
    until_bridged,
)
from bench.harness import Building, Stack, machine_info, rss
from dashboard.consumers import MAX_UNACKED, TRY_AGAIN_LATER
from tests.reliability import (
    pages_missing_final_values,
    served_stack,
    server_output,
    trouble_in,
)

pytestmark = pytest.mark.broker

MB = 2**20
PING_SILENCE = 20.0  # daphne pings a page that sent nothing for this long...
PONG_TIMEOUT = 30.0  # ...and drops it when no pong came within this (daphne's defaults)
CLOSE_HANDSHAKE = 1.0  # autobahn's wait for the page's close reply before it aborts
RESULTS = Path(__file__).resolve().parent.parent / "bench" / "results"
CUT_OFF_LOGGED = "frames behind; cut off"  # what the server logs when the consumer cuts off

# --------------------------------------------------------------------- misbehaving pages


def server_socket(server_port: int, client_port: int) -> tuple[str, int] | None:
    """The server's side of a loopback connection, from /proc/net/tcp: its TCP state (hex,
    "01" is established) and the bytes queued in its kernel send buffer; None once gone."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state, queues = fields[1], fields[2], fields[3], fields[4]
        if (
            int(local.rsplit(":", 1)[1], 16) == server_port
            and int(remote.rsplit(":", 1)[1], 16) == client_port
        ):
            return state, int(queues.split(":")[0], 16)
    return None


class StalledPage:
    """A page whose socket is never read again once the WebSocket handshake is done."""

    def __init__(self, base_url: str, building_id: str, session: str) -> None:
        self.origin = base_url
        self.port = int(base_url.rsplit(":", 1)[1])
        self.path = f"/ws/buildings/{building_id}/"
        self.session = session
        self.sock: socket.socket | None = None
        self.client_port = 0
        self.opened_at = 0.0
        self.gone_after: float | None = None  # seconds from the handshake to the server's close
        self.max_queued = 0  # bytes, the most the server's kernel held for it
        self.samples: list[tuple[float, int]] = []  # (seconds, bytes queued)

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Before connecting, so the window it advertises stays tiny (Linux keeps 2,304 bytes).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", self.port))
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Origin: {self.origin}\r\nCookie: sessionid={self.session}\r\n\r\n"
        )
        await loop.sock_sendall(sock, request.encode())
        head = b""
        while not head.endswith(b"\r\n\r\n"):  # byte by byte: not one byte past the handshake
            byte = await asyncio.wait_for(loop.sock_recv(sock, 1), 30)
            if not byte:
                raise ConnectionError(f"closed during the handshake: {head!r}")
            head += byte
        assert head.startswith(b"HTTP/1.1 101"), head
        self.sock, self.client_port = sock, sock.getsockname()[1]
        self.opened_at = time.monotonic()

    def server_side(self) -> tuple[str, int] | None:
        return server_socket(self.port, self.client_port)

    async def watch(self, every: float = 0.2) -> None:
        """Follow what the server queues for this page until it lets the page go."""
        while self.gone_after is None:
            side = self.server_side()
            elapsed = time.monotonic() - self.opened_at
            if side is None or side[0] != "01":
                self.gone_after = elapsed
                return
            self.max_queued = max(self.max_queued, side[1])
            self.samples.append((round(elapsed, 1), side[1]))
            await asyncio.sleep(every)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()


@contextlib.asynccontextmanager
async def stalled_page(
    stack: Stack, building: Building, session: str
) -> AsyncIterator[StalledPage]:
    page = StalledPage(stack.url, building.id, session)
    await page.open()
    watching = asyncio.create_task(page.watch())
    try:
        yield page
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
        page.close()


def stalled_beside(session_index: int, opened: list[StalledPage]) -> Beside:
    """For ``bench.freshness.measure``: a stalled page on the building during the measurement."""

    @contextlib.asynccontextmanager
    async def beside(stack: Stack, building: Building) -> AsyncIterator[StalledPage]:
        async with stalled_page(stack, building, building.sessions[session_index]) as page:
            opened.append(page)
            yield page

    return beside


class FrozenPage:
    """A page whose browser still reads its socket (and answers pings), while its script,
    frozen, acknowledges nothing."""

    def __init__(self, base_url: str, building_id: str, session: str) -> None:
        self.url = base_url.replace("http://", "ws://") + f"/ws/buildings/{building_id}/"
        self.origin = base_url
        self.session = session
        self.frames = 0
        self.largest = 0  # bytes, the largest frame received
        self.close_code: int | None = None
        self.closed_after: float | None = None
        self._ws: Any = None
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        ws = await websockets.connect(
            self.url,
            origin=self.origin,
            additional_headers={"Cookie": f"sessionid={self.session}"},
            max_size=None,
            ping_interval=None,
        )
        self._ws = ws
        self._task = asyncio.create_task(self._read(ws, time.monotonic()))

    async def _read(self, ws: Any, opened_at: float) -> None:
        try:
            async for frame in ws:
                self.frames += 1
                self.largest = max(self.largest, len(frame))
        except websockets.ConnectionClosed:
            pass
        self.closed_after = time.monotonic() - opened_at
        self.close_code = ws.close_code

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.close(), 5)


# ------------------------------------------------------------------------ the CI variant

CI_WINDOW_MS = "50"  # MAX_UNACKED frames in ~15 s (at the product default, 250, ~55 s)
CI_DEVICES = 40
CI_PAGES = 10
CI_RATE = 400.0  # messages/s
CI_CHUNK = 4.0  # seconds per publisher run; publishing stops soon after the cut-offs
CI_DEADLINE = 75.0  # seconds of publishing at most (the ping timeout alone takes ~52 s)


@dataclass
class StallRun:
    """One run: ten pages that keep up, one stalled and one frozen page, on one building."""

    stalled_gone_after: float | None = None
    stalled_max_queued: int = 0
    stalled_samples: list[tuple[float, int]] = field(default_factory=list)
    frames_before_stalled_cut: int = 0  # what a page that keeps up received meanwhile
    frozen_frames: int = 0
    frozen_largest: int = 0
    frozen_close_code: int | None = None
    frozen_closed_after: float | None = None
    published_seconds: float = 0.0
    missing_final_values: dict[int, float] = field(default_factory=dict)
    pages_cut_off: int = 0
    pages_closed_otherwise: int = 0
    rss_before_mb: float = 0.0
    rss_most_mb: float = 0.0
    rss_after_mb: float = 0.0
    login_seconds: float = 0.0
    login_status: int = 0
    late_page_snapshot_seconds: float | None = None
    late_page_missing: float = 0.0  # percent of final values a page opened afterwards lacks
    trouble: list[str] = field(default_factory=list)
    output: str = ""


def fetch(url: str) -> tuple[int, float]:
    began = time.monotonic()
    with urllib.request.urlopen(url, timeout=30) as response:
        response.read()
        return response.status, time.monotonic() - began


async def count_frames_until_let_go(stalled: StalledPage, page: PageClient, run: StallRun) -> None:
    """How many frames a page that keeps up received from the stalled page's handshake until
    the server let the stalled page go: about what was sent to the stalled page."""
    start = page.stats.frames
    while stalled.gone_after is None:
        await asyncio.sleep(0.05)
    run.frames_before_stalled_cut = page.stats.frames - start


async def a_page_stops_reading(stack: Stack, run: StallRun) -> None:
    building = stack.add_building(CI_DEVICES, SEED, CI_PAGES + 3)
    sessions = building.sessions
    loop = asyncio.get_running_loop()
    pages: list[PageClient] = []
    frozen = FrozenPage(stack.url, building.id, sessions[CI_PAGES + 1])
    counting: asyncio.Task[None] | None = None
    try:
        pages = await open_pages(stack.url, building.id, sessions[:CI_PAGES])
        await until_bridged(stack, building, pages[0])
        run.rss_before_mb = rss(stack.server_pid) / MB
        async with stalled_page(stack, building, sessions[CI_PAGES]) as stalled:
            counting = asyncio.create_task(count_frames_until_let_go(stalled, pages[0], run))
            await frozen.open()
            began = loop.time()
            stream: Stream | None = None
            # Devices keep reporting until both pages were let go (or the deadline).
            while loop.time() - began < CI_DEADLINE:
                stream = await publish_stream(stack, building, CI_RATE, CI_CHUNK, "slow")
                run.rss_most_mb = max(run.rss_most_mb, rss(stack.server_pid) / MB)
                if stalled.gone_after is not None and frozen.closed_after is not None:
                    break
            run.published_seconds = loop.time() - began
            assert stream is not None
            await settle(pages, stream)
            run.stalled_gone_after = stalled.gone_after
            run.stalled_max_queued = stalled.max_queued
            run.stalled_samples = stalled.samples[::10]
        run.frozen_frames, run.frozen_largest = frozen.frames, frozen.largest
        run.frozen_close_code, run.frozen_closed_after = frozen.close_code, frozen.closed_after
        run.missing_final_values = pages_missing_final_values(pages, stream)
        run.pages_cut_off = sum(p.stats.cut_off for p in pages)
        run.pages_closed_otherwise = sum(p.stats.closed_other for p in pages)
        run.rss_after_mb = rss(stack.server_pid) / MB
        run.login_status, run.login_seconds = await asyncio.to_thread(
            fetch, f"{stack.url}/accounts/login/"
        )
        late = PageClient(stack.url, building.id, sessions[CI_PAGES + 2])
        opened = loop.time()
        try:
            await late.open(timeout=30)
            run.late_page_snapshot_seconds = loop.time() - opened
            await settle([late], stream)
            run.late_page_missing = 100.0 - final_share(late.stats.latest, stream.last)
        finally:
            await late.close()
    finally:
        if counting is not None:
            counting.cancel()
        await frozen.close()
        await close_all(pages)


@pytest.fixture(scope="module")
def stall(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StallRun]:
    """One run for every test here: about 30 s."""
    run = StallRun()
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(bench.harness.SERVE_SETTINGS, "LIVE_COALESCE_MS", CI_WINDOW_MS)
        with served_stack(tmp_path_factory.mktemp("slow-clients")) as stack:
            asyncio.run(a_page_stops_reading(stack, run))
            run.output = server_output(stack)
    run.trouble = trouble_in(run.output)
    print("slow clients:", json.dumps({k: v for k, v in asdict(run).items() if k != "output"}))
    yield run


def test_a_page_that_stops_reading_is_let_go_before_its_frames_pile_up(stall: StallRun) -> None:
    assert stall.stalled_gone_after is not None, "the server still holds the stalled page"
    # Let go by the consumer after MAX_UNACKED frames (then ~2 s of daphne's exception
    # handling and close handshake while windows keep coming), or by daphne's unanswered ping.
    assert stall.frames_before_stalled_cut <= 1.5 * MAX_UNACKED, stall
    assert stall.stalled_gone_after < PING_SILENCE + PONG_TIMEOUT + 2 * CLOSE_HANDSHAKE + 5
    # What the server's kernel held for it never passed MAX_UNACKED frames' worth, and once
    # it let the page go it holds nothing (the socket is gone: aborted, not lingering).
    assert 0 < stall.stalled_max_queued <= MAX_UNACKED * (stall.frozen_largest + 14)


def test_a_page_that_stops_acknowledging_is_cut_off_after_max_unacked_frames(
    stall: StallRun,
) -> None:
    assert stall.frozen_closed_after is not None, "the frozen page was never cut off"
    # Its snapshot and then frames up to MAX_UNACKED unacknowledged, not one more.
    assert stall.frozen_frames == MAX_UNACKED


def test_the_server_memory_stays_put_while_a_page_stalls(stall: StallRun) -> None:
    # A stalled page costs at most MAX_UNACKED frames (here ~0.6 MB, in the kernel); the
    # bound is loose because ten pages, the bridge and the history move RSS by a few MB.
    assert stall.rss_most_mb - stall.rss_before_mb < 32, stall
    assert stall.rss_after_mb - stall.rss_before_mb < 32, stall


def test_everyone_else_gets_every_final_value_and_is_never_cut_off(stall: StallRun) -> None:
    assert stall.missing_final_values == {}
    assert stall.pages_cut_off == 0
    assert stall.pages_closed_otherwise == 0


def test_the_server_stays_responsive_after_cutting_pages_off(stall: StallRun) -> None:
    assert stall.login_status == 200
    assert stall.login_seconds < 5
    assert stall.late_page_snapshot_seconds is not None and stall.late_page_snapshot_seconds < 10
    assert stall.late_page_missing == 0.0


def test_a_page_cut_off_is_told_to_try_again_later(stall: StallRun) -> None:
    assert stall.frozen_close_code == TRY_AGAIN_LATER


def test_cutting_pages_off_is_not_an_error_in_the_server_log(stall: StallRun) -> None:
    assert stall.trouble == []


# ------------------------------------------------------------------------ the soak variant

SOAK_DEVICES = 300
SOAK_PAGES = 20
SOAK_RATE = 300.0  # messages/s: the nominal load of tests/test_soak.py
SOAK_SECONDS = 60.0  # long enough for the stalled page to be let go within the stream
SOAK_PAIRS = int(os.environ.get("SLOW_CLIENT_PAIRS", "8"))  # 5 were too few (docs)
SAME_WITHIN = 0.10  # the other pages' p99 with a stalled page, against without


@dataclass
class Comparison:
    runs: list[dict[str, Any]] = field(default_factory=list)

    def p99s(self, stalled: bool) -> list[float]:
        return [r["p99_ms"] for r in self.runs if r["stalled"] == stalled]

    @property
    def median_without(self) -> float:
        return statistics.median(self.p99s(False))

    @property
    def median_with(self) -> float:
        return statistics.median(self.p99s(True))


def described(result: Freshness, stalled: StalledPage | None) -> dict[str, Any]:
    lat = result.latencies_ms
    return {
        "stalled": stalled is not None,
        "p50_ms": percentile(lat, 50),
        "p99_ms": percentile(lat, 99),
        "values": len(lat),
        "worst_final_share": result.worst_final_share,
        "cut_off": result.cut_off,
        "reconnects": result.reconnects,
        "resyncs": result.resyncs,
        "server_cpu": result.server_cpu,
        "stalled_gone_after": stalled.gone_after if stalled else None,
        "stalled_max_queued": stalled.max_queued if stalled else None,
    }


@pytest.mark.soak
async def test_a_stalled_page_leaves_the_others_freshness_as_it_was(tmp_path: Path) -> None:
    """Runs with and without a stalled page alternate (ABBA), at the product's timings; the
    medians of the other pages' p99 are compared."""
    comparison = Comparison()
    summary: dict[str, Any] = {"machine": machine_info()}
    with served_stack(tmp_path) as stack:
        stack.add_building(SOAK_DEVICES, SEED, SOAK_PAGES + 1)
        output = server_output(stack)
        for pair in range(SOAK_PAIRS):
            for with_stall in (False, True) if pair % 2 == 0 else (True, False):
                opened: list[StalledPage] = []
                result = await measure(
                    stack,
                    SOAK_DEVICES,
                    SOAK_PAGES,
                    SOAK_RATE,
                    SOAK_SECONDS,
                    beside=stalled_beside(SOAK_PAGES, opened) if with_stall else None,
                )
                run = described(result, opened[0] if opened else None)
                # Who let the stalled page go: the consumer (MAX_UNACKED; it logs a
                # warning) or daphne's ping timeout.
                logged = server_output(stack)[len(output) :]
                output += logged
                run["cut_off_by_consumer"] = CUT_OFF_LOGGED in logged
                comparison.runs.append(run)
                print("run:", json.dumps(run), flush=True)
        summary |= {
            "runs": comparison.runs,
            "median_p99_without_ms": comparison.median_without,
            "median_p99_with_ms": comparison.median_with,
            "trouble": trouble_in(output),
        }
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "slow-clients.json").write_text(json.dumps(summary, indent=1))
        print("slow clients (soak):", json.dumps(summary), flush=True)

    for run in comparison.runs:
        assert run["worst_final_share"] == 100.0, run
        assert run["cut_off"] == 0 and run["reconnects"] == 0, run
        if run["stalled"]:
            assert run["stalled_gone_after"] is not None, run
    assert comparison.median_with <= (1 + SAME_WITHIN) * comparison.median_without, summary
