"""Start and stop the bridge (and the embedded broker when none is configured) from settings."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid

from django.conf import settings

from dashboard.bridge.broker_url import BrokerUrl
from dashboard.bridge.embedded import EmbeddedBroker
from dashboard.bridge.leases import Leases
from dashboard.bridge.session import SessionConfig
from dashboard.bridge.supervisor import Bridge
from dashboard.live import cloud_sync

logger = logging.getLogger(__name__)


def _leases() -> Leases | None:
    """With Redis, bridges share buildings through leases; without it, one runs them all."""
    if not settings.REDIS_URL:
        return None
    worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    return Leases(settings.REDIS_URL, worker, settings.BRIDGE_LEASE_SECONDS)


def _resync_seconds() -> float:
    """How often the bridge re-syncs its buildings from the Gooee Cloud API; 0: never."""
    if not settings.GOOEE_SYNC_MINUTES:
        return 0.0
    if not settings.GOOEE_API_TOKEN:
        logger.info("no GOOEE_API_TOKEN (nor MQTT_URL password): the bridge does not re-sync")
        return 0.0
    return float(settings.GOOEE_SYNC_MINUTES) * 60


class BridgeService:
    """The bridge as a process runs it: ``await start()``, later ``await stop()``."""

    def __init__(self, building_ids: list[uuid.UUID] | None = None) -> None:
        self.building_ids = building_ids
        self.embedded: EmbeddedBroker | None = None
        self.bridge: Bridge | None = None
        self.broker: BrokerUrl | None = None  # the broker in use, once started
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> Bridge:
        broker = settings.MQTT_BROKER
        if broker is None:
            self.embedded = EmbeddedBroker()
            broker = await self.embedded.start()
        self.broker = broker
        config = SessionConfig(
            broker=broker,
            ca_file=settings.MQTT_CA_FILE,
            client_cert=settings.MQTT_CLIENT_CERT,
            client_key=settings.MQTT_CLIENT_KEY,
            client_id_prefix=settings.MQTT_CLIENT_ID_PREFIX,
            keepalive=settings.MQTT_KEEPALIVE,
            reconnect_max=settings.MQTT_RECONNECT_MAX_SECONDS,
        )
        self.bridge = Bridge(
            config,
            building_ids=self.building_ids,
            window=settings.LIVE_COALESCE_MS / 1000,
            poll_interval=settings.INVENTORY_POLL_SECONDS,
            history_interval=settings.HISTORY_FLUSH_SECONDS,
            history_process=settings.HISTORY_WRITER == "process",
            history_hold=settings.HISTORY_HOLD,
            max_bytes=settings.MQTT_MAX_PAYLOAD_BYTES,
            notify_priority=settings.ALARM_NOTIFY_PRIORITY,
            leases=_leases(),
            resync=cloud_sync.resync_building,
            resync_every=_resync_seconds(),
            reset_timeout=settings.ACTION_PUBACK_TIMEOUT_SECONDS,
            reset_grace=settings.ACTION_CONFIRM_GRACE_SECONDS,
        )
        self._task = asyncio.create_task(self.bridge.run(), name="bridge")
        logger.info("bridge started against %s", broker)
        return self.bridge

    async def stop(self) -> None:
        """Disconnect every session, flush history, stop the embedded broker."""
        if self.bridge is not None and self._task is not None:
            self.bridge.stop()
            await self._task
        if self.embedded is not None:
            await self.embedded.stop()
