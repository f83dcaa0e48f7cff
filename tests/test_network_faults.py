"""The path to the broker fails in ways a closed socket never shows: bytes just stop."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from dashboard.contract.topics import Kind, Scope, build_topic
from tests import seed
from tests.bridging import config_for, send, subscribed, until
from tests.relay import Relay

pytestmark = [pytest.mark.broker, pytest.mark.django_db(transaction=True)]

KEEPALIVE = 4


async def test_a_silent_cut_is_noticed_within_one_and_a_half_keepalives_and_heals(
    hq, broker, running_bridge, publish, caplog
):
    async with Relay(broker.port) as relay:
        bridge = await running_bridge(config=config_for(relay.url, keepalive=KEEPALIVE))
        building = bridge.buildings[hq[Scope.BUILDING]]
        await subscribed(bridge, hq[Scope.BUILDING])
        topic = build_topic(Scope.DEVICE, hq[Scope.DEVICE], Kind.META)

        relay.cut()
        cut_at = time.monotonic()
        await until(
            lambda: building.session.status.state == "reconnecting",
            KEEPALIVE * 4,
            "the bridge to notice the cut",
        )
        noticed = time.monotonic() - cut_at
        assert noticed <= KEEPALIVE * 1.5 + 1.2, noticed  # plus the once-a-second check

        relay.heal()
        await subscribed(bridge, hq[Scope.BUILDING], timeout=15)
        await send(publish, topic, seed.DEVICE_META)
        await until(lambda: hq[Scope.DEVICE] in building.state.meta, 5, "values after healing")
    # Giving up on the dead socket must not trip over paho closing it again afterwards.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_a_bridge_stopped_while_its_broker_has_not_answered_stops_at_once(
    hq, broker, running_bridge, caplog
):
    """A stop while a session waits for its CONNACK does not wait it out (CONNACK_TIMEOUT):
    a worker hands its buildings over only once its sessions have stopped."""
    async with Relay(broker.port) as relay:
        relay.cut()  # the connection opens; the broker's side never answers
        bridge = await running_bridge(config=config_for(relay.url))
        session = bridge.buildings[hq[Scope.BUILDING]].session
        await until(lambda: session._connack is not None, 5, "a connect under way")
        await asyncio.sleep(0.5)  # its CONNECT has gone out
        assert session.status.state == "connecting"
        caplog.clear()
        bridge.stop()
        await until(lambda: session.status.state == "stopped", 3, "the session stopped")
    # Stopping is not a failure to connect.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
