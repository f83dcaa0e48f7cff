"""Run an amqtt broker from a JSON config file until SIGTERM/SIGINT.

Started as a subprocess by ``tests.brokers.AmqttBroker``: ``python amqtt_runner.py CONFIG``.
It prints ``READY_MARKER`` once every listener is bound, and exits on its own when its
parent dies, so a crashed test run cannot leave it behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from pathlib import Path

READY_MARKER = "amqtt-runner: ready"
# amqtt's shutdown hangs on a connection that never sent CONNECT; give up well before the
# parent's 5 s SIGKILL so the log says so.
SHUTDOWN_TIMEOUT = 2.0


async def _serve(config: dict[str, object]) -> None:
    """Start the broker, wait for a stop signal (or orphaning), then shut down."""
    # Imported here so that a broken amqtt install shows up in the runner's log, not as a hang.
    from amqtt.broker import Broker

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    broker = Broker(config)
    await broker.start()
    print(READY_MARKER, flush=True)

    parent = os.getppid()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=1.0)
        # Reparented means the test process died without stopping us.
        if os.getppid() != parent:
            break

    try:
        await asyncio.wait_for(broker.shutdown(), timeout=SHUTDOWN_TIMEOUT)
    except TimeoutError:
        logging.getLogger(__name__).warning("shutdown took over %ss, exiting", SHUTDOWN_TIMEOUT)


def main(argv: list[str]) -> int:
    """Entry point: ``amqtt_runner.py CONFIG_JSON``."""
    if len(argv) != 2:
        print(f"usage: {argv[0]} CONFIG_JSON", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Per-state-transition chatter drowns the useful lines in the log tail.
    logging.getLogger("transitions").setLevel(logging.WARNING)
    config = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    asyncio.run(_serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
