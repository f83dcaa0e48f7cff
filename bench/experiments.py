"""Prototypes of the fixes docs/benchmarks.md recommends, to measure them before they are made.

Applied by monkeypatching inside the bench's own bridge worker only
(``python -m bench.workers bridge --variant NAME``); the product code is not changed.
``python -m bench.experiments [DEVICES [SECONDS [VARIANT ...]]]`` measures bridge variants
(joined by "+" to combine) against the bare subscriber, each in its own two phases.

- ``no-history``: history records are dropped (an upper bound: what history costs).
- ``sql-history``: meta samples are inserted with one ``executemany`` of prepared rows
  instead of ``bulk_create`` building a model instance and compiling SQL per row.
- ``sample-per-flush``: at most one meta sample per device and name per history flush (the
  latest), as the fan-out keeps one rendered value per window.
- ``batched-io``: the session reads every packet waiting on the socket per wake-up and
  writes the PUBACKs once per loop turn, instead of one event-loop turn, several recv calls
  and an add_writer/remove_writer pair per message.

Server variants (``python -m bench.serve_variant``, ``Stack(server_variant=...)``), measured
by ``python -m bench.experiments serve [PAGES [SECONDS [VARIANT ...]]]`` (freshness, a fresh
server each):

- ``fast-dispatch``: page consumers skip Channels' per-message ``close_old_connections``
  (a hop to the sync thread and back) for the messages that never touch the database: the
  fan-out's frames, snapshots and the pages' acks.
- ``deflate``: daphne accepts permessage-deflate, which browsers offer.
- ``fast-dispatch+deflate``: both.
"""

from __future__ import annotations

import asyncio
import select
import shutil
import sys
import time
from collections.abc import Callable
from typing import Any

VARIANTS = ("as-is", "no-history", "sql-history", "sample-per-flush", "batched-io")
MEASURED = (*VARIANTS, "sql-history+batched-io", "sample-per-flush+batched-io")
SERVER_VARIANTS = ("as-is", "fast-dispatch", "deflate", "fast-dispatch+deflate")
MAX_READS_PER_WAKE = 256


def apply(variant: str) -> None:
    """Apply a variant, or several joined by "+" (e.g. ``sql-history+batched-io``)."""
    for part in variant.split("+"):
        if part not in VARIANTS:
            raise SystemExit(f"unknown variant {part!r}; one of {', '.join(VARIANTS)}")
        PATCHES.get(part, lambda: None)()


def _no_history() -> None:
    from dashboard.bridge.history import HistoryWriter

    HistoryWriter.add = lambda self, building_id, record: None  # type: ignore[method-assign]


def _meta_writer(latest_only: bool) -> Callable[..., int]:
    from django.db import connection

    from dashboard import models

    sample = models.MetaSample._meta
    device_field = sample.get_field("device").target_field
    value_field = sample.get_field("value")
    at_field = sample.get_field("received_at")
    insert = (
        f"INSERT INTO {sample.db_table} (device_id, name, value, received_at) "
        "VALUES (%s, %s, %s, %s)"
    )

    def write_meta(items: list[tuple[Any, Any]], devices: set[Any]) -> int:
        values = [v for _, v in items if v.device_id in devices]
        latest = {(v.device_id, v.name): v for v in values}
        samples = list(latest.values()) if latest_only else values
        rows = [
            (
                device_field.get_db_prep_value(v.device_id, connection),
                v.name,
                value_field.get_db_prep_value(v.value, connection),
                at_field.get_db_prep_value(v.received_at, connection),
            )
            for v in samples
        ]
        with connection.cursor() as cursor:
            cursor.executemany(insert, rows)
        # LatestMeta as store._write_meta writes it: already one row per device and name.
        models.LatestMeta.objects.bulk_create(
            [
                models.LatestMeta(
                    device_id=v.device_id,
                    name=v.name,
                    value=v.value,
                    display_name=v.display_name[:200],
                    unit=v.unit[:50],
                    source_timestamp=v.source_timestamp[:40],
                    received_at=v.received_at,
                )
                for v in latest.values()
            ],
            update_conflicts=True,
            unique_fields=["device", "name"],
            update_fields=["value", "display_name", "unit", "source_timestamp", "received_at"],
        )
        return len(rows) + len(latest)

    return write_meta


def _sql_history(latest_only: bool = False) -> None:
    from dashboard.bridge import store

    store._write_meta = _meta_writer(latest_only)


def _batched_io() -> None:
    from dashboard.bridge.session import BuildingSession

    def _read(self: BuildingSession) -> None:
        sock = self._sock
        self._last_in = time.monotonic()  # the session's silence check (as the original)
        for _ in range(MAX_READS_PER_WAKE):
            self._client.loop_read()
            if self._sock is not sock or sock is None:
                return
            ready, _, _ = select.select([sock], [], [], 0)
            if not ready:
                return

    def _register_write(self: BuildingSession, sock: Any) -> None:
        if sock is not self._sock or getattr(self, "_write_soon", False):
            return
        self._write_soon = True

        def flush() -> None:
            self._write_soon = False
            if self._sock is sock:
                self._client.loop_write()
                if self._client.want_write():
                    self._loop.add_writer(sock, self._client.loop_write)

        self._loop.call_soon(flush)

    BuildingSession._read = _read  # type: ignore[method-assign]
    BuildingSession._register_write = _register_write  # type: ignore[method-assign]


def _fast_dispatch() -> None:
    from channels.consumer import get_handler_name

    from dashboard.consumers import LiveConsumer

    original = LiveConsumer.dispatch
    no_database = {"live.fragments", "live.snapshot", "websocket.receive"}

    async def dispatch(self: LiveConsumer, message: dict[str, Any]) -> None:
        if message["type"] in no_database:
            await getattr(self, get_handler_name(message))(message)
        else:
            await original(self, message)

    LiveConsumer.dispatch = dispatch  # type: ignore[method-assign]


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


def apply_server(variant: str) -> None:
    if variant not in SERVER_VARIANTS:
        raise SystemExit(f"unknown server variant {variant!r}; one of {SERVER_VARIANTS}")
    for part in variant.split("+"):
        SERVER_PATCHES.get(part, lambda: None)()


SERVER_PATCHES: dict[str, Callable[[], None]] = {
    "fast-dispatch": _fast_dispatch,
    "deflate": _deflate,
}

PATCHES: dict[str, Callable[[], None]] = {
    "no-history": _no_history,
    "sql-history": _sql_history,
    "sample-per-flush": lambda: _sql_history(latest_only=True),
    "batched-io": _batched_io,
}


async def main(devices: int = 500, seconds: float = 15.0, variants: tuple[str, ...] = ()) -> None:
    from bench.harness import Stack, workdir
    from bench.ingest import measure

    directory = workdir()
    stack = Stack(directory).start()
    try:
        for variant in variants or MEASURED:
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
        finally:
            stack.stop()
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    if args and args[0] == "serve":  # serve [pages [seconds [variant ...]]]
        pages = int(args[1]) if len(args) > 1 else 100
        seconds = float(args[2]) if len(args) > 2 else 15.0
        asyncio.run(serve_main(pages, seconds, tuple(args[3:])))
    else:
        devices = int(args[0]) if args else 500  # [devices [seconds [variant ...]]]
        asyncio.run(main(devices, float(args[1]) if len(args) > 1 else 15.0, tuple(args[2:])))
