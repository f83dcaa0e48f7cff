"""Benchmark clients: dashboard pages over WebSocket, and raw MQTT-over-WebSocket subscribers.

``PageClient`` is what live.js does, minus the DOM: it connects with a session cookie and
the page's Origin, sends "ack" for each frame, reconnects when cut off (4013), and reads the
``meta-<device>-<name>`` spans htmx would swap in. ``MqttWsClient`` is what a browser talking
straight to the broker's WebSocket listener would receive; it counts bytes and frames.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import time
import zlib
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

import websockets
from websockets.asyncio.client import ClientConnection

from bench.harness import SEQ_NAME
from bench.mqttwire import connect_packet, subscribe_packet, ws_frame

TRY_AGAIN_LATER = 4013  # dashboard.consumers.TRY_AGAIN_LATER
SUBSCRIBE_BATCH = 100

# The meta_value.html fragment: <span id="meta-<hex>-<name>" ...><span class="meta-label">
# LABEL</span> <span class="meta-value">TEXT</span>...
META_VALUE = re.compile(
    r'<span id="meta-([0-9a-f]{32})-([a-z0-9_-]+)"[^>]*>'
    r'<span class="meta-label">[^<]*</span> <span class="meta-value">([^<]*)</span>'
)
PARSE_CACHE = 256


@lru_cache(maxsize=PARSE_CACHE)
def _inflate(frame: bytes) -> str:
    return zlib.decompress(frame, -zlib.MAX_WBITS).decode()


def html_of(frame: str | bytes) -> str:
    """A frame's HTML: binary frames are deflated once for all pages (``layer.pack``)."""
    return frame if isinstance(frame, str) else _inflate(frame)


@lru_cache(maxsize=PARSE_CACHE)
def seq_values(frame: str) -> tuple[tuple[str, int], ...]:
    """(device hex, sequence number) of every ``bench_seq`` value in a frame.

    Every page of a building receives the same broadcast frame; it is parsed once and the
    result shared (keyed by its text), so the harness does not need 100 times the CPU.
    """
    found = []
    for device, name, text in META_VALUE.findall(frame):
        if name == SEQ_NAME:
            with contextlib.suppress(ValueError):
                found.append((device, int(text)))
    return tuple(found)


@dataclass
class PageStats:
    frames: int = 0
    payload_bytes: int = 0
    wire_bytes: int = 0
    connects: int = 0
    cut_off: int = 0
    closed_other: int = 0
    resyncs: int = 0  # snapshots after the first: the page missed a frame and caught up
    deflated_bytes: int = 0  # what permessage-deflate would have sent (``deflate`` pages only)
    compressed_once_bytes: int = 0  # each frame deflated on its own, as one shared copy could be
    latest: dict[str, int] = field(default_factory=dict)  # device hex -> last value shown
    seqs: array = field(default_factory=lambda: array("q"))  # values as first shown...
    times: array = field(default_factory=lambda: array("d"))  # ...and when


class PageClient:
    """One open building page."""

    def __init__(
        self, base_url: str, building_id: str, session: str, deflate: bool = False
    ) -> None:
        self.url = base_url.replace("http://", "ws://") + f"/ws/buildings/{building_id}/"
        self.origin = base_url
        self.session = session
        self._stats = PageStats()
        # Frames (HTML, when received) not yet read into the stats: reading 100 pages' values
        # as they arrive would make the harness, not the server, the pages' bottleneck.
        self._unread: list[tuple[str, float]] = []
        self.snapshot = asyncio.Event()  # the first frame arrived
        self._ws: ClientConnection | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.record_from = 1 << 62  # values at or above this are timed
        # Called with each frame's HTML and when it was read (bench/confirm.py's cards).
        self.on_frame: Callable[[str, float], None] | None = None
        # Each frame as it came (text or deflated bytes) and when, while a list is set here
        # (bench/broadcast.py replays them from a bare server).
        self.recording: list[tuple[float, str | bytes]] | None = None
        # One compressor for the connection's life: permessage-deflate with context takeover.
        self._deflate = zlib.compressobj(6, zlib.DEFLATED, -15) if deflate else None

    @property
    def stats(self) -> PageStats:
        """What the page has received and shown so far."""
        if self._unread:
            unread, self._unread = self._unread, []
            for html, received in unread:
                self._apply(html, received)
        return self._stats

    async def open(self, timeout: float = 60.0) -> None:
        """Connect and wait for the snapshot; keep receiving in the background."""
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.snapshot.wait(), timeout)

    async def close(self) -> None:
        self._stop.set()
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._task, 10)

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                await self._session()
            except websockets.ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else None
                if code == TRY_AGAIN_LATER:
                    self.stats.cut_off += 1
                elif not self._stop.is_set():
                    self.stats.closed_other += 1
            except OSError:
                if not self._stop.is_set():
                    self.stats.closed_other += 1
                    await asyncio.sleep(0.5)

    async def _session(self) -> None:
        stats = self._stats
        async with websockets.connect(
            self.url,
            origin=self.origin,
            additional_headers={"Cookie": f"sessionid={self.session}"},
            max_size=None,
            ping_interval=None,
            open_timeout=60,
        ) as ws:
            self._ws = ws
            stats.connects += 1
            received = ws.data_received

            read_at = time.monotonic()

            def counting(data: bytes) -> None:
                nonlocal read_at
                stats.wire_bytes += len(data)
                read_at = time.monotonic()
                received(data)

            ws.data_received = counting  # type: ignore[method-assign]
            snapshots = 0
            async for frame in ws:
                # When its bytes were read (or later, if more came since): not when this loop
                # got round to the page, after the other pages' frames of the same broadcast.
                now = read_at
                await ws.send("ack")
                stats.frames += 1
                stats.payload_bytes += len(frame)
                if self._deflate is not None:
                    data = frame.encode() if isinstance(frame, str) else frame
                    out = self._deflate.compress(data) + self._deflate.flush(zlib.Z_SYNC_FLUSH)
                    stats.deflated_bytes += len(out) - 4  # RFC 7692 drops the 00 00 ff ff
                    stats.compressed_once_bytes += len(zlib.compress(data, 6))
                if self.recording is not None:
                    self.recording.append((now, frame))
                html = html_of(frame)
                self._unread.append((html, now))
                if self.on_frame is not None:
                    self.on_frame(html, now)
                # Only a snapshot carries the (unchanging) recent-actions tile; a connection's
                # first may come after live frames, and any after it is a resync.
                if '<section id="actions"' in html:
                    snapshots += 1
                    stats.resyncs += snapshots > 1
                self.snapshot.set()

    def _apply(self, frame: str, now: float) -> None:
        stats, latest = self._stats, self._stats.latest
        for device, seq in seq_values(frame):
            if seq > latest.get(device, -1):
                latest[device] = seq
                if seq >= self.record_from:
                    stats.seqs.append(seq)
                    stats.times.append(now)


async def open_pages(
    base_url: str | list[str], building_id: str, sessions: list[str], concurrency: int = 50
) -> list[PageClient]:
    """Open one page per session, ``concurrency`` at a time; each has had its snapshot.

    With several web processes' URLs the pages take turns, as a load balancer spreads them.
    """
    urls = [base_url] if isinstance(base_url, str) else base_url
    gate = asyncio.Semaphore(concurrency)
    pages = [
        PageClient(urls[n % len(urls)], building_id, s, deflate=n == 0)
        for n, s in enumerate(sessions)
    ]

    async def one(page: PageClient) -> None:
        async with gate:
            await page.open()

    await asyncio.gather(*(one(p) for p in pages))
    return pages


async def stats_of(pages: list[PageClient]) -> list[PageStats]:
    """Each page's stats, reading its unread frames one page at a time.

    Reading 10 s of a building's frames takes a page a few milliseconds, and hundreds of
    pages seconds: done in one go, the frames still arriving (a stream's last values, while
    the harness asks for the final shares) waited for it and were timed seconds late.
    """
    stats = []
    for page in pages:
        stats.append(page.stats)
        await asyncio.sleep(0)  # the loop reads what has arrived meanwhile
    return stats


async def close_all(clients: list[PageClient] | list[MqttWsClient]) -> None:
    await asyncio.gather(*(c.close() for c in clients))


# ------------------------------------------------------------------ MQTT over WebSocket


class MqttWsClient(asyncio.Protocol):
    """A bare MQTT 3.1.1 client over WebSocket that subscribes (QoS 0) and counts.

    The handshake and subscriptions are parsed; after that only WebSocket frame headers
    are read (to count frames and skip payloads), so a hundred of them keep up with
    Mosquitto in one Python process.
    """

    def __init__(self, topics: list[str], client_id: str) -> None:
        self.topics = topics
        self.client_id = client_id
        self.wire_bytes = 0
        self.frames = 0
        self.ready = asyncio.get_running_loop().create_future()
        self._transport: asyncio.Transport | None = None
        self._upgraded = False
        self._header = b""
        self._pending = b""
        self._skip = 0
        self._setup = True
        self._mqtt = b""  # MQTT bytes while setting up
        self._subacks = 0
        self._subscribes = (len(topics) + SUBSCRIBE_BATCH - 1) // SUBSCRIBE_BATCH

    @classmethod
    async def connect(cls, port: int, topics: list[str], client_id: str) -> MqttWsClient:
        loop = asyncio.get_running_loop()
        _, client = await loop.create_connection(lambda: cls(topics, client_id), "127.0.0.1", port)
        await asyncio.wait_for(client.ready, 60)
        return client

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            (
                "GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"
            ).encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed while setting up: {exc}"))

    def data_received(self, data: bytes) -> None:
        self.wire_bytes += len(data)
        if not self._upgraded:
            self._header += data
            end = self._header.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self._header.startswith(b"HTTP/1.1 101"):
                self.ready.set_exception(ConnectionError(self._header[:200].decode()))
                return
            self._upgraded = True
            data = self._header[end + 4 :]
            self._start_mqtt()
        self._frames(data)

    def _start_mqtt(self) -> None:
        assert self._transport is not None
        packets = [connect_packet(self.client_id)]
        for n, start in enumerate(range(0, len(self.topics), SUBSCRIBE_BATCH), start=1):
            packets.append(subscribe_packet(self.topics[start : start + SUBSCRIBE_BATCH], n))
        self._transport.write(b"".join(ws_frame(p) for p in packets))

    def _frames(self, data: bytes) -> None:
        buf = self._pending + data if self._pending else data
        n, i = len(buf), self._skip
        while i + 2 <= n:
            length = buf[i + 1] & 0x7F
            head = 2
            if length == 126:
                if i + 4 > n:
                    break
                length, head = (buf[i + 2] << 8) | buf[i + 3], 4
            elif length == 127:
                if i + 10 > n:
                    break
                length, head = int.from_bytes(buf[i + 2 : i + 10], "big"), 10
            if self._setup:
                if i + head + length > n:
                    break  # while setting up, whole frames only
                self._mqtt += buf[i + head : i + head + length]
            self.frames += 1
            i += head + length
        if i >= n:
            self._skip, self._pending = i - n, b""
        else:
            self._skip, self._pending = 0, buf[i:]
        if self._setup:
            self._read_mqtt()

    def _read_mqtt(self) -> None:
        buf, i = self._mqtt, 0
        while i + 2 <= len(buf):
            kind, length, shift, j = buf[i] >> 4, 0, 0, i + 1
            while j < len(buf):
                length |= (buf[j] & 0x7F) << shift
                shift += 7
                j += 1
                if not buf[j - 1] & 0x80:
                    break
            if j + length > len(buf):
                break
            if kind == 2 and buf[j + 1] != 0:
                self.ready.set_exception(ConnectionError("CONNACK refused"))
            if kind == 9:
                self._subacks += 1
            i = j + length
        self._mqtt = buf[i:]
        if self._subacks >= self._subscribes and not self.ready.done():
            self._setup = False
            self.ready.set_result(None)


async def open_mqtt_clients(
    port: int, topics: list[str], count: int, concurrency: int = 25
) -> list[MqttWsClient]:
    gate = asyncio.Semaphore(concurrency)

    async def one(n: int) -> MqttWsClient:
        async with gate:
            return await MqttWsClient.connect(port, topics, f"bench-ws-{n}-{os.getpid()}")

    return list(await asyncio.gather(*(one(n) for n in range(count))))
