"""Faults the bridge rides out while people watch: the broker restarting under steady
traffic, a slow link and a connection reset mid-packet, QoS 1 redeliveries, and a
database that is locked for a while.

Everything runs for real: a private Mosquitto (restarted by the test), the bridge on this
event loop, a TCP relay between them (tests/relay.py), the in-memory channel layer a page
listens on, and the test database locked by a second connection. The restarts run 3 times
here and 20 times in ``make soak``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import itertools
import json
import logging
import re
import sqlite3
import statistics
import struct
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psutil
import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import OperationalError, connection

from dashboard.bridge import history as history_module
from dashboard.bridge.broker_url import parse_broker_url
from dashboard.bridge.history import HistoryWriter
from dashboard.bridge.runner import BridgeService
from dashboard.bridge.session import client_id
from dashboard.bridge.supervisor import Bridge
from dashboard.contract.topics import Kind, Scope, build_topic
from dashboard.live import layer, metrics, store
from dashboard.live.state import Alarm, LiveState, MetaValue
from dashboard.models import FaultAlarm, LatestHeadcount, MetaSample
from tests import seed
from tests.bridging import config_for, send, subscribed, until
from tests.brokers import HOST, MosquittoBroker
from tests.relay import Relay

pytestmark = [pytest.mark.broker, pytest.mark.django_db(transaction=True)]

FLOWING_WITHIN = 5.0  # seconds from the broker (or the link) returning to data in live state
RATE = 20.0  # meta values a second from the steady device
SEQ = "seq"  # a meta name the cloud's definitions do not know: shown raw


# ------------------------------------------------- the bridge, a device and a page


@dataclass
class Running:
    bridge: Bridge
    task: asyncio.Task[None]


StartBridge = Callable[..., Awaitable[Running]]


@pytest.fixture
async def start_bridge(broker: Any) -> AsyncIterator[StartBridge]:
    """``await start_bridge(url=None, history=None)``: the bridge as ``serve`` runs it, with
    test timings, its task kept to check it is alive; every one started is stopped after.
    """
    started: list[Running] = []

    async def start(url: str | None = None, *, history: HistoryWriter | None = None) -> Running:
        bridge = Bridge(
            config_for(url or broker.url), window=0.05, poll_interval=0.2, history_interval=0.1
        )
        if history is not None:
            bridge.history = history
        running = Running(bridge, asyncio.create_task(bridge.run(), name="bridge"))
        started.append(running)
        await asyncio.wait_for(bridge.ready.wait(), 10)
        return running

    yield start
    for running in started:
        running.bridge.stop()
        await asyncio.wait_for(running.task, 10)


class RawMqtt:
    """An MQTT 3.1.1 client written by hand, so every byte of every PUBLISH is ours
    (packet ids, the DUP flag); QoS 1 publishes wait for their PUBACK.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def connect(self, name: str = "") -> RawMqtt:
        self._reader, self._writer = await asyncio.open_connection(HOST, self.port)
        name = name or f"raw-{uuid.uuid4().hex[:12]}"
        body = _string("MQTT") + bytes([4, 0x02]) + struct.pack("!H", 60) + _string(name)
        self._writer.write(b"\x10" + _length(len(body)) + body)
        async with asyncio.timeout(5):
            kind, ack = await self._packet()
        if kind != 0x20 or ack[1] != 0:
            raise ConnectionError(f"connection refused: {ack!r}")
        return self

    @property
    def local_port(self) -> int | None:
        return self._writer.get_extra_info("sockname")[1] if self._writer else None

    async def publish(
        self, topic: str, payload: bytes, *, packet_id: int, dup: bool = False
    ) -> int:
        """Send one QoS 1 PUBLISH and wait for its PUBACK; return the packet's size."""
        assert self._writer is not None
        packet = publish_packet(topic, payload, packet_id, dup=dup)
        self._writer.write(packet)
        await self._writer.drain()
        async with asyncio.timeout(2):
            while True:
                kind, body = await self._packet()
                if kind == 0x40 and struct.unpack("!H", body)[0] == packet_id:
                    return len(packet)

    async def _packet(self) -> tuple[int, bytes]:
        assert self._reader is not None
        first = (await self._reader.readexactly(1))[0]
        length, shift = 0, 0
        while True:
            byte = (await self._reader.readexactly(1))[0]
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        return first & 0xF0, await self._reader.readexactly(length)

    def close(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.write(b"\xe0\x00")  # DISCONNECT
            self._writer.transport.abort()
            self._writer = None


def publish_packet(topic: str, payload: bytes, packet_id: int, *, dup: bool = False) -> bytes:
    """A QoS 1 PUBLISH packet; ``dup`` marks it a retransmission of ``packet_id``."""
    body = _string(topic) + struct.pack("!H", packet_id) + payload
    return bytes([0x30 | (0x08 if dup else 0) | 0x02]) + _length(len(body)) + body


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("!H", len(data)) + data


def _length(n: int) -> bytes:
    out = bytearray()
    while True:
        n, byte = divmod(n, 128)
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def meta(value: int, **extra: Any) -> bytes:
    """A device's meta with one item, ``seq`` = value (and more items from ``extra``)."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    items = [{"name": SEQ, "value": value, "timestamp": stamp}]
    items += [{"name": name, "value": v, "timestamp": stamp} for name, v in extra.items()]
    return json.dumps(items).encode()


class SteadyPublisher:
    """A device sending its meta at a steady rate, ``seq`` counting up; when the broker
    goes it reconnects by itself, as devices do.
    """

    def __init__(self, port: int, device_id: uuid.UUID, rate: float = RATE) -> None:
        self.port = port
        self.topic = build_topic(Scope.DEVICE, device_id, Kind.META)
        self.rate = rate
        self.seq = 0  # the last value sent, acknowledged or not
        self.local_port: int | None = None  # of the connection in use, if any

    async def run(self) -> None:
        packet_id = 0
        while True:
            client = RawMqtt(self.port)
            try:
                await client.connect()
                self.local_port = client.local_port
                while True:
                    self.seq += 1
                    packet_id = packet_id % 65535 + 1
                    await client.publish(self.topic, meta(self.seq), packet_id=packet_id)
                    await asyncio.sleep(1 / self.rate)
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ConnectionError):
                await asyncio.sleep(0.1)
            finally:
                self.local_port = None
                client.close()


class Page:
    """A page of the building, on its group of the channel layer: the device's ``seq`` it
    shows, and how often it was shown an older value after a newer one.
    """

    def __init__(self, building_id: uuid.UUID, device_id: uuid.UUID) -> None:
        self.building_id = building_id
        self.latest = 0
        self.backwards = 0
        self._pattern = re.compile(
            rf'id="meta-{device_id.hex}-{SEQ}".*?<span class="meta-value">(-?\d+)</span>', re.S
        )

    async def open(self) -> Page:
        self._layer = get_channel_layer()
        self._channel = await self._layer.new_channel()
        await self._layer.group_add(layer.group_name(self.building_id), self._channel)
        self._task = asyncio.create_task(self._listen(), name="page")
        return self

    async def _listen(self) -> None:
        while True:
            message = await self._layer.receive(self._channel)
            if message["type"] == "live.fragments":
                for value in map(int, self._pattern.findall(layer.unpack(message["frame"]))):
                    self.backwards += value < self.latest
                    self.latest = value

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._layer.group_discard(layer.group_name(self.building_id), self._channel)


def seq_in(state: LiveState, device_id: uuid.UUID) -> int:
    """The device's ``seq`` as the bridge's live state holds it (0: none yet)."""
    value = state.meta.get(device_id, {}).get(SEQ)
    return value.value if value is not None else 0


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def history_of(device_id: uuid.UUID) -> list[int]:
    """The device's ``seq`` values in history, in the order they were written."""
    rows = MetaSample.objects.filter(device_id=device_id, name=SEQ).order_by("id")
    return list(rows.values_list("value", flat=True))


# ----------------------------------------------------------- a. the broker restarts


def bridge_connections(broker: MosquittoBroker, log_offset: int, cid: str) -> int:
    """How many times the broker logged the bridge's client connecting since the offset."""
    with broker.log_file.open("rb") as log:
        log.seek(log_offset)
        text = log.read().decode("utf-8", "replace")
    assert "already connected, closing old connection" not in text, text
    return sum(1 for line in text.splitlines() if "New client connected" in line and cid in line)


def open_sockets_to(port: int, but: int | None) -> int:
    """This process's established TCP connections to ``port``, but from local port ``but``."""
    return sum(
        1
        for c in psutil.Process().net_connections(kind="tcp")
        if c.status == psutil.CONN_ESTABLISHED
        and c.raddr
        and c.raddr.port == port
        and c.laddr.port != but
    )


def log_size(broker: MosquittoBroker) -> int:
    return broker.log_file.stat().st_size if broker.log_file.exists() else 0


@pytest.mark.parametrize(
    "restarts",
    [pytest.param(3, id="3-restarts"), pytest.param(20, id="20-restarts", marks=pytest.mark.soak)],
)
async def test_after_each_broker_restart_data_flows_within_5s_on_one_session_without_leaks(
    hq: dict[str, uuid.UUID],
    broker: Any,
    start_bridge: StartBridge,
    caplog: pytest.LogCaptureFixture,
    restarts: int,
) -> None:
    if not isinstance(broker, MosquittoBroker):
        pytest.skip("counts connections in Mosquitto's log")
    caplog.set_level(logging.WARNING)
    building, device = hq[Scope.BUILDING], hq[Scope.DEVICE]
    running = await start_bridge()
    await subscribed(running.bridge, building)
    session = running.bridge.buildings[building].session
    state = running.bridge.buildings[building].state
    cid = client_id(session.config.client_id_prefix, building)
    page = await Page(building, device).open()
    device_sends = SteadyPublisher(broker.port, device)
    publishing = asyncio.create_task(device_sends.run(), name="device")
    try:
        await until(lambda: seq_in(state, device) > 0, what="the device's first values")
        await until(lambda: page.latest > 0, what="the page's first values")
        process = psutil.Process()
        tracemalloc.start()
        tasks_before, fds_before = len(asyncio.all_tasks()), process.num_fds()
        rss_before = process.memory_info().rss
        to_state: list[float] = []
        to_page: list[float] = []
        tasks: list[int] = []
        fds: list[int] = []
        heap: list[int] = []

        for n in range(restarts):
            # Crashes and orderly restarts, taking turns.
            await asyncio.to_thread(broker.kill if n % 2 else broker.stop)
            await until(lambda: session.status.state == "reconnecting", what="noticed")
            offset = log_size(broker)
            await asyncio.to_thread(broker.start)
            returned, sent_before = time.monotonic(), device_sends.seq

            await until(
                lambda sent=sent_before: seq_in(state, device) > sent,
                FLOWING_WITHIN,
                f"values in live state within 5 s of restart {n + 1}",
            )
            to_state.append(time.monotonic() - returned)
            await until(
                lambda sent=sent_before: page.latest > sent,
                FLOWING_WITHIN - to_state[-1],
                f"values on the page within 5 s of restart {n + 1}",
            )
            to_page.append(time.monotonic() - returned)

            await asyncio.sleep(0.5)  # steady traffic: time for a second session to show up
            assert session.status.state == "connected"
            assert bridge_connections(broker, offset, cid) == 1
            assert open_sockets_to(broker.port, but=device_sends.local_port) == 1
            assert list(running.bridge.buildings) == [building]
            assert not running.task.done()
            tasks.append(len(asyncio.all_tasks()))
            fds.append(process.num_fds())
            gc.collect()
            heap.append(tracemalloc.get_traced_memory()[0])

        rss_after = process.memory_info().rss
        tracemalloc.stop()
    finally:
        publishing.cancel()
        await asyncio.gather(publishing, return_exceptions=True)
        await page.close()

    print(
        f"\n{restarts} restarts: data in live state after "
        f"{min(to_state):.2f}/{statistics.median(to_state):.2f}/{max(to_state):.2f} s, "
        f"on the page after {min(to_page):.2f}/{statistics.median(to_page):.2f}/"
        f"{max(to_page):.2f} s (min/median/max); asyncio tasks {tasks_before} -> {tasks}; "
        f"open files {fds_before} -> {fds}; Python heap allocated from just before the first "
        f"restart and still held (KiB) {[h // 1024 for h in heap]}; "
        f"RSS {rss_before / 2**20:.1f} -> {rss_after / 2**20:.1f} MiB"
    )
    assert errors(caplog) == []
    assert all(abs(count - tasks_before) <= 2 for count in tasks), (tasks_before, tasks)
    assert all(count - fds_before <= 2 for count in fds), (fds_before, fds)  # fewer is fine
    # What stays: pytest keeps every log record, each worker thread's database connection
    # warms up once. A leaked session or client, or a few bytes a message, would show.
    assert heap[-1] < (128 + 16 * restarts) * 1024, [h // 1024 for h in heap]
    assert rss_after - rss_before < 32 * 2**20
    assert state.counters["malformed"] == 0
    assert page.backwards == 0  # never an older value after a newer one


# ------------------------------------------------------- b. a slow link, a reset link


async def test_over_a_slow_link_every_value_still_arrives_in_order_without_error(
    hq: dict[str, uuid.UUID],
    broker: Any,
    start_bridge: StartBridge,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    building, device = hq[Scope.BUILDING], hq[Scope.DEVICE]
    topic = build_topic(Scope.DEVICE, device, Kind.META)
    async with Relay(broker.port) as relay:
        running = await start_bridge(relay.url)
        await subscribed(running.bridge, building)
        state = running.bridge.buildings[building].state
        rate = 2048
        relay.throttle(bytes_per_second=rate, latency=0.1)
        device_sends = await RawMqtt(broker.port).connect()
        started = time.monotonic()
        sent = 0
        for n in range(1, 41):  # straight to the broker: the slow part is the bridge's link
            sent += await device_sends.publish(topic, meta(n), packet_id=n)
        device_sends.close()

        await until(lambda: seq_in(state, device) == 40, 20, "every value over the slow link")
        took = time.monotonic() - started
        print(f"\n{sent} bytes over the 2 KB/s link in {took:.2f} s")
        assert took >= 0.8 * sent / rate  # the link really was that slow
        assert relay.connections == 1  # no reconnect: slow is not dead
        assert running.bridge.buildings[building].session.status.state == "connected"
        assert [r.getMessage() for r in caplog.records] == []  # not even a warning

        await until(lambda: running.bridge.history.pending == 0, what="history written")
        assert await sync_to_async(history_of)(device) == list(range(1, 41))
        assert state.counters["malformed"] == 0


async def test_a_reset_mid_packet_reconnects_and_data_flows_within_5s_with_no_half_message(
    hq: dict[str, uuid.UUID],
    broker: Any,
    start_bridge: StartBridge,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    building, device = hq[Scope.BUILDING], hq[Scope.DEVICE]
    topic = build_topic(Scope.DEVICE, device, Kind.META)
    async with Relay(broker.port) as relay:
        running = await start_bridge(relay.url)
        await subscribed(running.bridge, building)
        state = running.bridge.buildings[building].state
        device_sends = await RawMqtt(broker.port).connect()
        await device_sends.publish(topic, meta(1), packet_id=1)
        await until(lambda: seq_in(state, device) == 1, what="the first value")

        # 60 bytes into a ~1.2 KB PUBLISH the link resets: the bridge holds half a packet.
        relay.reset_after(60)
        await device_sends.publish(topic, meta(2, note="x" * 900), packet_id=2)
        await until(lambda: relay.resets == 1, what="the reset")
        reset_at = time.monotonic()

        value = 2
        while seq_in(state, device) <= 2:
            assert time.monotonic() - reset_at < FLOWING_WITHIN, "no data 5 s after the reset"
            value += 1
            await device_sends.publish(topic, meta(value), packet_id=value)
            await asyncio.sleep(0.1)
        flowing = time.monotonic() - reset_at
        print(f"\ndata flowing {flowing:.2f} s after the reset")
        device_sends.close()

        assert relay.connections == 2  # one reconnect, one session
        assert state.counters["malformed"] == 0
        assert "note" not in state.meta[device]  # half a message is no message
        assert errors(caplog) == []
        await until(lambda: running.bridge.history.pending == 0, what="history written")
        assert 2 not in await sync_to_async(history_of)(device)


# ------------------------------------------------------------ c. QoS 1 redelivery


async def test_a_message_delivered_twice_changes_no_count(
    hq: dict[str, uuid.UUID],
    broker: Any,
    start_bridge: StartBridge,
    publish: Callable[..., Any],
) -> None:
    building, device, space = hq[Scope.BUILDING], hq[Scope.DEVICE], hq[Scope.SPACE]
    running = await start_bridge()
    await subscribed(running.bridge, building)
    state = running.bridge.buildings[building].state
    alarm_topic = build_topic(Scope.DEVICE, device, Kind.FAULT_ALARM)
    headcount_topic = build_topic(Scope.SPACE, space, Kind.HEAD_COUNT)
    alarm = json.dumps(seed.DEVICE_FAULT_ALARM).encode()
    headcount = json.dumps(seed.headcount("headcount", 7)).encode()

    # A device that missed the PUBACK publishes the identical message again...
    for _ in range(2):
        await send(publish, alarm_topic, alarm)
        await send(publish, headcount_topic, headcount)
    # ...and an MQTT stack resends the very packet, same packet id, with the DUP flag.
    device_sends = await RawMqtt(broker.port).connect()
    for dup in (False, True):
        await device_sends.publish(alarm_topic, alarm, packet_id=9, dup=dup)
        await device_sends.publish(headcount_topic, headcount, packet_id=10, dup=dup)
    device_sends.close()

    # Four deliveries of each: the alarm is taken once, the headcount four times over.
    await until(lambda: state.counters["duplicate"] == 3, what="three alarm redeliveries")
    await until(lambda: state.counters["accepted"] == 1 + 4, what="every delivery")
    (only,) = state.alarms.values()
    assert only.count == 1
    assert state.headcounts[(space, "head_count")].value == 7

    await until(lambda: running.bridge.history.pending == 0, what="history written")

    def stored() -> tuple[list[int], int]:
        alarms = list(FaultAlarm.objects.values_list("count", flat=True))
        return alarms, LatestHeadcount.objects.get(entity_id=space, kind="head_count").value

    assert await sync_to_async(stored)() == ([1], 7)


# ------------------------------------------------ d. the database locked for a while


class MostPending:
    """The most records ``history`` had pending, sampled every 5 ms until ``stop``."""

    def __init__(self, history: HistoryWriter) -> None:
        self.history, self.most = history, 0
        self._task = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            self.most = max(self.most, self.history.pending)
            await asyncio.sleep(0.005)

    def stop(self) -> None:
        self._task.cancel()


@contextlib.asynccontextmanager
async def database_locked() -> AsyncIterator[None]:
    """Another connection holds the database's write lock until the block ends.

    SQLite: ``BEGIN EXCLUSIVE`` (the test database is in memory with a shared cache, so
    every other connection fails at once with "database ... is locked"); PostgreSQL:
    ``LOCK TABLE`` of the history tables, which makes writers wait.
    """
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        name = settings["NAME"]
        locker = sqlite3.connect(name, uri=name.startswith("file:"), isolation_level=None)
        try:
            await until(lambda: _begin_exclusive(locker), 5, "the database's write lock")
            yield
        finally:
            locker.execute("ROLLBACK")
            locker.close()
    elif connection.vendor == "postgresql":
        import psycopg

        params = {
            "dbname": settings["NAME"],
            "user": settings["USER"],
            "password": settings["PASSWORD"],
            "host": settings["HOST"],
            "port": settings["PORT"],
        }
        locker = await psycopg.AsyncConnection.connect(**{k: v for k, v in params.items() if v})
        try:
            tables = ", ".join(m._meta.db_table for m in (MetaSample, FaultAlarm))
            await locker.execute(f"LOCK TABLE {tables} IN EXCLUSIVE MODE")
            yield
        finally:
            await locker.rollback()
            await locker.close()
    else:
        pytest.skip(f"no way to lock a {connection.vendor} database here")


def _begin_exclusive(locker: sqlite3.Connection) -> bool:
    try:
        locker.execute("BEGIN EXCLUSIVE")
    except sqlite3.OperationalError:  # a history write is under way: try again
        return False
    return True


async def publish_values(device_id: uuid.UUID, port: int, values: range) -> None:
    """The device publishes ``values`` as its ``seq``, at the steady rate."""
    device_sends = await RawMqtt(port).connect()
    topic = build_topic(Scope.DEVICE, device_id, Kind.META)
    for n in values:
        await device_sends.publish(topic, meta(n), packet_id=n)
        await asyncio.sleep(1 / RATE)
    device_sends.close()


async def test_while_the_database_is_locked_live_values_flow_and_history_catches_up_after(
    hq: dict[str, uuid.UUID],
    broker: Any,
    start_bridge: StartBridge,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    building, device = hq[Scope.BUILDING], hq[Scope.DEVICE]
    running = await start_bridge()
    await subscribed(running.bridge, building)
    state = running.bridge.buildings[building].state
    history = running.bridge.history
    page = await Page(building, device).open()
    try:
        async with database_locked():
            locked_at, written_before = time.monotonic(), history.written
            await publish_values(device, broker.port, range(1, 61))  # three seconds' worth
            await until(lambda: seq_in(state, device) == 60, what="live values while locked")
            await until(lambda: page.latest == 60, what="the page's values while locked")
            assert (history.written, history.pending) == (written_before, 60)  # none written
            locked_for = time.monotonic() - locked_at
        unlocked_at = time.monotonic()
        await until(lambda: history.pending == 0, 10, "history written after the lock")
        caught_up = time.monotonic() - unlocked_at
    finally:
        await page.close()

    print(
        f"\ndatabase locked {locked_for:.2f} s: {history.failures} failed writes, "
        f"history caught up {caught_up:.2f} s after the lock"
    )
    assert await sync_to_async(history_of)(device) == list(range(1, 61))  # all, once each
    assert history.dropped == 0
    assert page.backwards == 0
    # Whether the writer waited for the lock (SQLite's busy timeout, PostgreSQL) or failed and
    # retried, nothing was written while locked (above) and nothing was lost or doubled.


async def test_past_the_history_buffer_the_oldest_are_dropped_counted_and_logged(
    hq: dict[str, uuid.UUID],
    broker: Any,
    start_bridge: StartBridge,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    building, device = hq[Scope.BUILDING], hq[Scope.DEVICE]
    history = HistoryWriter(0.1, max_buffer=20, batch_size=5)
    running = await start_bridge(history=history)
    await subscribed(running.bridge, building)
    state = running.bridge.buildings[building].state
    buffer = MostPending(history)
    try:
        async with database_locked():
            await publish_values(device, broker.port, range(1, 61))
            await until(lambda: seq_in(state, device) == 60, what="live values while locked")
        await until(lambda: history.pending == 0, 10, "history written after the lock")
    finally:
        buffer.stop()

    kept = await sync_to_async(history_of)(device)
    print(f"\nbuffer of 20, 60 values: {len(kept)} written, {history.dropped} dropped")
    assert buffer.most <= 20 + 5  # the buffer, and a batch being written
    assert history.dropped > 0
    assert len(kept) + history.dropped == 60
    assert kept == sorted(kept) and kept[-20:] == list(range(41, 61))  # the newest are kept
    logged = [r.getMessage() for r in caplog.records if r.name == "dashboard.bridge.history"]
    assert "history buffer full: 1 records dropped so far" in logged
    total = history.dropped  # and once history caught up, the outage's total
    assert [line for line in logged if line.startswith("history caught up")] == [
        f"history caught up after {history.failures} failed writes; "
        f"{total} records dropped meanwhile ({total} in all)"
    ]


# -------------------------------------------- the history writer and a flaky database


class FlakyDatabase:
    """Stands in for ``store.write_batch``: up, or down (a write fails after ``hang`` s,
    as SQLite's busy timeout on a file database makes it wait, then fail).
    """

    def __init__(self) -> None:
        self.up = True
        self.hang = 0.0
        self.rows: list[object] = []

    def write_batch(self, batch: list[tuple[uuid.UUID, object]]) -> int:
        failing = not self.up  # decided when the write starts, as a lock held is
        time.sleep(self.hang)
        if failing:
            raise OperationalError("database is locked")
        self.rows += [record for _, record in batch]
        return len(batch)


@pytest.fixture
def database(monkeypatch: pytest.MonkeyPatch) -> FlakyDatabase:
    flaky = FlakyDatabase()
    monkeypatch.setattr(store, "write_batch", flaky.write_batch)
    return flaky


async def test_a_write_that_hangs_then_fails_keeps_the_buffer_within_its_bound(
    database: FlakyDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    writer, building = HistoryWriter(60, max_buffer=10), uuid.uuid4()
    for n in range(10):
        writer.add(building, n)
    database.up, database.hang = False, 0.2
    flushing = asyncio.create_task(writer.flush())
    await asyncio.sleep(0.05)  # the ten are being written
    for n in range(10, 15):  # and five more come meanwhile
        writer.add(building, n)
    await flushing

    assert (writer.pending, writer.dropped) == (10, 5)
    database.up, database.hang = True, 0.0
    await writer.flush()
    assert database.rows == list(range(5, 15))  # the newest, in order
    assert (
        "history caught up after 1 failed writes; 5 records dropped meanwhile (5 in all)"
        in caplog.text
    )
    await writer.close()


async def test_a_flood_of_readings_past_the_bound_drops_readings_never_an_alarm(
    database: FlakyDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    """The writer falls behind a flood of meta values: the alarm raised in the middle of it
    is kept and written first; the oldest readings go."""
    caplog.set_level(logging.WARNING)
    writer, building, device = (
        HistoryWriter(60, max_buffer=10, batch_size=4),
        uuid.uuid4(),
        uuid.uuid4(),
    )
    now = datetime.now(UTC)

    def reading(n: int) -> MetaValue:
        return MetaValue(device, "bench_seq", n, "bench_seq", "", "", now)

    alarm = Alarm(device, "lamp_failure", "critical", 1, "Lamp failure", "", {}, 1, now, now)
    for n in range(5):
        writer.add(building, reading(n))
    writer.add(building, alarm)
    for n in range(5, 30):
        writer.add(building, reading(n))

    assert (writer.pending, writer.dropped) == (10, 21)
    await writer.flush()
    assert database.rows[0] is alarm  # in the first batch
    assert [r.value for r in database.rows[1:] if isinstance(r, MetaValue)] == list(range(21, 30))
    assert "history buffer full: 1 records dropped so far" in caplog.text

    # With nothing but alarms queued, the oldest alarm goes: the bound holds whatever comes.
    database.rows.clear()
    for n in range(11):
        writer.add(building, dataclasses.replace(alarm, count=n))
    await writer.close()
    assert [a.count for a in database.rows] == list(range(1, 11))
    assert writer.dropped == 22


class CountedDatabase(FlakyDatabase):
    """Also notes when each batch's write began and ended, as a database's transactions."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[float, float]] = []

    def write_batch(self, batch: list[tuple[uuid.UUID, object]]) -> int:
        began = time.monotonic()
        try:
            return super().write_batch(batch)
        finally:
            self.writes.append((began, time.monotonic()))


async def _stream(writer: HistoryWriter, records: int, every: float) -> None:
    building = uuid.uuid4()
    for n in range(records):
        writer.add(building, n)
        await asyncio.sleep(every)


async def test_a_steady_stream_is_written_once_an_interval_not_in_dribbles(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A write takes a while; what arrives meanwhile waits for the next interval instead of
    making a batch of its own at once (a busy building was written 38 times a second)."""
    database = CountedDatabase()
    database.hang = 0.02
    monkeypatch.setattr(store, "write_batch", database.write_batch)
    writer = HistoryWriter(0.25)
    running = asyncio.create_task(writer.run())
    try:
        began = time.monotonic()
        await _stream(writer, 300, 0.004)  # 1.2 s or more: a busy machine sleeps longer
        await until(lambda: writer.pending == 0, 5, "the stream written")
        took = time.monotonic() - began
    finally:
        running.cancel()
    print(f"\n300 records over {took:.2f} s, interval 0.25 s: {len(database.writes)} batches")
    assert database.rows == list(range(300))
    # One an interval (and the last); written as they came it was one per 20 ms write, over 40.
    assert len(database.writes) <= took / 0.25 + 2


async def test_a_writer_behind_a_stream_writes_back_to_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When an interval's records take longer than the interval to write, the next write
    starts at once: history never idles while it is behind."""
    database = CountedDatabase()
    database.hang = 0.1  # 10 records a 0.1 s: half as fast as they come
    monkeypatch.setattr(store, "write_batch", database.write_batch)
    writer = HistoryWriter(0.3, batch_size=10)
    running = asyncio.create_task(writer.run())
    try:
        await _stream(writer, 200, 0.005)
        await until(lambda: writer.pending == 0, 10, "the stream written")
    finally:
        running.cancel()
    assert database.rows == list(range(200))
    gaps = [b - a for (_, a), (b, _) in itertools.pairwise(database.writes)]
    print(f"\n{len(database.writes)} batches, longest gap between them {max(gaps):.3f} s")
    assert max(gaps) < 0.15  # waiting out an interval between them would leave 0.3 s


async def test_a_flood_the_writer_cannot_keep_up_with_waits_at_the_broker_and_loses_nothing(
    hq: dict[str, uuid.UUID], broker: Any, start_bridge: StartBridge, database: FlakyDatabase
) -> None:
    """With HISTORY_HOLD, a device floods faster than history is written: the bridge stops
    reading while half the buffer waits, the broker keeps the rest (QoS 1), and every
    reading is written once, in order, with none dropped. Without, the buffer fills and the
    oldest are dropped."""
    building, device = hq[Scope.BUILDING], hq[Scope.DEVICE]
    database.hang = 0.01  # 10 records each 0.01 s: a writer that works, slower than the flood
    # Room for a wake-up's packets (MAX_PACKETS_PER_WAKE) past the half where reading holds.
    history = HistoryWriter(0.1, max_buffer=600, batch_size=10, hold=True)
    running = await start_bridge(history=history)
    await subscribed(running.bridge, building)
    state = running.bridge.buildings[building].state
    holds_before = metrics.HISTORY_HOLDS._value.get()
    buffer = MostPending(history)
    try:
        device_sends = await RawMqtt(broker.port).connect()
        topic = build_topic(Scope.DEVICE, device, Kind.META)
        began = time.monotonic()
        # As fast as the broker acknowledges them; fewer than the 1,000 Mosquitto queues for
        # a client by default, past which it would drop them while the bridge waits.
        for n in range(1, 901):
            await device_sends.publish(topic, meta(n), packet_id=n)
        published_in = time.monotonic() - began
        device_sends.close()
        await until(lambda: seq_in(state, device) == 900, 30, "every value live")
        await until(lambda: history.pending == 0, 10, "history written")
    finally:
        buffer.stop()

    written = [record.value for record in database.rows if isinstance(record, MetaValue)]
    print(
        f"\n900 values published in {published_in:.2f} s, buffer of 600: most pending {buffer.most}, "
        f"{history.dropped} dropped"
    )
    assert history.dropped == 0
    assert written == list(range(1, 901))  # each once, in order
    assert buffer.most < 600  # the buffer's bound was never reached
    assert metrics.HISTORY_HOLDS._value.get() > holds_before


async def test_the_bridge_waits_for_a_working_writer_only(database: FlakyDatabase) -> None:
    """With holding on, reading waits while half the buffer waits for a writer at work;
    never for one whose write fails, or has taken HOLD_STALE seconds (it may hang), nor for
    one idle past its interval: live values must keep flowing then."""
    building = uuid.uuid4()
    off = HistoryWriter(0.2, max_buffer=10)
    for n in range(5):
        off.add(building, n)
    assert not off.behind()  # holding is off unless asked for (settings.HISTORY_HOLD)

    writer = HistoryWriter(0.2, max_buffer=10, hold=True)
    for n in range(4):
        writer.add(building, n)
    assert not writer.behind()  # under half the buffer
    writer.add(building, 4)
    assert writer.behind()  # half of it waits, the writer's next interval is due

    writer._progress_at -= 0.2 + history_module.HOLD_STALE
    assert not writer.behind()  # idle past its interval: not at work

    database.hang = history_module.HOLD_STALE + 0.5
    writing = asyncio.create_task(writer.flush())
    await asyncio.sleep(0.1)
    assert writer.behind()  # a batch being written
    await asyncio.sleep(history_module.HOLD_STALE)
    assert not writer.behind()  # the same batch, for too long: maybe hanging
    await writing
    assert writer.pending == 0

    database.hang, database.up = 0.0, False
    for n in range(5):
        writer.add(building, n)
    await writer.flush()  # fails, at once
    assert writer.failures == 1 and writer.pending == 5
    assert not writer.behind()  # a writer that fails is not waited for
    database.up = True
    await writer.flush()
    for n in range(5):
        writer.add(building, n)
    assert writer.behind()  # it works again


@pytest.mark.parametrize("hold", [True, False])
async def test_the_bridge_process_holds_for_history_only_when_the_setting_says_so(
    hq: dict[str, uuid.UUID], broker: Any, settings: Any, hold: bool
) -> None:
    """HISTORY_HOLD reaches the history writer of the bridge a process runs."""
    settings.MQTT_BROKER = parse_broker_url(broker.url)
    settings.HISTORY_HOLD = hold
    service = BridgeService([hq[Scope.BUILDING]])
    bridge = await service.start()
    try:
        await asyncio.wait_for(bridge.ready.wait(), 10)
        assert bridge.history._hold is hold
    finally:
        await service.stop()


async def test_two_flushes_at_once_write_in_order_even_when_the_first_fails(
    database: FlakyDatabase,
) -> None:
    writer, building = HistoryWriter(60), uuid.uuid4()
    writer.add(building, "older")
    database.up, database.hang = False, 0.1
    first = asyncio.create_task(writer.flush())
    await asyncio.sleep(0.02)  # "older" is being written, and will fail
    database.up = True
    writer.add(building, "newer")
    await writer.flush()  # the supervisor's, on a lease handover
    await first
    await writer.flush()
    # Written the other way round, the older value would end up as the latest one.
    assert database.rows == ["older", "newer"]
    await writer.close()


async def test_stopping_while_the_database_is_down_counts_and_logs_what_is_lost(
    database: FlakyDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    writer, building = HistoryWriter(60), uuid.uuid4()
    for n in range(3):
        writer.add(building, n)
    database.up = False
    await writer.close()
    assert writer.dropped == 3
    assert "history: 3 records not written, the database is unavailable" in caplog.text
