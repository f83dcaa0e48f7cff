"""daphne, offering pages to write the hub's prepared frames straight to their connection.

daphne sends each page's frame through the ASGI send chain (channels' session middleware,
daphne's reply hop), encodes its text for that page, and autobahn frames it for that page:
a 13-130 KB copy or two per page per frame. The hub makes a frame's wire bytes once
(dashboard/live/wire.py); this server offers each WebSocket the ``gooee.wire_frames``
extension, whose ``write`` puts them on the page's connection as they are.

Imported by dashboard/serving.py once daphne has installed its reactor.
"""

from __future__ import annotations

from typing import Any

from daphne.server import Server
from daphne.ws_protocol import WebSocketProtocol
from twisted.internet import tcp

from dashboard.live.wire import EXTENSION


class WireServer(Server):
    """daphne's Server; each WebSocket's scope also offers the prepared-frames extension."""

    def create_application(self, protocol: Any, scope: dict[str, Any]) -> Any:
        if isinstance(protocol, WebSocketProtocol):
            extensions = {**(scope.get("extensions") or {}), EXTENSION: {"write": Writer(protocol)}}
            scope = {**scope, "extensions": extensions}
        return super().create_application(protocol, scope)


class Writer:
    """Writes prepared frames to one page's connection while it is open."""

    __slots__ = ("protocol",)

    def __init__(self, protocol: WebSocketProtocol) -> None:
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


def write_now(transport: Any, data: bytes) -> None:
    """``transport.write(data)``, sent at once when nothing waits to be sent before it.

    Twisted's write only buffers and waits for the socket to be writable: an add_writer and
    a remove_writer on the event loop (two epoll_ctl) and a turn of the loop per page per
    frame, about a tenth of the server with 1,000 pages. A plain TCP connection with an
    empty buffer takes the bytes now, as asyncio's transports do; what the socket does not
    take is left to Twisted. TLS (daphne's ``ssl:`` endpoints) goes through Twisted.
    """
    if (
        type(transport) is tcp.Server
        and not transport.TLS
        and transport.connected
        and not transport.disconnecting
        and not transport._writeDisconnected
        and transport.producer is None
        and not transport._tempDataLen
        and transport.offset == len(transport.dataBuffer)
    ):
        sent = transport.writeSomeData(data)
        if isinstance(sent, int):  # else the connection is lost: Twisted's write finds out
            if sent == len(data):
                return
            data = data[sent:]
    transport.write(data)
