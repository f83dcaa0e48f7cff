"""A page's WebSocket: who may connect, what it forwards, and how it catches up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.test import Client

from dashboard import consumers
from dashboard.consumers import NO_ACCESS, NOT_LOGGED_IN
from dashboard.contract.topics import Kind, Scope, build_topic
from dashboard.live import layer, tiles
from gooee_site.asgi import application
from tests import seed
from tests.bridging import send, subscribed

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://testserver")


def session_cookie(user: Any) -> tuple[bytes, bytes]:
    client = Client()
    client.force_login(user)
    return (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())


class FakeBridge:
    """Stands in for the bridge process on the channel layer: answers snapshot requests."""

    def __init__(self, building_id: Any) -> None:
        self.building_id = building_id
        self.layer = get_channel_layer()

    async def join(self) -> FakeBridge:
        self.channel = await self.layer.new_channel("bridge.")
        await self.layer.group_add(layer.bridge_group(self.building_id), self.channel)
        return self

    async def next_request(self) -> dict[str, Any]:
        return await asyncio.wait_for(self.layer.receive(self.channel), 5)


@pytest.fixture
async def page() -> AsyncIterator[Callable[..., Any]]:
    """Open a building page's socket as someone; every socket is disconnected at the end."""
    opened: list[WebsocketCommunicator] = []

    async def open_page(
        user: Any | None, building_id: Any, *, origin: tuple[bytes, bytes] = ORIGIN
    ) -> tuple[WebsocketCommunicator, bool, Any]:
        headers = [origin]
        if user is not None:
            headers.append(await sync_to_async(session_cookie)(user))
        communicator = WebsocketCommunicator(
            application, f"/ws/buildings/{building_id}/", headers=headers
        )
        opened.append(communicator)
        connected, code = await communicator.connect()
        return communicator, connected, code

    yield open_page
    for communicator in opened:
        await communicator.disconnect()


async def receive_until(communicator: WebsocketCommunicator, text: str) -> str:
    """The first message the page receives that contains ``text``."""
    received = []
    while True:
        try:
            html = layer.unpack(await communicator.receive_from(5))
        except TimeoutError:
            raise AssertionError(f"{text!r} never arrived; got {received!r}") from None
        if text in html:
            return html
        received.append(html)


async def closed_with(communicator: WebsocketCommunicator) -> int:
    message = await communicator.receive_output(5)
    assert message["type"] == "websocket.close"
    return message.get("code")


async def test_a_viewer_gets_the_snapshot_then_every_fragment_of_the_building(page, hq, people):
    building = hq[Scope.BUILDING]
    bridge = await FakeBridge(building).join()
    communicator, connected, _ = await page(people.viewer, building)
    assert connected

    request = await bridge.next_request()
    assert request["type"] == "snapshot.request"
    assert request["audiences"] == [tiles.EVERYONE]  # a viewer gets no support details
    [reply_to] = request["reply_to"]
    await layer.send_snapshot(reply_to, building, "<p>snapshot</p>", {"all": ("s1", 4)})
    assert await communicator.receive_from(5) == "<p>snapshot</p>"

    await layer.broadcast(building, "<p>older</p>", stream="s1", seq=4)  # already in the snapshot
    await layer.broadcast(building, "<p>newer</p>", stream="s1", seq=5)
    assert await communicator.receive_from(5) == "<p>newer</p>"
    assert await communicator.receive_nothing(0.2)


async def test_a_busy_window_reaches_the_page_deflated_and_a_small_one_as_text(page, hq, people):
    building = hq[Scope.BUILDING]
    bridge = await FakeBridge(building).join()
    communicator, _, _ = await page(people.viewer, building)
    request = await bridge.next_request()
    [reply_to] = request["reply_to"]
    await layer.send_snapshot(reply_to, building, "<p>snapshot</p>", {"all": ("s1", 1)})
    assert await communicator.receive_from(5) == "<p>snapshot</p>"

    busy = "".join(f'<span id="meta-{n}" hx-swap-oob="true">{n}</span>' for n in range(200))
    await layer.broadcast(building, busy, stream="s1", seq=2)
    frame = await communicator.receive_from(5)
    assert isinstance(frame, bytes)
    assert len(frame) < len(busy) / 4
    assert layer.unpack(frame) == busy


async def test_support_staff_also_join_the_support_group_and_viewers_do_not(page, hq, people):
    building = hq[Scope.BUILDING]
    bridge = await FakeBridge(building).join()
    support, _, _ = await page(people.support, building)
    viewer, _, _ = await page(people.viewer, building)
    audiences = sorted([(await bridge.next_request())["audiences"] for _ in range(2)])
    assert audiences == [[tiles.EVERYONE], [tiles.EVERYONE, tiles.SUPPORT]]

    await layer.broadcast(building, "<p>rejected details</p>", tiles.SUPPORT, "s1", 1)
    assert await support.receive_from(5) == "<p>rejected details</p>"
    assert await viewer.receive_nothing(0.3)


async def test_an_outsider_is_closed_for_no_access_and_an_anonymous_visitor_for_login(
    page, hq, people
):
    building = hq[Scope.BUILDING]
    outsider, _, _ = await page(people.outsider, building)
    assert await closed_with(outsider) == NO_ACCESS
    anonymous, _, _ = await page(None, building)
    assert await closed_with(anonymous) == NOT_LOGGED_IN

    await layer.broadcast(building, "<p>private</p>", stream="s1", seq=1)
    assert await outsider.receive_nothing(0.2)


async def test_a_websocket_from_another_origin_is_refused(page, hq, people):
    _, connected, _ = await page(
        people.viewer, hq[Scope.BUILDING], origin=(b"origin", b"http://evil.example")
    )
    assert not connected


async def test_a_missed_fragment_or_a_restarted_bridge_makes_the_page_resync(page, hq, people):
    building = hq[Scope.BUILDING]
    bridge = await FakeBridge(building).join()
    communicator, _, _ = await page(people.viewer, building)
    await bridge.next_request()

    await layer.broadcast(building, "<p>1</p>", stream="s1", seq=1)
    await layer.broadcast(building, "<p>3</p>", stream="s1", seq=3)  # 2 was dropped
    assert [await communicator.receive_from(5) for _ in range(2)] == ["<p>1</p>", "<p>3</p>"]
    assert (await bridge.next_request())["audiences"] == [tiles.EVERYONE]

    await layer.broadcast(building, "<p>new bridge</p>", stream="s2", seq=1)
    assert await communicator.receive_from(5) == "<p>new bridge</p>"
    assert (await bridge.next_request())["type"] == "snapshot.request"


@pytest.mark.broker
async def test_through_a_real_bridge_a_page_sees_current_state_at_once_then_live_values(
    page, hq, people, running_bridge, publish
):
    building = hq[Scope.BUILDING]
    bridge = await running_bridge()
    await subscribed(bridge, building)
    await send(publish, build_topic(Scope.DEVICE, hq[Scope.DEVICE], Kind.META), seed.DEVICE_META)
    state = bridge.buildings[building].state
    while hq[Scope.DEVICE] not in state.meta:
        await asyncio.sleep(0.05)

    communicator, _, _ = await page(people.viewer, building)
    snapshot = await receive_until(communicator, f'id="headcount-{hq[Scope.SPACE].hex}"')
    assert f'id="device-meta-{hq[Scope.DEVICE].hex}"' in snapshot and "87.4" in snapshot
    assert 'id="bridge-status"' in snapshot and "connected" in snapshot

    await send(
        publish,
        build_topic(Scope.SPACE, hq[Scope.SPACE], Kind.HEAD_COUNT),
        seed.headcount("headcount", 17),
    )
    await receive_until(communicator, '<span class="head-count">17</span>')


async def test_a_page_that_stops_reading_is_cut_off_and_one_that_keeps_up_is_not(
    page, hq, people, monkeypatch
):
    monkeypatch.setattr(consumers, "MAX_UNACKED", 5)
    building = hq[Scope.BUILDING]
    keeping_up, _, _ = await page(people.viewer, building)
    stalled, _, _ = await page(people.operator, building)
    for seq in range(1, 9):
        await layer.broadcast(building, f"<p>{seq}</p>", stream="s1", seq=seq)
        assert await keeping_up.receive_from(5) == f"<p>{seq}</p>"
        await keeping_up.send_to(text_data=consumers.ACK)
    for seq in range(1, 6):
        assert await stalled.receive_from(5) == f"<p>{seq}</p>"
    assert await closed_with(stalled) == consumers.TRY_AGAIN_LATER
