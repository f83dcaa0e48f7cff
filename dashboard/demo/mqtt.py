"""One small paho client for the demo tools: its own network thread, asyncio start and stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Sequence

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from dashboard.bridge.broker_url import BrokerUrl

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
MAX_INFLIGHT = 200  # paho's default of 20 caps a QoS 1 load generator at a few hundred/s
MAX_QUEUED = 20_000  # bounds memory while the broker is away

MessageHandler = Callable[[str, bytes], None]


class DemoClient:
    """A paho client whose network loop runs in a thread this object owns and joins.

    Subscriptions are renewed on every (re)connect, since sessions are clean.
    """

    def __init__(
        self,
        broker: BrokerUrl,
        *,
        name: str,
        subscriptions: Sequence[str] = (),
        on_message: MessageHandler | None = None,
        ca_file: str | None = None,
        client_cert: tuple[str, str] | None = None,
        qos: int = 1,
        keepalive: int = 30,
    ) -> None:
        self.broker = broker
        self.client_id = f"{name}-{uuid.uuid4().hex[:12]}"
        self.qos = qos
        self.keepalive = keepalive
        self.published = 0
        self.dropped = 0
        self._subscriptions = list(subscriptions)
        self._on_message = on_message
        self._count_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: asyncio.Future[None] | None = None
        self._pending_sub: int | None = None
        self._client = self._make_client(ca_file, client_cert)

    def _make_client(self, ca_file: str | None, client_cert: tuple[str, str] | None) -> mqtt.Client:
        broker = self.broker
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=True,
            protocol=mqtt.MQTTv311,
            transport=broker.transport,
        )
        if broker.transport == "websockets":
            client.ws_set_options(path=broker.path or "/mqtt")
        if broker.tls:
            context = ssl.create_default_context(cafile=ca_file)
            if client_cert is not None:  # (certificate, key): brokers that want mutual TLS
                context.load_cert_chain(*client_cert)
            client.tls_set_context(context)
        if broker.username is not None:
            client.username_pw_set(broker.username, broker.password)
        client.max_inflight_messages_set(MAX_INFLIGHT)
        client.max_queued_messages_set(MAX_QUEUED)
        client.reconnect_delay_set(1, 30)
        client.on_connect = self._handle_connect
        client.on_subscribe = self._handle_subscribe
        client.on_message = self._handle_message
        client.on_disconnect = self._handle_disconnect
        return client

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self, timeout: float = CONNECT_TIMEOUT) -> None:
        """Connect and subscribe; return once the broker has acknowledged both."""
        self._loop = asyncio.get_running_loop()
        self._ready = self._loop.create_future()
        self._thread = threading.Thread(
            target=self._network, name=f"mqtt-{self.client_id}", daemon=True
        )
        self._thread.start()
        try:
            await asyncio.wait_for(self._ready, timeout)
        except TimeoutError:
            await self.stop()
            raise ConnectionError(f"no connection to {self.broker} within {timeout:g}s") from None
        except BaseException:
            await self.stop()
            raise

    def _network(self) -> None:
        # The first connect here, not in paho's retry loop, so its error reaches ``start``.
        try:
            self._client.connect(self.broker.host, self.broker.port, self.keepalive)
        except Exception as exc:
            self._resolve(ConnectionError(f"cannot connect to {self.broker}: {exc}"))
            return
        self._client.loop_forever(retry_first_connection=True)

    async def stop(self) -> None:
        """Disconnect and join the network thread, without blocking the event loop."""
        thread = self._thread
        if thread is None:
            return
        deadline = time.monotonic() + STOP_TIMEOUT
        next_disconnect = 0.0
        while thread.is_alive() and time.monotonic() < deadline:
            if time.monotonic() >= next_disconnect:
                # Repeated: a reconnect attempt in flight can overtake one disconnect.
                self._client.disconnect()
                next_disconnect = time.monotonic() + 0.5
            await asyncio.sleep(0.02)
        thread.join(0.1)
        if thread.is_alive():  # pragma: no cover - paho stuck in a socket call
            logger.warning("%s: network thread did not stop in time", self.client_id)
        self._thread = None

    # --- publishing -----------------------------------------------------------------------

    def publish(self, topic: str, payload: bytes) -> bool:
        """Queue one message (thread-safe); False when paho's queue is full."""
        info = self._client.publish(topic, payload, qos=self.qos)
        # NO_CONN: queued for QoS 1, sent on reconnect.
        sent = info.rc in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN)
        with self._count_lock:
            if sent:
                self.published += 1
            else:
                self.dropped += 1
        if not sent:
            logger.debug("%s: publish to %s dropped: %s", self.client_id, topic, info.rc)
        return sent

    # --- paho callbacks (network thread) --------------------------------------------------

    def _resolve(self, error: BaseException | None = None) -> None:
        def settle() -> None:
            if self._ready is not None and not self._ready.done():
                if error is None:
                    self._ready.set_result(None)
                else:
                    self._ready.set_exception(error)

        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed under us
                self._loop.call_soon_threadsafe(settle)

    def _handle_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            logger.warning("%s: broker refused the connection: %s", self.client_id, reason_code)
            self._resolve(ConnectionError(f"broker refused the connection: {reason_code}"))
            client.disconnect()
            return
        if not self._subscriptions:
            self._resolve()
            return
        rc, mid = client.subscribe([(topic, self.qos) for topic in self._subscriptions])
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._pending_sub = mid

    def _handle_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if mid != self._pending_sub:
            return
        refused = [
            t for t, c in zip(self._subscriptions, reason_codes, strict=False) if c.is_failure
        ]
        if refused:
            self._resolve(ConnectionError(f"broker refused subscriptions: {', '.join(refused)}"))
        else:
            self._resolve()

    def _handle_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            logger.warning("%s: connection lost (%s), reconnecting", self.client_id, reason_code)

    def _handle_message(self, client, userdata, message: mqtt.MQTTMessage) -> None:
        if self._on_message is None:
            return
        try:
            topic = message.topic
        except UnicodeDecodeError:
            return  # no topic we handle is anything but ASCII
        try:
            self._on_message(topic, bytes(message.payload))  # bytes already: no copy
        except Exception:
            # One bad message must never stop the client's thread.
            logger.exception("%s: message on %r not handled", self.client_id, topic[:200])
