"""The path to the broker fails in ways a closed socket never shows: bytes just stop."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from dashboard.topics import Kind, Scope, build_topic
from tests import seed
from tests.bridging import config_for, send, subscribed, until
from tests.brokers import free_port

pytestmark = [pytest.mark.broker, pytest.mark.django_db(transaction=True)]

KEEPALIVE = 4


class SilentProxy:
    """A TCP relay to the broker that can start dropping every byte without closing."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self._target = target_port
        self.cut = False
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> SilentProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter):
        broker_r, broker_w = await asyncio.open_connection("127.0.0.1", self._target)
        self._writers += [client_w, broker_w]

        async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await reader.read(65536):
                    if not self.cut:  # cut: swallowed, as a dead path would
                        writer.write(data)
                        await writer.drain()

        await asyncio.gather(pump(client_r, broker_w), pump(broker_r, client_w))

    def heal(self) -> None:
        """Bytes flow again; connections made while cut are dropped, as a router reboot does."""
        self.cut = False
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    async def close(self) -> None:
        self.heal()
        self._server.close()
        await self._server.wait_closed()


async def test_a_silent_cut_is_noticed_within_one_and_a_half_keepalives_and_heals(
    hq, broker, running_bridge, publish
):
    proxy = await SilentProxy(broker.port).start()
    try:
        url = f"mqtt://127.0.0.1:{proxy.port}"
        bridge = await running_bridge(config=config_for(url, keepalive=KEEPALIVE))
        building = bridge.buildings[hq[Scope.BUILDING]]
        await subscribed(bridge, hq[Scope.BUILDING])
        topic = build_topic(Scope.DEVICE, hq[Scope.DEVICE], Kind.META)

        proxy.cut = True
        cut_at = time.monotonic()
        await until(
            lambda: building.session.status.state == "reconnecting",
            KEEPALIVE * 4,
            "the bridge to notice the cut",
        )
        noticed = time.monotonic() - cut_at
        assert noticed <= KEEPALIVE * 1.5 + 1.2, noticed  # plus the once-a-second check

        proxy.heal()
        await subscribed(bridge, hq[Scope.BUILDING], timeout=15)
        await send(publish, topic, seed.DEVICE_META)
        await until(lambda: hq[Scope.DEVICE] in building.state.meta, 5, "values after healing")
    finally:
        await proxy.close()
