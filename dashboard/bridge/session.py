"""One building's MQTT session: connect, stay subscribed, reconnect, publish with QoS 1.

paho does the protocol, driven by the asyncio event loop (``loop_driven``); a timer runs its
keepalive. Only the blocking connect (TCP, TLS and WebSocket handshakes) runs in a worker
thread. Many sessions share one loop and no threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import ssl
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from dashboard.bridge import tls
from dashboard.bridge.broker_url import BrokerUrl
from dashboard.bridge.loop_driven import BufferedClient, LoopDriven
from dashboard.contract.topics import TopicError, parse_topic
from dashboard.live.state import ConnectionStatus

logger = logging.getLogger(__name__)

SUBSCRIBE_BATCH = 100  # topics per SUBSCRIBE/UNSUBSCRIBE packet
CONNACK_TIMEOUT = 10.0
SILENCE_FACTOR = 1.5  # keepalives without a byte from the broker before the link counts as cut
QOS = 1


class NotConnected(RuntimeError):
    """The building's session is not connected to the broker."""


@dataclass(frozen=True)
class SessionConfig:
    broker: BrokerUrl
    ca_file: str | None = None
    # Mutual TLS: the client certificate and its key (PEM files) shown to the broker.
    client_cert: str | None = None
    client_key: str | None = None
    client_id_prefix: str = "gooee-dashboard"
    keepalive: int = 30
    reconnect_max: float = 30.0


def client_id(prefix: str, building_id: uuid.UUID) -> str:
    """Unique per building and process, stable for the process's life.

    Two processes bridging the same building get different ids, so the broker never
    kicks one off for the other in a reconnect loop.
    """
    process = f"{socket.gethostname()}-{os.getpid()}"
    return f"{prefix}-{building_id.hex}-{uuid.uuid5(uuid.NAMESPACE_DNS, process).hex[:8]}"


def backoff_delay(attempt: int, cap: float) -> float:
    """Capped exponential backoff with jitter; the first retry comes within 1 s."""
    return random.uniform(0.5, 1.0) * min(cap, 2.0**attempt)


MessageHandler = Callable[[str, bytes], None]
StatusHandler = Callable[[ConnectionStatus], None]


class BuildingSession(LoopDriven):
    """Keeps one building subscribed to its exact topic list, forever."""

    def __init__(
        self,
        building_id: uuid.UUID,
        config: SessionConfig,
        topics: Iterable[str],
        on_message: MessageHandler,
        on_status: StatusHandler,
        hold: Callable[[], bool] | None = None,
    ) -> None:
        """``hold``: while it returns True the broker is not read (the history writer is
        behind; ``LoopDriven``)."""
        self.building_id = building_id
        self.config = config
        self.status = ConnectionStatus()
        self._topics: list[str] = list(dict.fromkeys(topics))
        self._on_message = on_message
        self._on_status = on_status
        super().__init__(hold)
        self._stopping = asyncio.Event()
        self._connected = False
        self._connack: asyncio.Future[mqtt.ReasonCode] | None = None
        self._lost: asyncio.Event = asyncio.Event()
        self._pending_subs: dict[int, list[str]] = {}
        self._acked: dict[int, asyncio.Future[None]] = {}
        self._subscribed: set[str] = set()
        self._refused: set[str] = set()
        self._client = self._make_client()

    # --- paho wiring ---------------------------------------------------------------

    def _make_client(self) -> BufferedClient:
        cfg = self.config
        client = BufferedClient(
            CallbackAPIVersion.VERSION2,
            client_id=client_id(cfg.client_id_prefix, self.building_id),
            clean_session=True,
            protocol=mqtt.MQTTv311,
            transport=cfg.broker.transport,
            reconnect_on_failure=False,
        )
        if cfg.broker.transport == "websockets":
            client.ws_set_options(path=cfg.broker.path or "/mqtt")
        if cfg.broker.tls:
            client.tls_set_context(tls.context(cfg.ca_file, cfg.client_cert, cfg.client_key))
        if cfg.broker.username is not None:
            client.username_pw_set(cfg.broker.username, cfg.broker.password)
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_message = self._handle_message
        client.on_subscribe = self._handle_subscribe
        client.on_unsubscribe = self._handle_unsubscribe
        client.on_publish = self._handle_publish
        self._drive(client)
        return client

    def _handle_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if self._connack is not None and not self._connack.done():
            self._connack.set_result(reason_code)

    def _handle_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags | None,
        reason_code: ReasonCode | str,  # a str when we gave up on a silent link
        properties: Properties | None,
    ) -> None:
        was_connected = self._connected
        self._connected = False
        if not was_connected and self._connack is not None and not self._connack.done():
            # Closed before the CONNACK: where TLS 1.3 reports a refused client certificate.
            self._connack.set_exception(
                ConnectionError(
                    tls.closed_before_connack(self.config.broker.tls, self.config.client_cert)
                )
            )
        if was_connected and not self._stopping.is_set():
            self.status.last_error = f"connection lost ({reason_code})"
            logger.warning("building %s: %s", self.building_id, self.status.last_error)
        for future in self._acked.values():
            if not future.done():
                future.set_exception(NotConnected("connection lost before the broker acknowledged"))
        self._acked.clear()
        self._lost.set()

    def _handle_message(
        self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage
    ) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = message._topic.decode("utf-8", "replace")
        self._message(topic, bytes(message.payload))  # bytes already: no copy

    def _message(self, topic: str, payload: bytes) -> None:
        try:
            self._on_message(topic, payload)
        except Exception:
            # One bad message must never stop the session.
            logger.exception(
                "building %s: message on %r not handled", self.building_id, topic[:200]
            )

    def _handle_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        batch = self._pending_subs.pop(mid, [])
        for topic, code in zip(batch, reason_codes, strict=False):
            if code.is_failure:
                self._refused.add(topic)
                self._subscribed.discard(topic)
                logger.warning(
                    "building %s: broker refused subscription to %s", self.building_id, topic
                )
            else:
                self._refused.discard(topic)
        self._report()

    def _handle_unsubscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        self._report()

    def _handle_publish(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties,
    ) -> None:
        future = self._acked.pop(mid, None)
        if future is not None and not future.done():
            future.set_result(None)

    # --- lifecycle ----------------------------------------------------------------

    async def run(self) -> None:
        """Connect, stay subscribed, reconnect on any drop; until ``stop``."""
        attempt = 0
        misc = asyncio.create_task(self._misc_loop())
        try:
            while not self._stopping.is_set():
                self._set_status("connecting" if attempt == 0 else "reconnecting")
                try:
                    await self._connect_once()
                except (OSError, ssl.SSLError, ConnectionError, TimeoutError, ValueError) as exc:
                    if self._stopping.is_set():  # stop() ended the attempt: nothing went wrong
                        self._drop_socket()
                        break
                    self.status.last_error = tls.describe(exc)
                    logger.warning(
                        "building %s: cannot connect to %s: %s",
                        self.building_id,
                        self.config.broker,
                        self.status.last_error,
                    )
                    self._drop_socket()
                else:
                    attempt = 0
                    await self._lost.wait()
                if self._stopping.is_set():
                    break
                delay = backoff_delay(attempt, self.config.reconnect_max)
                attempt += 1
                self._set_status("reconnecting", next_attempt_in=delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
        finally:
            misc.cancel()
            self._set_status("stopped")

    async def stop(self) -> None:
        """Disconnect cleanly; ``run`` returns."""
        self._stopping.set()
        if self._connack is not None and not self._connack.done():
            # A connect in progress: its CONNACK cannot come once the socket goes, and run()
            # would wait it out (CONNACK_TIMEOUT) before a worker hands its buildings over.
            self._connack.set_exception(ConnectionAbortedError("stopping"))
            # Marked seen: a connect() that fails in its thread meanwhile leaves run() before
            # it awaits the future, which asyncio would log as never retrieved.
            self._connack.exception()
        if self._connected:
            self._client.disconnect()
            # Give the DISCONNECT packet a moment to leave before the socket goes.
            for _ in range(20):
                if self._sock is None:
                    break
                await asyncio.sleep(0.05)
        self._drop_socket()
        self._lost.set()

    async def _connect_once(self) -> None:
        broker = self.config.broker
        self._lost.clear()
        self._connack = self._loop.create_future()
        await self._loop.run_in_executor(
            None, self._client.connect, broker.host, broker.port, self.config.keepalive
        )
        try:
            reason = await asyncio.wait_for(self._connack, CONNACK_TIMEOUT)
        except TimeoutError:
            raise TimeoutError("no CONNACK from the broker") from None
        if reason.is_failure:
            raise ConnectionError(f"broker refused the connection: {reason}")
        self._connected = True
        self._last_in = time.monotonic()
        self.status.last_error = ""
        self._subscribed.clear()
        self._refused.clear()
        self._subscribe(self._topics)
        self._set_status("connected")
        logger.info(
            "building %s: connected to %s, subscribing to %d topics",
            self.building_id,
            broker,
            len(self._topics),
        )

    async def _misc_loop(self) -> None:
        # paho's keepalive pings and timeouts need a regular tick.
        while True:
            await asyncio.sleep(1)
            if self._sock is not None:
                self._client.loop_misc()
                self._check_silence()

    def _check_silence(self) -> None:
        """Give up on a link that went silent: paho alone would wait about 2 x keepalive.

        A healthy idle link answers paho's PINGREQ within one keepalive, so nothing heard
        for 1.5 x keepalive means the path is gone (a cut without FIN never closes).
        """
        silent = time.monotonic() - self._last_in
        if self._sock is not None and self._more_waiting(self._sock):
            return  # bytes are waiting: the loop was busy, the broker was not silent
        if self._connected and silent > SILENCE_FACTOR * self.config.keepalive:
            logger.warning(
                "building %s: nothing from the broker for %.0f s; reconnecting",
                self.building_id,
                silent,
            )
            self._drop_socket()
            self._handle_disconnect(self._client, None, None, f"no answer for {silent:.0f} s", None)

    def _drop_socket(self) -> None:
        sock = self._sock
        if sock is not None:
            self._socket_close(sock)
            with contextlib.suppress(OSError):
                sock.close()
        self._connected = False

    # --- subscriptions ----------------------------------------------------------------

    def set_topics(self, topics: Iterable[str]) -> None:
        """Follow an inventory change: subscribe what is new, unsubscribe what went."""
        wanted = list(dict.fromkeys(topics))
        current, wanted_set = set(self._topics), set(wanted)
        added = [t for t in wanted if t not in current]
        removed = [t for t in self._topics if t not in wanted_set]
        self._topics = wanted
        if self._connected:
            self._subscribe(added)
            self._unsubscribe(removed)
        if added or removed:
            logger.info(
                "building %s: inventory changed, +%d -%d topics",
                self.building_id,
                len(added),
                len(removed),
            )
        self._report()

    def _subscribe(self, topics: list[str]) -> None:
        for start in range(0, len(topics), SUBSCRIBE_BATCH):
            batch = topics[start : start + SUBSCRIBE_BATCH]
            rc, mid = self._client.subscribe([(t, QOS) for t in batch])
            if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and mid is not None:
                self._pending_subs[mid] = batch
                self._subscribed.update(batch)

    def _unsubscribe(self, topics: list[str]) -> None:
        for start in range(0, len(topics), SUBSCRIBE_BATCH):
            batch = topics[start : start + SUBSCRIBE_BATCH]
            self._client.unsubscribe(batch)
            self._subscribed.difference_update(batch)
            self._refused.difference_update(batch)

    @property
    def topics(self) -> list[str]:
        return list(self._topics)

    @property
    def connected(self) -> bool:
        return self._connected

    # --- publishing -----------------------------------------------------------------

    async def publish(self, topic: str, payload: bytes, timeout: float = 5.0) -> None:
        """Publish with QoS 1 and wait for the broker's PUBACK.

        Raises ``TopicError`` for a topic the contract does not let clients publish to,
        ``NotConnected`` when offline, ``TimeoutError`` without a PUBACK in time.
        """
        if not parse_topic(topic).entry.pub:
            raise TopicError(f"publishing to {topic} is not allowed")
        if not self._connected:
            raise NotConnected("the building's broker session is not connected")
        info = self._client.publish(topic, payload, qos=QOS)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise NotConnected(mqtt.error_string(info.rc))
        future = self._acked.setdefault(info.mid, self._loop.create_future())
        if info.is_published():
            future.set_result(None)
        try:
            await asyncio.wait_for(future, timeout)
        finally:
            self._acked.pop(info.mid, None)

    # --- status -----------------------------------------------------------------------

    def _set_status(self, state: str, next_attempt_in: float | None = None) -> None:
        now = datetime.now(UTC)
        if state != self.status.state:
            self.status.since = now
        self.status.state = state
        self.status.next_attempt_at = (
            now + timedelta(seconds=next_attempt_in) if next_attempt_in is not None else None
        )
        self._report()

    def _report(self) -> None:
        self.status.subscribed = len(self._subscribed) if self._connected else 0
        self.status.refused_topics = sorted(self._refused)
        self._on_status(self.status)
