"""A frame's WebSocket wire bytes, made once and written as they are to every page.

A server's frames are not masked (RFC 6455, 5.1), so a frame's bytes on the wire are the
same for every page that gets it. The hub (dashboard/live/hub.py) makes them once per frame;
under ``serve`` each page writes them straight to its connection (dashboard/wire_server.py),
instead of the server encoding the text and framing it again for each page.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypedDict

# The ASGI extension a server offers in a WebSocket's scope when it takes prepared frames,
# ``scope["extensions"][EXTENSION]``:
# - ``write(wire)`` writes them, or returns False when the connection is no longer open (and
#   nothing is written);
# - ``take_acks(handler)``: the server calls ``handler()`` for each ACK the page sends, at
#   once, instead of queueing a ``websocket.receive``; when it returns False (the consumer
#   cannot take it now) the ack is queued as usual. ``take_acks(None)`` stops it.
# Without the extension, a page sends and receives as usual.
EXTENSION = "gooee.wire_frames"
ACK = "ack"  # what live.js sends back for each frame it has applied

Write = Callable[[bytes], bool]
AckHandler = Callable[[], bool]


class Extension(TypedDict):
    write: Write
    take_acks: Callable[[AckHandler | None], None]


_TEXT, _BINARY = 0x81, 0x82  # FIN and the opcode: a whole message in one frame


def server_frame(frame: str | bytes) -> bytes:
    """One unmasked, unfragmented WebSocket frame carrying ``frame`` (text or binary)."""
    if isinstance(frame, str):
        first, payload = _TEXT, frame.encode()
    else:
        first, payload = _BINARY, frame
    size = len(payload)
    if size <= 125:
        header = bytes((first, size))
    elif size <= 0xFFFF:
        header = bytes((first, 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((first, 127)) + size.to_bytes(8, "big")
    return header + payload


def extension(scope: dict) -> Extension | None:
    """What the server offers this socket for prepared frames and acks, if anything."""
    offered: Extension | None = (scope.get("extensions") or {}).get(EXTENSION)
    return offered
