"""The embedded MQTT broker used when no ``MQTT_URL`` is set: amqtt on 127.0.0.1."""

from __future__ import annotations

import logging
import socket

from amqtt.broker import Broker

from dashboard.bridge.broker_url import BrokerUrl

logger = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (never assume 1883 is free)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class EmbeddedBroker:
    """A pure-Python broker on the running event loop, reachable from this machine only."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.url = BrokerUrl("mqtt", host, port or free_port(host))
        self._broker = Broker(
            {
                "listeners": {"default": {"type": "tcp", "bind": f"{host}:{self.url.port}"}},
                "plugins": {
                    "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
                },
            }
        )

    async def start(self) -> BrokerUrl:
        await self._broker.start()
        logger.info("embedded MQTT broker listening on %s", self.url)
        return self.url

    async def stop(self) -> None:
        await self._broker.shutdown()
