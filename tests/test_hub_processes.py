"""Two web processes on Redis, each with its pages: one group member per process, not per page.

Real ``serve --no-bridge`` processes (daphne), real Redis; the frames are sent as the bridge's
fan-out sends them, from this test. Killing one web process leaves the other's pages as they were.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator

import pytest
import redis
import websockets
from channels.layers import get_channel_layer

from dashboard.live import layer, tiles
from tests.served import ServedDashboard

REDIS_URL = os.environ.get("TEST_SCALE_REDIS_URL", "redis://127.0.0.1:6379/12")
PAGES_EACH = 3
FRAMES = 30

SESSIONS = (
    "import json; from django.contrib.auth import get_user_model, BACKEND_SESSION_KEY, "
    "HASH_SESSION_KEY, SESSION_KEY; from django.contrib.sessions.backends.db import SessionStore\n"
    "keys = []\n"
    "for name in ('victor', 'sam'):\n"
    "    user = get_user_model().objects.get(username=name); session = SessionStore()\n"
    "    session[SESSION_KEY] = str(user.pk)\n"
    "    session[BACKEND_SESSION_KEY] = 'django.contrib.auth.backends.ModelBackend'\n"
    "    session[HASH_SESSION_KEY] = user.get_session_auth_hash(); session.create()\n"
    "    keys.append(session.session_key)\n"
    "print(json.dumps(keys))"
)


@pytest.fixture(scope="module")
def web(tmp_path_factory) -> Iterator[dict]:
    """Two web processes on one database and one Redis database of this test's own."""
    store = redis.Redis.from_url(REDIS_URL)
    try:
        store.ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis is needed (see README): {exc}")
    store.flushdb()
    first = tmp_path_factory.mktemp("web-a")
    settings = {
        "DATABASE_URL": f"sqlite:///{first / 'db.sqlite3'}",
        "REDIS_URL": REDIS_URL,
        "LOG_LEVEL": "INFO",
    }
    # No broker: these processes run no bridge.
    web_a = ServedDashboard(first, "mqtt://127.0.0.1:9", **settings)
    web_b = ServedDashboard(tmp_path_factory.mktemp("web-b"), "mqtt://127.0.0.1:9", **settings)
    hq = web_a.prepare()
    web_b.manage("collectstatic", "--noinput", "-v0")
    viewer, support = json.loads(web_a.manage("shell", "-c", SESSIONS).strip().splitlines()[-1])
    started = []
    try:
        for served in (web_a, web_b):
            started.append(served.start("serve", "--no-bridge"))
        yield {"a": web_a, "b": web_b, "hq": hq, "viewer": viewer, "support": support}
    finally:
        for served in started:
            if served.process.poll() is None:
                served.stop()
        store.flushdb()


class Page:
    """One open building page that records every frame it gets, and acknowledges it."""

    def __init__(self, served: ServedDashboard, building: str, session: str) -> None:
        self.url = served.url.replace("http://", "ws://") + f"/ws/buildings/{building}/"
        self.origin = served.url
        self.session = session
        self.frames: list[str] = []
        self.close_code: int | None = None

    async def open(self) -> Page:
        self.ws = await websockets.connect(
            self.url,
            origin=self.origin,
            additional_headers={"Cookie": f"sessionid={self.session}"},
            ping_interval=None,
        )
        self.task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                self.frames.append(layer.unpack(frame))
                await self.ws.send("ack")
        except websockets.ConnectionClosed:
            pass
        self.close_code = self.ws.close_code

    def of(self, stream: str) -> list[str]:
        return [f for f in self.frames if f.startswith(f"<p>{stream} ")]

    async def close(self) -> None:
        await self.ws.close()
        await self.task


async def until(check, what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def send_frames(building: str, stream: str, audience: str = tiles.EVERYONE) -> list[str]:
    """FRAMES frames of one stream, as the bridge's fan-out sends them; what pages should get."""
    sent = []
    for seq in range(1, FRAMES + 1):
        html = f"<p>{stream} {seq}</p>"
        await layer.broadcast(building, html, audience, stream, seq)
        sent.append(html)
        await asyncio.sleep(0.01)
    return sent


@pytest.fixture
def redis_layer(settings):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 30}]},
        }
    }


async def test_both_processes_pages_get_every_frame_and_a_killed_one_leaves_the_others_be(
    web, redis_layer
):
    building = web["hq"]["building"]
    store = redis.Redis.from_url(REDIS_URL)
    group = f"asgi:group:{layer.group_name(building)}"
    support_group = f"asgi:group:{layer.group_name(building, tiles.SUPPORT)}"
    on_a = [await Page(web["a"], building, web["viewer"]).open() for _ in range(PAGES_EACH - 1)] + [
        await Page(web["a"], building, web["support"]).open()
    ]
    on_b = [await Page(web["b"], building, web["viewer"]).open() for _ in range(PAGES_EACH)]
    pages = on_a + on_b
    try:
        # Until every page's hub has joined: frames of a warm-up stream, until each page has one.
        for seq in range(1, 200):
            await layer.broadcast(building, f"<p>warm {seq}</p>", tiles.EVERYONE, "warm", seq)
            await asyncio.sleep(0.05)
            if all(page.of("warm") for page in pages):
                break
        # One member per web process, for six pages.
        assert store.zcard(group) == 2
        assert store.zcard(support_group) == 1  # only process A has a support page

        sent = await send_frames(building, "first")
        for page in pages:
            await until(lambda page=page: len(page.of("first")) == FRAMES, "every frame")
            assert page.of("first") == sent
        support_sent = await send_frames(building, "support", tiles.SUPPORT)
        await until(lambda: len(on_a[-1].of("support")) == FRAMES, "the support frames")
        assert on_a[-1].of("support") == support_sent
        assert all(page.of("support") == [] for page in on_a[:-1] + on_b)

        # Process A dies without a goodbye; B's pages notice nothing.
        os.kill(web["a"].process.pid, signal.SIGKILL)
        web["a"].process.wait()
        await until(lambda: all(p.close_code is not None for p in on_a), "A's pages closed")
        sent = await send_frames(building, "after")
        for page in on_b:
            await until(lambda page=page: len(page.of("after")) == FRAMES, "every frame after")
            assert page.of("after") == sent
            assert page.close_code is None
        logged = "".join(web["b"].output)
        assert "Traceback" not in logged and " ERROR " not in logged, logged[-3000:]
        assert "cut off" not in logged, logged[-3000:]
    finally:
        for page in on_b:
            await page.close()
        await get_channel_layer().flush()
