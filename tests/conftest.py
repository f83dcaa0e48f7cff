"""Shared fixtures: private MQTT brokers and connected paho clients (see tests/brokers.py)."""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from tests import brokers


@pytest.fixture(scope="session")
def tls_material(tmp_path_factory: pytest.TempPathFactory) -> brokers.TlsMaterial | None:
    """Test CA + server cert for 127.0.0.1/localhost, made once per run; None without openssl."""
    if brokers.find_openssl() is None:
        return None
    return brokers.make_tls_material(Path(tmp_path_factory.mktemp("tls")))


@pytest.fixture(autouse=True)
def _plain_static_files(settings: Any) -> None:
    # In-process tests render pages without running collectstatic first; test_serve
    # covers the deployed, hashed storage.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture(autouse=True)
def _fresh_cache(settings: Any) -> None:
    # Rate limits and login throttles count per user in the cache; a user id reused by the
    # next test must not inherit this one's counts.
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": uuid.uuid4().hex,
        }
    }


@pytest.fixture(autouse=True)
def _quick_passwords(settings: Any) -> None:
    # The people of the story get real passwords; hashing them properly is slow.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _use_mosquitto() -> bool:
    # TEST_MQTT_BROKER=amqtt runs the whole suite against the fallback broker.
    wanted = os.environ.get("TEST_MQTT_BROKER", "").strip().lower()
    if wanted == "amqtt":
        return False
    if wanted == "mosquitto" and brokers.find_mosquitto() is None:
        pytest.fail("TEST_MQTT_BROKER=mosquitto but no mosquitto binary was found")
    return brokers.find_mosquitto() is not None


@pytest.fixture
def broker(
    request: pytest.FixtureRequest,
) -> Iterator[brokers.MosquittoBroker | brokers.AmqttBroker]:
    """A fresh broker per test: mosquitto (plain + TLS + websockets, user ``authorization``
    with a random token) or, without mosquitto, amqtt (plain + websockets, anonymous only).
    """
    instance: brokers.MosquittoBroker | brokers.AmqttBroker
    if _use_mosquitto():
        # Looked up lazily so amqtt-only runs never pay for openssl.
        tls = request.getfixturevalue("tls_material")
        instance = brokers.MosquittoBroker(
            tls=tls, users={"authorization": secrets.token_urlsafe(24)}
        )
    else:
        instance = brokers.AmqttBroker()
    with instance:
        yield instance


@pytest.fixture
def mtls_broker(tls_material: brokers.TlsMaterial | None) -> Iterator[brokers.MosquittoBroker]:
    """A Mosquitto whose TLS listener requires a client certificate (mutual TLS)."""
    if brokers.find_mosquitto() is None or tls_material is None:
        pytest.fail("mutual TLS tests need mosquitto and openssl (see README)")
    with brokers.MosquittoBroker(tls=tls_material, require_certificate=True) as instance:
        yield instance


@pytest.fixture
def amqtt_broker() -> Iterator[brokers.AmqttBroker]:
    """The pure-Python fallback broker (plain + websockets), whatever is installed."""
    with brokers.AmqttBroker() as instance:
        yield instance


MqttClientFactory = Callable[..., mqtt.Client]


@pytest.fixture
def mqtt_client(request: pytest.FixtureRequest) -> Iterator[MqttClientFactory]:
    """Factory for connected paho clients, all disconnected at teardown.

    ``mqtt_client(transport="tcp"|"tls"|"websockets", broker=None, **kwargs)``; kwargs go to
    ``brokers.connect_client`` (client_id, username, password, clean_session, timeout...).
    Without ``broker`` the ``broker`` fixture is used (started on first use).
    """
    clients: list[mqtt.Client] = []

    def make(
        transport: brokers.Transport = "tcp",
        *,
        broker: brokers.BrokerProcess | None = None,
        **kwargs: Any,
    ) -> mqtt.Client:
        target = broker if broker is not None else request.getfixturevalue("broker")
        client = brokers.connect_client(target, transport=transport, **kwargs)
        clients.append(client)
        return client

    yield make
    brokers.close_clients(clients)


@pytest.fixture
def subscriber(mqtt_client: MqttClientFactory) -> Callable[..., brokers.Subscriber]:
    """Factory: ``subscriber(*topics, transport=..., broker=...)`` -> subscribed Subscriber."""

    def make(*topics: str, qos: int = 1, **client_kwargs: Any) -> brokers.Subscriber:
        sub = brokers.Subscriber(mqtt_client(**client_kwargs))
        for topic in topics:
            sub.subscribe(topic, qos)
        return sub

    return make


@pytest.fixture
def publish(mqtt_client: MqttClientFactory) -> Callable[..., mqtt.MQTTMessageInfo]:
    """``publish(topic, payload, qos=1)`` via one plain client on ``broker``; waits for PUBACK."""
    client: list[mqtt.Client] = []

    def send(
        topic: str, payload: bytes | str, qos: int = 1, *, retain: bool = False
    ) -> mqtt.MQTTMessageInfo:
        if not client:
            client.append(mqtt_client())
        return brokers.publish(client[0], topic, payload, qos, retain=retain)

    return send


@pytest.fixture
def hq(db: None) -> dict[str, Any]:
    """Headquarters: ids of the building, its space, area and lamp, keyed by Scope."""
    from tests.factories import make_building

    return make_building()


@pytest.fixture
def people(hq: dict[str, Any]) -> Any:
    """Headquarters' operator, viewer and support, and an outsider with another building."""
    from dashboard.contract.topics import Scope
    from tests.factories import make_people

    return make_people(hq[Scope.BUILDING])


@pytest.fixture
async def running_bridge(broker: Any) -> Any:
    """``await running_bridge(url=None, **Bridge kwargs)``: a bridge on ``broker``, fast timings;
    every bridge started is stopped at teardown.
    """
    import asyncio

    from dashboard.bridge.supervisor import Bridge
    from tests.bridging import config_for

    bridges: list[tuple[Bridge, asyncio.Task[None]]] = []

    async def start(url: str | None = None, **kwargs: Any) -> Bridge:
        config = kwargs.pop("config", None) or config_for(url or broker.url)
        bridge = Bridge(config, window=0.05, poll_interval=0.2, history_interval=0.1, **kwargs)
        task = asyncio.create_task(bridge.run())
        bridges.append((bridge, task))
        await asyncio.wait_for(bridge.ready.wait(), 10)
        return bridge

    yield start
    for bridge, task in bridges:
        bridge.stop()
        # A worker gives its leases back and writes its last history batch first; on a
        # busy machine that has taken over 10 s.
        await asyncio.wait_for(task, 30)


@pytest.fixture(scope="module")
def mosquitto() -> Iterator[brokers.MosquittoBroker]:
    """A Mosquitto for a whole module of served-dashboard tests (browsers, end to end)."""
    if brokers.find_mosquitto() is None:
        pytest.fail("mosquitto not found: install Debian's mosquitto package (see README)")
    with brokers.MosquittoBroker() as broker:
        yield broker


@pytest.fixture(scope="module")
def chromium() -> Any:
    """Headless system Chromium driven by Playwright; a missing browser fails, never skips.

    Per module: while Playwright's sync API is open, asyncio tests cannot run in this thread.
    """
    from playwright.sync_api import sync_playwright

    from tests.served import CHROMIUM_FLAGS, find_chromium

    executable = find_chromium()
    if executable is None:
        pytest.fail("Chromium not found: install Debian's chromium package (see README)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
async def redis_url() -> Any:
    """A Redis database of this suite's own, emptied before and after."""
    import os

    from redis import asyncio as aioredis

    url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
    redis = aioredis.from_url(url)
    await redis.flushdb()
    yield url
    await redis.flushdb()
    await redis.aclose()


@pytest.fixture
async def redis_layer(settings: Any, redis_url: str) -> Any:
    """The real Redis channel layer, on the suite's own Redis database; yields a client of it."""
    from channels.layers import get_channel_layer
    from redis import asyncio as aioredis

    store = aioredis.from_url(redis_url)
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": redis_url, "socket_timeout": 30}]},
        }
    }
    yield store
    await get_channel_layer().flush()
    await store.aclose()
