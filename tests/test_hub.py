"""Thousands of wall screens: one channel-layer member per web process, not one per page.

The process's hub (dashboard/live/hub.py) is the building's group member; each frame crosses
the channel layer once per process and reaches every local page from there. What each page
was promised stays per page: its snapshot, its resync after a gap, its cut-off.
"""

from __future__ import annotations

import asyncio
import random

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from dashboard import consumers
from dashboard.contract.topics import Scope
from dashboard.live import hub, layer, metrics, tiles
from gooee_site.asgi import application
from tests.test_consumers import ORIGIN, FakeBridge, closed_with, page, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)

__all__ = ["page"]  # the fixture, shared with test_consumers

CYCLES = 1000


def members(group: str) -> list[str]:
    """The in-memory channel layer's members of a group."""
    return list(get_channel_layer().groups.get(group, {}))


async def test_a_viewer_and_support_staff_share_one_member_per_group_and_keep_their_audiences(
    page, hq, people
):
    building = hq[Scope.BUILDING]
    bridge = await FakeBridge(building).join()
    viewers = [(await page(people.viewer, building))[0] for _ in range(3)]
    support, _, _ = await page(people.support, building)
    for _ in range(4):
        await bridge.next_request()

    # One member per group for the whole process: the hub's channel, not the four pages'.
    [everyone] = members(layer.group_name(building, tiles.EVERYONE))
    assert members(layer.group_name(building, tiles.SUPPORT)) == [everyone]
    assert everyone == hub.running().channel

    await layer.broadcast(building, "<p>rejected details</p>", tiles.SUPPORT, "s1", 1)
    await layer.broadcast(building, "<p>temperature</p>", tiles.EVERYONE, "s1", 1)
    assert await support.receive_from(5) == "<p>rejected details</p>"
    assert await support.receive_from(5) == "<p>temperature</p>"
    for viewer in viewers:
        assert await viewer.receive_from(5) == "<p>temperature</p>"  # never the support tile
        assert await viewer.receive_nothing(0.1)


async def test_the_pages_of_a_process_get_the_same_frame_object_not_a_copy_each(
    page, hq, people, monkeypatch
):
    building = hq[Scope.BUILDING]
    handed: list[object] = []
    deliver = consumers.LiveConsumer.deliver

    def recording(self, message):
        handed.append(message["frame"])
        deliver(self, message)

    monkeypatch.setattr(consumers.LiveConsumer, "deliver", recording)
    pages = [(await page(people.viewer, building))[0] for _ in range(5)]
    busy = "".join(f'<span id="meta-{n}" hx-swap-oob="true">{n}</span>' for n in range(200))
    await layer.broadcast(building, busy, stream="s1", seq=1)
    for communicator in pages:
        assert layer.unpack(await communicator.receive_from(5)) == busy
    assert len(handed) == 5 and all(frame is handed[0] for frame in handed)


async def test_a_page_that_stops_reading_is_cut_off_and_the_others_on_its_hub_are_not(
    page, hq, people, monkeypatch
):
    monkeypatch.setattr(consumers, "MAX_UNACKED", 5)
    building = hq[Scope.BUILDING]
    keeping_up = [(await page(people.viewer, building))[0] for _ in range(2)]
    stalled, _, _ = await page(people.operator, building)
    for seq in range(1, 12):
        await layer.broadcast(building, f"<p>{seq}</p>", stream="s1", seq=seq)
        for communicator in keeping_up:
            assert await communicator.receive_from(5) == f"<p>{seq}</p>"
            await communicator.send_to(text_data=consumers.ACK)
    for seq in range(1, 6):
        assert await stalled.receive_from(5) == f"<p>{seq}</p>"
    assert await closed_with(stalled) == consumers.TRY_AGAIN_LATER
    # The others still follow the building through the same member.
    await layer.broadcast(building, "<p>after</p>", stream="s1", seq=12)
    for communicator in keeping_up:
        assert await communicator.receive_from(5) == "<p>after</p>"
    assert len(members(layer.group_name(building))) == 1


async def test_a_page_whose_backlog_overflowed_resyncs_and_the_others_do_not(
    page, hq, people, monkeypatch
):
    building = hq[Scope.BUILDING]
    bridge = await FakeBridge(building).join()
    calm, _, _ = await page(people.viewer, building)
    monkeypatch.setattr(consumers, "PAGE_BACKLOG", 3)
    busy, _, _ = await page(people.operator, building)
    for _ in range(2):
        await bridge.next_request()

    # Five frames handed out at once: the busy page's backlog holds three, drops two.
    running = hub.running()
    for seq in range(1, 6):
        running.hand_out(
            {
                "type": "live.fragments",
                "building": str(building),
                "audience": tiles.EVERYONE,
                "frame": f"<p>{seq}</p>",
                "stream": "s1",
                "seq": seq,
            }
        )
    assert [await busy.receive_from(5) for _ in range(3)] == ["<p>1</p>", "<p>2</p>", "<p>3</p>"]
    assert [await calm.receive_from(5) for _ in range(5)] == [f"<p>{n}</p>" for n in range(1, 6)]

    await layer.broadcast(building, "<p>6</p>", stream="s1", seq=6)
    assert await busy.receive_from(5) == "<p>6</p>"
    request = await bridge.next_request()  # the busy page saw the gap: 3, then 6
    assert request["type"] == "snapshot.request"
    assert await calm.receive_from(5) == "<p>6</p>"
    with pytest.raises(TimeoutError):
        await bridge.next_request()  # the calm page asked for nothing


async def test_pages_come_and_go_while_frames_flow_and_the_one_that_stays_misses_none(
    hq, people, monkeypatch
):
    building = hq[Scope.BUILDING]
    bridge = await FakeBridge(building).join()
    headers = [ORIGIN, await sync_to_async(session_cookie)(people.viewer)]
    late: list[int] = []  # seqs handed to a page after it left
    left: list[object] = []
    deliver, disconnect = consumers.LiveConsumer.deliver, consumers.LiveConsumer.disconnect

    def watched_deliver(self, message):
        if getattr(self, "left", False):
            late.append(message["seq"])
        deliver(self, message)

    async def watched_disconnect(self, code):
        await disconnect(self, code)
        self.left = True
        left.append(self)

    monkeypatch.setattr(consumers.LiveConsumer, "deliver", watched_deliver)
    monkeypatch.setattr(consumers.LiveConsumer, "disconnect", watched_disconnect)

    async def open_one() -> WebsocketCommunicator:
        communicator = WebsocketCommunicator(
            application, f"/ws/buildings/{building}/", headers=headers
        )
        assert (await communicator.connect())[0]
        return communicator

    staying = await open_one()
    frames = 300
    flowing = asyncio.Event()

    async def publish() -> None:
        for seq in range(1, frames + 1):
            await layer.broadcast(building, f"<p>{seq}</p>", stream="s1", seq=seq)
            flowing.set()
            await asyncio.sleep(0)

    async def churn() -> None:
        await flowing.wait()
        rng = random.Random(7)
        for _ in range(30):
            visitor = await open_one()
            await asyncio.sleep(rng.random() / 100)
            await visitor.disconnect()

    async def read() -> list[str]:
        got = []
        while len(got) < frames:
            got.append(await staying.receive_from(5))
            await staying.send_to(text_data=consumers.ACK)
        return got

    reading = asyncio.create_task(read())
    try:
        await asyncio.gather(publish(), churn())
        got = await reading
    finally:
        await staying.disconnect()
    assert got == [f"<p>{seq}</p>" for seq in range(1, frames + 1)]
    assert late == []
    assert len(left) == 31  # the thirty visitors, then the page that stayed
    # Only the staying page's snapshot request and the visitors' ones: no resync.
    requests = []
    while True:
        try:
            requests.append(await asyncio.wait_for(bridge.layer.receive(bridge.channel), 0.2))
        except TimeoutError:
            break
    assert len(requests) == 31


async def test_a_page_whose_consumer_failed_is_not_left_on_the_hub(hq, people, monkeypatch):
    building = hq[Scope.BUILDING]
    headers = [ORIGIN, await sync_to_async(session_cookie)(people.viewer)]
    pages_before = metrics.PAGES_CONNECTED._value.get()
    communicator = WebsocketCommunicator(application, f"/ws/buildings/{building}/", headers=headers)
    assert (await communicator.connect())[0]
    await layer.broadcast(building, "<p>1</p>", stream="s1", seq=1)
    assert await communicator.receive_from(5) == "<p>1</p>"
    assert metrics.PAGES_CONNECTED._value.get() == pages_before + 1

    async def refused(*args):  # as redis-py refuses when its connection pool is exhausted
        raise ConnectionError("Too many connections")

    monkeypatch.setattr(layer, "request_snapshot", refused)
    await layer.broadcast(building, "<p>3</p>", stream="s1", seq=3)  # a gap: its resync fails
    assert await communicator.receive_from(5) == "<p>3</p>"
    with pytest.raises(ConnectionError):
        await communicator.receive_output(5)  # the consumer ended on the error
    assert members(layer.group_name(building)) == []
    assert hub.running() is None
    assert metrics.PAGES_CONNECTED._value.get() == pages_before  # nor counted as connected


async def churn_pages(building, user, cycles: int, at_once: int = 20) -> None:
    """Open and close ``cycles`` pages, ``at_once`` at a time, each with its snapshot asked."""
    headers = [ORIGIN, await sync_to_async(session_cookie)(user)]

    async def one() -> None:
        communicator = WebsocketCommunicator(
            application, f"/ws/buildings/{building}/", headers=headers
        )
        # What is measured is what is left behind, not how fast 20 pages connect on a
        # busy machine: the communicator's 1 s default would time out there.
        assert (await communicator.connect(timeout=30))[0]
        await communicator.disconnect()

    for _ in range(cycles // at_once):
        await asyncio.gather(*(one() for _ in range(at_once)))


async def test_no_group_membership_is_left_after_a_thousand_pages_came_and_went(hq, people):
    building = hq[Scope.BUILDING]
    await churn_pages(building, people.support, CYCLES)
    channel_layer = get_channel_layer()
    # This building's groups: other tests of the run leave theirs in the process's layer.
    assert not [g for g in channel_layer.groups if g.startswith(f"building.{building.hex}")]
    assert hub.running() is None  # the hub left with its last page


async def test_on_redis_a_group_has_one_member_per_process_and_none_once_pages_left(
    redis_layer, hq, people
):
    building = hq[Scope.BUILDING]
    group_key = f"asgi:group:{layer.group_name(building)}"
    support_key = f"asgi:group:{layer.group_name(building, tiles.SUPPORT)}"
    headers = [ORIGIN, await sync_to_async(session_cookie)(people.support)]
    pages = []
    for _ in range(5):
        communicator = WebsocketCommunicator(
            application, f"/ws/buildings/{building}/", headers=headers
        )
        assert (await communicator.connect())[0]
        pages.append(communicator)
    try:
        assert await redis_layer.zcard(group_key) == 1
        assert await redis_layer.zcard(support_key) == 1
        await layer.broadcast(building, "<p>value 1</p>", stream="s", seq=1)
        for communicator in pages:
            assert await communicator.receive_from(5) == "<p>value 1</p>"
    finally:
        for communicator in pages:
            await communicator.disconnect()
    await churn_pages(building, people.support, CYCLES, at_once=50)
    assert await redis_layer.zcard(group_key) == 0
    assert await redis_layer.zcard(support_key) == 0
    assert hub.running() is None


class Recorder:
    """A page as the hub sees it, that keeps what it is handed."""

    def __init__(self) -> None:
        self.messages: list[dict] = []

    def deliver(self, message: dict) -> bool:
        self.messages.append(message)
        return False


async def test_a_window_of_many_buildings_at_once_reaches_every_page_on_the_hub():
    # 300 buildings' frames sent at once, as the fan-outs' windows may end together: the
    # hub's one channel must hold them all until it reads them (a page's channel held 100).
    buildings = [f"{n:032x}" for n in range(1, 301)]
    pages = {building: Recorder() for building in buildings}
    running = None
    for building, recorder in pages.items():
        running = await hub.Hub.subscribe(recorder, [layer.group_name(building)])
    try:
        await asyncio.gather(
            *(layer.broadcast(b, f"<p>{b}</p>", stream="s", seq=1) for b in buildings)
        )
        for _ in range(200):
            if all(recorder.messages for recorder in pages.values()):
                break
            await asyncio.sleep(0.01)
        assert {b: [m["frame"] for m in r.messages] for b, r in pages.items()} == {
            building: [f"<p>{building}</p>"] for building in buildings
        }
    finally:
        for building, recorder in pages.items():
            await running.unsubscribe(recorder, [layer.group_name(building)])
    assert hub.running() is None
