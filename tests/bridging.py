"""Helpers for tests that run the bridge against a real broker."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from channels.layers import get_channel_layer

from dashboard.bridge.broker_url import parse_broker_url
from dashboard.bridge.session import SessionConfig
from dashboard.bridge.supervisor import Bridge
from dashboard.live import layer


def config_for(url: str, *, keepalive: int = 5, **kwargs: Any) -> SessionConfig:
    return SessionConfig(
        broker=parse_broker_url(url), keepalive=keepalive, reconnect_max=1, **kwargs
    )


async def until(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or predicate}")


async def subscribed(bridge: Bridge, building_id: uuid.UUID, timeout: float = 10.0) -> None:
    def ready() -> bool:
        running = bridge.buildings.get(building_id)
        return bool(running and running.session.connected and not running.session._pending_subs)

    await until(ready, timeout, "the building's subscriptions")


async def send(publish, topic: str, payload: Any) -> None:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    await asyncio.to_thread(publish, topic, body)


class Browser:
    """A page's view of a building's group on the real channel layer."""

    def __init__(self, building_id: uuid.UUID) -> None:
        self.building_id = building_id
        self.layer = get_channel_layer()
        self.received: list[str] = []

    async def join(self, audience: str = "all") -> Browser:
        self.channel = await self.layer.new_channel()
        await self.layer.group_add(layer.group_name(self.building_id, audience), self.channel)
        return self

    async def wait_for(self, text: str, timeout: float = 5.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            for html in self.received:
                if text in html:
                    return html
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{text!r} never reached the browser; got {self.received!r}")
            try:
                message = await asyncio.wait_for(self.layer.receive(self.channel), remaining)
            except TimeoutError:
                continue
            assert message["type"] == "live.fragments"
            self.received.append(layer.unpack(message["frame"]))
