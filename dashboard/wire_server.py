"""daphne, offering pages to write the hub's prepared frames straight to their connection.

daphne sends each page's frame through the ASGI send chain (channels' session middleware,
daphne's reply hop), encodes its text for that page, and autobahn frames it for that page:
a 13-130 KB copy or two per page per frame. The hub makes a frame's wire bytes once
(dashboard/live/wire.py); this server offers each WebSocket the ``gooee.wire_frames``
extension, whose ``write`` puts them on the page's connection as they are; the page's acks
come back the same way, straight from the connection (``WireProtocol``).

Imported by dashboard/serving.py once daphne has installed its reactor.
"""

from __future__ import annotations

import time
from typing import Any

from daphne.server import Server
from daphne.ws_protocol import WebSocketProtocol
from twisted.internet import tcp

from dashboard.live.wire import ACK, EXTENSION, AckHandler


class WireServer(Server):
    """daphne's Server; each WebSocket's scope also offers the prepared-frames extension."""

    # daphne makes its WebSocket factory when it runs; its connections are WireProtocols.
    @property
    def ws_factory(self) -> Any:
        return self._ws_factory

    @ws_factory.setter
    def ws_factory(self, factory: Any) -> None:
        factory.protocol = WireProtocol
        self._ws_factory = factory

    def create_application(self, protocol: Any, scope: dict[str, Any]) -> Any:
        if isinstance(protocol, WireProtocol):
            writer = Writer(protocol)
            offered = {"write": writer, "take_acks": writer.take_acks}
            extensions = {**(scope.get("extensions") or {}), EXTENSION: offered}
            scope = {**scope, "extensions": extensions}
        return super().create_application(protocol, scope)


# A page's ack on the wire: FIN and text, masked (as every client frame), three bytes.
_ACK = ACK.encode()
_ACK_HEADER = bytes((0x81, 0x80 | len(_ACK)))
_ACK_SIZE = len(_ACK_HEADER) + 4 + len(_ACK)
_ACK_VALUE = int.from_bytes(_ACK, "big")


class WireProtocol(WebSocketProtocol):
    """daphne's WebSocket protocol, reading a page's acks without autobahn's frame parser.

    Each page acknowledges each frame: with 1,000 pages that is as many client frames as
    page-frames, and autobahn's general parser (its masker, UTF-8 validator, frame and
    message callbacks and debug logging) was the largest part of the fan-out after the
    frames' own writes. Data that is nothing but whole ack frames, arriving between
    messages, is read here; anything else goes to autobahn as before.
    """

    acks: AckHandler | None = None  # the page's consumer, while it takes them at once

    def dataReceived(self, data: bytes) -> None:
        if not self._only_acks(data):
            super().dataReceived(data)

    def _only_acks(self, data: bytes) -> bool:
        size = len(data)
        if (
            not size
            or size % _ACK_SIZE
            or self.state != self.STATE_OPEN
            or self.data  # part of a frame is waiting for the rest
            or self.current_frame is not None
            or self.inside_message
        ):
            return False
        for at in range(0, size, _ACK_SIZE):
            if data[at : at + 2] != _ACK_HEADER:
                return False
            mask = int.from_bytes(data[at + 2 : at + 2 + len(_ACK)], "big")
            if int.from_bytes(data[at + 6 : at + _ACK_SIZE], "big") ^ mask != _ACK_VALUE:
                return False
        if self.muted:  # as daphne's onMessage: nothing more from this connection
            return True
        self.last_ping = time.time()  # daphne pings a page only after a quiet while
        for _ in range(size // _ACK_SIZE):
            if self.acks is None or not self.acks():
                self.application_queue.put_nowait({"type": "websocket.receive", "text": ACK})
        return True


class Writer:
    """Writes prepared frames to one page's connection while it is open."""

    __slots__ = ("protocol",)

    def __init__(self, protocol: WireProtocol) -> None:
        self.protocol = protocol

    def __call__(self, data: bytes) -> bool:
        protocol = self.protocol
        # Never to a connection that is closing (its close frame may be out already), closed,
        # or that daphne muted after an error; nor before its handshake was answered.
        if protocol.state != protocol.STATE_OPEN or protocol.muted:
            return False
        if protocol.send_queue:  # autobahn is writing something in pieces: after it
            protocol.sendData(data)
        else:
            write_now(protocol.transport, data)
        return True

    def take_acks(self, handler: AckHandler | None) -> None:
        self.protocol.acks = handler


def write_now(transport: Any, data: bytes) -> None:
    """``transport.write(data)``, sent at once when nothing waits to be sent before it.

    Twisted's write only buffers and waits for the socket to be writable: an add_writer and
    a remove_writer on the event loop (two epoll_ctl) and a turn of the loop per page per
    frame, about a tenth of the server with 1,000 pages. A plain TCP connection with an
    empty buffer takes the bytes now, as asyncio's transports do; what the socket does not
    take is left to Twisted. TLS (daphne's ``ssl:`` endpoints) goes through Twisted.

    The producer registered on the connection (daphne's HTTP channel, from before the
    upgrade) is paused only while a buffer is waiting, which is never the case here.
    """
    if (
        type(transport) is tcp.Server
        and not transport.TLS
        and transport.connected
        and not transport.disconnecting
        and not transport._writeDisconnected
        and not transport._tempDataLen
        and transport.offset == len(transport.dataBuffer)
    ):
        sent = transport.writeSomeData(data)
        if isinstance(sent, int):  # else the connection is lost: Twisted's write finds out
            if sent == len(data):
                return
            data = data[sent:]
    transport.write(data)
