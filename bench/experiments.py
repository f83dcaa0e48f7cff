"""Variants of the product measured against it in the same run, by monkeypatching inside the
bench's own processes (the product code is not changed).

``python -m bench.experiments [DEVICES [SECONDS [VARIANT ...]]]`` measures bridge variants
(``python -m bench.workers bridge --variant NAME``) against the bare subscriber, each in its
own two phases:

- ``as-is``: the product (history written by a child process, ``HISTORY_WRITER=process``).
- ``thread-history``: history written by a thread of the bridge's process, as before.
- ``no-history``: history records are dropped (an upper bound: what history costs).

``python -m bench.experiments serve [PAGES [SECONDS [VARIANT ...]]]`` measures server variants
(``bench.serve_variant``) by freshness, a fresh server each:

- ``deflate``: daphne also accepts permessage-deflate, which browsers offer, compressing every
  frame again per page (the fan-out already deflates each busy frame once for all pages).

The fixes first prototyped here (one executemany per history batch, reading every waiting
packet per wake-up, no thread hop per frame) are now in the product; docs/benchmarks.md keeps
their measurements.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from collections.abc import Callable
from typing import Any

VARIANTS = ("as-is", "thread-history", "no-history")
SERVER_VARIANTS = ("as-is", "deflate")


def apply(variant: str) -> None:
    """Apply a variant, or several joined by "+"."""
    for part in variant.split("+"):
        if part not in VARIANTS:
            raise SystemExit(f"unknown variant {part!r}; one of {', '.join(VARIANTS)}")
        PATCHES.get(part, lambda: None)()


def _no_history() -> None:
    from dashboard.bridge.history import HistoryWriter

    HistoryWriter.add = lambda self, building_id, record: None  # type: ignore[method-assign]


def _thread_history() -> None:
    from django.conf import settings

    settings.HISTORY_WRITER = "thread"
    os.environ["HISTORY_WRITER"] = "thread"


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
    SERVER_PATCHES.get(variant, lambda: None)()


SERVER_PATCHES: dict[str, Callable[[], None]] = {"deflate": _deflate}
PATCHES: dict[str, Callable[[], None]] = {
    "no-history": _no_history,
    "thread-history": _thread_history,
}


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
