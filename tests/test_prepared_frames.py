"""A thousand wall screens on one building: a frame is made ready for the wire once.

Under ``serve`` the hub makes each frame's WebSocket bytes once for every page of the
process, and each page writes them straight to its connection (dashboard/live/wire.py,
dashboard/wire_server.py). What each page was promised stays as it was: its snapshot, its
resync after a gap, its cut-off when it stops reading, and nothing written to a connection
that is closing. The browser tests (test_browser.py) run the same path on a real server.
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from autobahn.websocket.protocol import PreparedMessage
from channels.testing import WebsocketCommunicator
from prometheus_client import REGISTRY
from twisted.internet import reactor, tcp
from twisted.internet.protocol import Protocol
from twisted.internet.testing import StringTransport

from dashboard import consumers
from dashboard.contract.topics import Scope
from dashboard.live import hub, layer, tiles, wire
from dashboard.live.wire import ACK
from dashboard.wire_server import WireProtocol, Writer, write_now
from gooee_site.asgi import application
from tests.test_consumers import ORIGIN, FakeBridge, closed_with, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)


class Connection:
    """A page's connection as the server offers it: what was written to it, frame by frame."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.open = True
        self.error: Exception | None = None
        self.acks: Any = None  # the consumer's handler, while it takes acks at once

    def take_acks(self, handler: Any) -> None:
        self.acks = handler

    def write(self, data: bytes) -> bool:
        if self.error is not None:
            raise self.error
        if not self.open:
            return False
        self.written.append(data)
        return True

    def frames(self) -> list[str | bytes]:
        return [decode(data) for data in self.written]


def decode(data: bytes) -> str | bytes:
    """One unmasked server frame, as a browser reads it."""
    assert data[0] in (0x81, 0x82), "one whole text or binary message per frame"
    size, at = data[1], 2
    assert not size & 0x80, "a server's frames are not masked"
    if size == 126:
        size, at = int.from_bytes(data[2:4], "big"), 4
    elif size == 127:
        size, at = int.from_bytes(data[2:10], "big"), 10
    payload = data[at:]
    assert len(payload) == size
    return payload.decode() if data[0] == 0x81 else payload


async def open_page(user: Any, building: Any) -> tuple[WebsocketCommunicator, Connection]:
    """A building page under a server that takes prepared frames."""
    headers = [ORIGIN, await sync_to_async(session_cookie)(user)]
    communicator = WebsocketCommunicator(application, f"/ws/buildings/{building}/", headers=headers)
    connection = Connection()
    offered = {"write": connection.write, "take_acks": connection.take_acks}
    communicator.scope["extensions"] = {wire.EXTENSION: offered}
    assert (await communicator.connect())[0]
    return communicator, connection


@pytest.fixture
async def pages(hq, people):
    """Three viewers' pages and a support engineer's, each with its snapshot at seq 1."""
    building = hq[Scope.BUILDING]
    bridge = await FakeBridge(building).join()
    opened = [await open_page(people.viewer, building) for _ in range(3)]
    opened.append(await open_page(people.support, building))
    answered = 0
    while answered < len(opened):
        request = await bridge.next_request()
        positions = {audience: ("s1", 1) for audience in request["audiences"]}
        for reply_to in asked_by(request):
            await layer.send_snapshot(reply_to, building, "<p>snapshot</p>", positions)
            answered += 1
    await until(lambda: all(c.written for _, c in opened), "every snapshot")
    yield building, bridge, opened
    for communicator, _ in opened:
        await communicator.disconnect()


def asked_by(request: dict[str, Any]) -> list[str]:
    """The pages' channels a snapshot request is for: one, or the pages that asked at once."""
    reply_to = request["reply_to"]
    return [reply_to] if isinstance(reply_to, str) else list(reply_to)


async def acknowledge(communicator: WebsocketCommunicator, connection: Connection) -> None:
    """The page acks a frame: handed to its consumer at once, or queued when it is busy."""
    if connection.acks is None or not connection.acks():
        await communicator.send_to(text_data=ACK)


async def until(condition: Any, what: str) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


async def test_every_wall_screen_gets_the_same_wire_bytes_made_once_for_the_building(pages):
    building, _, opened = pages
    busy = "".join(f'<span id="meta-{n}" hx-swap-oob="true">{n}</span>' for n in range(200))
    await layer.broadcast(building, busy, stream="s1", seq=2)
    await layer.broadcast(building, "<p>small</p>", stream="s1", seq=3)
    await until(lambda: all(len(c.written) == 3 for _, c in opened), "both frames on every page")

    for communicator, connection in opened:
        snapshot, deflated, small = connection.frames()
        assert snapshot == "<p>snapshot</p>"
        assert isinstance(deflated, bytes) and layer.unpack(deflated) == busy
        assert small == "<p>small</p>"
        assert await communicator.receive_nothing(0.05)  # nothing through the ASGI send
    # One object for all pages: made by the hub, not once per page.
    first = opened[0][1].written[1]
    assert all(connection.written[1] is first for _, connection in opened)


async def test_the_wire_bytes_are_what_a_websocket_library_would_send():
    for frame in ("", "<p>é</p>", "x" * 125, "x" * 126, b"\x01" * 70_000):
        payload = frame.encode() if isinstance(frame, str) else frame
        expected = PreparedMessage(payload, isinstance(frame, bytes), False, True).payloadHybi
        assert wire.server_frame(frame) == expected


async def test_a_screen_that_missed_a_frame_still_resyncs(pages):
    building, bridge, opened = pages
    await layer.broadcast(building, "<p>2</p>", stream="s1", seq=2)
    await layer.broadcast(building, "<p>4</p>", stream="s1", seq=4)  # 3 never came
    await until(lambda: all(len(c.written) == 3 for _, c in opened), "both frames on every page")
    resyncing: list[str] = []
    while len(resyncing) < len(opened):
        request = await bridge.next_request()
        assert request["audiences"] == [tiles.EVERYONE]  # the support tiles missed nothing
        resyncing += asked_by(request)
    assert len(set(resyncing)) == len(opened)


async def test_a_screen_that_stops_reading_is_cut_off_and_the_others_keep_getting_frames(
    pages, monkeypatch
):
    monkeypatch.setattr(consumers, "MAX_UNACKED", 5)
    building, _, opened = pages
    (frozen, frozen_connection), *reading = opened
    for seq in range(2, 12):
        await layer.broadcast(building, f"<p>{seq}</p>", stream="s1", seq=seq)
        await until(lambda seq=seq: all(len(c.written) == seq for _, c in reading), f"frame {seq}")
        for communicator, connection in reading:
            await acknowledge(communicator, connection)
            await acknowledge(communicator, connection)  # and the snapshot's
    assert await closed_with(frozen) == consumers.TRY_AGAIN_LATER
    # The snapshot and four frames: the sixth unacknowledged frame is never written.
    assert frozen_connection.frames() == ["<p>snapshot</p>"] + [f"<p>{n}</p>" for n in range(2, 6)]
    for _, connection in reading:
        assert connection.frames()[-1] == "<p>11</p>"


async def test_nothing_is_written_to_a_page_whose_connection_is_closing(pages):
    building, _, opened = pages
    (_, closing), *others = opened
    closing.open = False  # the page left; its disconnect is on its way
    await layer.broadcast(building, "<p>2</p>", stream="s1", seq=2)
    await until(lambda: all(len(c.written) == 2 for _, c in others), "the frame on the others")
    assert closing.frames() == ["<p>snapshot</p>"]


@pytest.mark.parametrize(
    "state",
    [
        WireProtocol.STATE_CONNECTING,
        WireProtocol.STATE_CLOSING,
        WireProtocol.STATE_CLOSED,
    ],
)
def test_the_server_never_writes_to_a_connection_that_is_not_open(state):
    protocol = WireProtocol()
    protocol.state, protocol.send_queue = state, deque()
    protocol.transport = StringTransport()
    assert Writer(protocol)(wire.server_frame("<p>late</p>")) is False
    assert protocol.transport.value() == b""


def test_the_server_writes_to_an_open_connection_until_daphne_mutes_it():
    protocol = WireProtocol()
    protocol.state, protocol.send_queue = WireProtocol.STATE_OPEN, deque()
    protocol.transport = StringTransport()
    assert Writer(protocol)(wire.server_frame("<p>now</p>")) is True
    assert protocol.transport.value() == wire.server_frame("<p>now</p>")

    protocol.muted = True  # daphne mutes a connection after an error
    assert Writer(protocol)(wire.server_frame("<p>late</p>")) is False
    assert protocol.transport.value() == wire.server_frame("<p>now</p>")


@pytest.fixture
def tcp_connection():
    """A server-side Twisted TCP connection to a peer socket, as daphne's pages have."""
    listener = socket.create_server(("127.0.0.1", 0))
    peer = socket.create_connection(listener.getsockname())
    accepted, address = listener.accept()
    accepted.setblocking(False)
    transport = tcp.Server(accepted, Protocol(), address, None, 1, reactor)
    transport.registerProducer(Protocol(), True)  # as daphne's HTTP channel stays registered
    yield transport, peer
    transport.stopReading()
    transport.stopWriting()
    for sock in (accepted, peer, listener):
        sock.close()


def test_a_frame_leaves_at_once_on_a_connection_with_nothing_waiting(tcp_connection):
    transport, peer = tcp_connection
    frame = wire.server_frame("<p>now</p>" * 1000)
    write_now(transport, frame)
    # On the socket already, not left for a turn of the loop; nothing kept in Twisted.
    assert not transport._tempDataBuffer and not transport.dataBuffer
    received = b""
    peer.settimeout(5)
    while len(received) < len(frame):
        received += peer.recv(len(frame))
    assert received == frame


def test_a_frame_waits_behind_what_twisted_still_holds_for_the_connection(tcp_connection):
    transport, _ = tcp_connection
    transport.write(b"first")  # buffered by Twisted until its loop finds the socket writable
    write_now(transport, b"second")
    assert transport._tempDataBuffer == [b"first", b"second"]


def client_frame(text: str, mask: bytes = b"\x5a\x13\xc4\x07") -> bytes:
    """A text frame as a browser sends it: masked."""
    payload = bytes(b ^ mask[n % 4] for n, b in enumerate(text.encode()))
    return bytes((0x81, 0x80 | len(payload))) + mask + payload


@pytest.fixture
def open_protocol():
    """An open page connection whose consumer takes acks as they come, or not."""
    protocol = WireProtocol()
    protocol.state, protocol.send_queue = WireProtocol.STATE_OPEN, deque()
    protocol.data, protocol.current_frame, protocol.inside_message = b"", None, False
    protocol.application_queue = asyncio.Queue()
    taken: list[bool] = []
    protocol.acks = lambda: taken.append(True) or True
    return protocol, taken


def test_a_pages_acks_are_handed_to_its_consumer_straight_from_the_connection(open_protocol):
    protocol, taken = open_protocol
    assert protocol._only_acks(client_frame(ACK))
    assert protocol._only_acks(client_frame(ACK) + client_frame(ACK, b"\x00\xff\x10\x01"))
    assert taken == [True, True, True]
    assert protocol.application_queue.empty()


def test_an_ack_the_consumer_cannot_take_now_waits_in_its_queue(open_protocol):
    protocol, _ = open_protocol
    protocol.acks = lambda: False  # its dispatch loop is busy with something else
    assert protocol._only_acks(client_frame(ACK))
    assert protocol.application_queue.get_nowait() == {"type": "websocket.receive", "text": ACK}


@pytest.mark.parametrize(
    "data",
    [
        client_frame("hello"),
        client_frame("ak!"),  # an ack's size, not an ack
        client_frame(ACK)[:5],  # an ack cut in two by the network
        client_frame(ACK) + client_frame(ACK)[:4],
        bytes((0x81, 0x03)) + ACK.encode() * 2,  # unmasked: autobahn refuses it
        bytes((0x01, 0x83)) + client_frame(ACK)[2:],  # not the message's last frame
    ],
)
def test_anything_but_whole_acks_is_read_by_autobahn_as_before(open_protocol, data):
    protocol, taken = open_protocol
    assert not protocol._only_acks(data)
    assert taken == []


def test_acks_wait_for_a_frame_autobahn_has_begun_reading(open_protocol):
    protocol, taken = open_protocol
    protocol.data = b"\x81"  # the first byte of a frame, its rest still on the way
    assert not protocol._only_acks(client_frame(ACK))
    assert taken == []


async def test_a_screen_whose_connection_fails_is_let_go_and_the_others_keep_their_frames(pages):
    building, _, opened = pages
    failing, connection = opened.pop(0)  # it ends on its error: nothing left to disconnect
    others = opened
    connection.error = OSError("the connection broke mid-write")
    await layer.broadcast(building, "<p>2</p>", stream="s1", seq=2)
    with pytest.raises(OSError):
        await failing.receive_output(5)  # its consumer ended on the error, and left the hub...
    assert len(hub.running().pages[layer.group_name(building)]) == 3
    await layer.broadcast(building, "<p>3</p>", stream="s1", seq=3)  # ...which goes on
    await until(lambda: all(len(c.written) == 3 for _, c in others), "both frames on the others")


def page_frames_counted() -> tuple[float, float]:
    """``gooee_page_frames_total`` and ``gooee_page_bytes_total`` as /metrics shows them."""
    return (
        REGISTRY.get_sample_value("gooee_page_frames_total") or 0.0,
        REGISTRY.get_sample_value("gooee_page_bytes_total") or 0.0,
    )


async def test_every_frame_a_screen_is_sent_is_counted_once_however_it_leaves(pages):
    building, _, opened = pages
    frames, size = page_frames_counted()
    # In order: each page writes it at once, and the hub counts the four together.
    await layer.broadcast(building, "<p>next</p>", stream="s1", seq=2)
    await until(lambda: all(len(c.written) == 2 for _, c in opened), "the frame on every page")
    assert page_frames_counted() == (frames + 4, size + 4 * len("<p>next</p>"))
    # After a gap each page sends it from its own queue, and counts it there.
    await layer.broadcast(building, "<p>after a gap</p>", stream="s1", seq=4)
    await until(lambda: all(len(c.written) == 3 for _, c in opened), "the frame after a gap")
    assert page_frames_counted() == (
        frames + 8,
        size + 4 * len("<p>next</p>") + 4 * len("<p>after a gap</p>"),
    )
