"""A paho-mqtt client driven by the asyncio event loop instead of its own network thread.

The loop watches the client's socket (``add_reader``/``add_writer``) and reads every packet
waiting at each wake-up; ``session.BuildingSession`` builds on it.
"""

from __future__ import annotations

import asyncio
import select
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import paho.mqtt.client as mqtt

if TYPE_CHECKING:
    from paho.mqtt.client import SocketLike

# Packets read per wake-up at most, so that one flooded building cannot starve the others.
MAX_PACKETS_PER_WAKE = 256

# A steady trickle woke the loop once per message: each wake-up's epoll, recv, select and
# PUBACK send cost more than the message's own ingest (docs/benchmarks.md, "Broadcast").
# A wake-up within READ_WAIT of a read that found fewer than SPARSE_READ packets waits out
# the rest, so a trickle is read several messages at a time, at most READ_WAIT late; while
# the trickle lasts, a timer reads every READ_WAIT with the socket's reader off (no epoll
# wake-up and no reader to take off and put back per read), and the first read that finds
# nothing puts the reader back. A lone message (no read just before) is read at once. So is
# a flood: a waiting read then finds SPARSE_READ or more, since the broker's QoS 1 in-flight
# window (20 on Mosquitto) fills, and the next read does not wait; the window never holds a
# flood to one fill per wait.
READ_WAIT = 0.004
SPARSE_READ = 16

# While ``hold()`` says so (the history writer is behind, settings.HISTORY_HOLD), the socket
# is not read: what the broker sends waits in the socket, then at the broker (QoS 1), which
# must keep it (Mosquitto: max_queued_messages 0).
# Asked at each wake-up, after every MAX_PACKETS_PER_WAKE packets, and every HOLD_POLL
# seconds while it holds.
HOLD_POLL = 0.02


# What one recv() asks the socket for; paho then takes its few bytes at a time from here.
RECV_CHUNK = 64 * 1024


class BufferedClient(mqtt.Client):
    """A paho client that reads the socket in chunks instead of a few bytes per system call.

    paho reads each packet with three or four recv() calls (the command byte, each byte of the
    remaining length, the rest), and the loop asked select() before each packet whether more
    was waiting: about five system calls per message, a tenth of the bridge's samples at full
    ingest (docs/benchmarks.md, "Ingest"). This overrides paho's one private read method.
    """

    _chunk: bytes = b""
    _taken = 0  # bytes of ``_chunk`` already handed to paho
    _chunk_of: object = None  # the socket ``_chunk`` came from
    # What ``fill`` got instead of bytes (b"": the broker closed; or the read's error), for
    # paho's next read to find after the buffer, as it would have from the socket.
    _ended: bytes | Exception | None = None

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._chunk_of is not self._sock:  # a new connection keeps nothing of the old one
            self._chunk_of, self._chunk, self._taken, self._ended = self._sock, b"", 0, None
        if self._taken >= len(self._chunk):
            if self._ended is not None:
                ended, self._ended = self._ended, None
                if isinstance(ended, Exception):
                    raise ended
                return ended
            chunk = super()._sock_recv(RECV_CHUNK)  # BlockingIOError when nothing is waiting
            if len(chunk) <= bufsize:  # all of it wanted, or b"": the broker closed
                return chunk
            self._chunk, self._taken = chunk, 0
        start = self._taken
        self._taken = min(start + bufsize, len(self._chunk))
        return self._chunk[start : self._taken]

    def buffered(self) -> bool:
        """Bytes already read from the socket wait here; select() cannot see them."""
        return self._chunk_of is self._sock and self._taken < len(self._chunk)

    def fill(self) -> bool:
        """Read what the socket has into an empty buffer; False when nothing is waiting.

        So the first packet of a wake-up is read by ``take_publishes`` too, not by paho, and
        no select() is needed to know the socket is empty: the read that finds it so says.
        The end of the connection, or an error, is kept for paho's next read to report.
        """
        if self.buffered() or (self._chunk_of is self._sock and self._ended is not None):
            return True
        sock = self._sock
        try:
            chunk = super()._sock_recv(RECV_CHUNK)
        except BlockingIOError:
            # A plain socket is empty. TLS and websockets stop at the end of a record or a
            # frame cut in two while more may be waiting already: paho's read goes on then.
            return type(sock) is not socket.socket and sock is not None and readable(sock)
        except Exception as exc:  # paho's own read reports it, as it would have
            self._chunk_of, self._chunk, self._taken, self._ended = sock, b"", 0, exc
            return True
        self._chunk_of, self._chunk, self._taken = sock, chunk, 0
        self._ended = None if chunk else b""
        return True

    def take_publishes(self, handle: Callable[[str, bytes], None], limit: int) -> int:
        """Hand ``handle`` the whole QoS 0 and 1 PUBLISH packets waiting in the buffer, at
        most ``limit``, and queue their PUBACKs; returns how many it took.

        paho spent more on each message than the session does: four reads of the buffer, a
        packet dict, the payload copied three times, an ``MQTTMessage``, the topic decoded
        twice, a walk of its callback matcher, then a queued-packet dict and a callback for
        the PUBACK. Anything else is left to paho, which reports what is wrong with it:
        another packet type, QoS 2, a packet cut at the buffer's end or one paho is in the
        middle of reading, an empty or undecodable topic, lengths that disagree.
        """
        sock, chunk = self._sock, self._chunk
        if self._chunk_of is not sock or self._in_packet["command"] != 0:
            return 0
        taken, pos = 0, self._taken
        # The PUBACKs, queued as one packet of their bytes, not a packet dict each that
        # coalesce_acks merged again before the send (scenario 8's stream: 3 % less CPU).
        acks = bytearray()
        try:
            while taken < limit and (found := _publish_at(chunk, pos)) is not None:
                qos, start, end = found
                topic_end = start + 2 + (chunk[start] << 8 | chunk[start + 1])
                body = topic_end + 2 * qos  # a QoS 1 packet's id comes before its payload
                if topic_end == start + 2 or body > end:
                    break
                try:
                    topic = chunk[start + 2 : topic_end].decode()
                except UnicodeDecodeError:
                    break
                pos = self._taken = end
                handle(topic, bytes(chunk[body:end]))  # bytes already over TCP: no copy
                taken += 1
                if qos:
                    acks += PUBACK_HEADER
                    acks += chunk[topic_end:body]  # the packet id
                if self._sock is not sock:  # the handler dropped the connection
                    break
        finally:
            if acks:  # those of the messages handed over, even if a handler raised
                self._out_packet.append(
                    {
                        "command": mqtt.PUBACK,
                        "mid": 0,
                        "qos": 1,
                        "pos": 0,
                        "to_process": len(acks),
                        "packet": bytes(acks),
                        "info": None,
                    }
                )
                self._call_socket_register_write()
        return taken

    def coalesce_acks(self) -> None:
        """Make the PUBACKs at the head of paho's queue one packet of their bytes.

        paho sends each queued packet with a send() of its own: at a steady stream one
        system call per message just to acknowledge it. The bytes and their order are the
        same. Only the loop's thread takes from the head of the queue (another thread may
        append at its tail), and a packet partly sent is left as it is.
        """
        queue = self._out_packet
        acks = []
        while queue and queue[0]["command"] == mqtt.PUBACK and queue[0]["pos"] == 0:
            acks.append(queue.popleft())
        if len(acks) > 1:
            joined = b"".join(bytes(ack["packet"]) for ack in acks)
            merged = {**acks[0], "mid": 0, "packet": joined, "to_process": len(joined)}
            queue.appendleft(merged)  # type: ignore[arg-type]
        elif acks:
            queue.appendleft(acks[0])


PUBACK_HEADER = bytes([mqtt.PUBACK, 2])  # then the packet id


def _publish_at(chunk: bytes, pos: int) -> tuple[int, int, int] | None:
    """(QoS, start of the variable header, end) of a whole QoS 0 or 1 PUBLISH at ``pos``."""
    if pos >= len(chunk):
        return None
    header = chunk[pos]
    qos = (header >> 1) & 3
    if header >> 4 != mqtt.PUBLISH >> 4 or qos > 1:
        return None
    length = 0
    for n in range(4):  # the remaining length: 7 bits a byte, at most four bytes
        at = pos + 1 + n
        if at >= len(chunk):
            return None
        byte = chunk[at]
        length |= (byte & 0x7F) << (7 * n)
        if byte < 0x80:
            start, end = at + 1, at + 1 + length
            return (qos, start, end) if start + 2 <= end <= len(chunk) else None
    return None


class LoopDriven:
    """Runs the socket I/O of the paho client ``_client`` on the running event loop."""

    _client: BufferedClient

    def __init__(self, hold: Callable[[], bool] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        self._hold = hold or _never
        self._sock: socket.socket | None = None
        self._write_soon = False
        self._writer_on = False  # the loop watches the socket for room to write
        self._reading = False  # inside ``_read``: its PUBACKs are written at its end
        self._last_in = time.monotonic()  # when the broker last sent us anything
        self._sparse_at = -READ_WAIT  # when the last read that found few packets began
        self._polling = False  # the reader is off; a scheduled read does (``_poll``)
        self._scheduled: asyncio.Handle | None = None  # that read
        self.wakeups = 0  # reads of the socket: what READ_WAIT saves (tests count them)

    def _drive(self, client: mqtt.Client) -> None:
        """Hand ``client``'s socket to the loop whenever paho opens one."""
        client.on_socket_open = self._threadsafe(self._socket_open)
        client.on_socket_close = self._threadsafe(self._socket_close)
        client.on_socket_register_write = self._threadsafe(self._register_write)
        client.on_socket_unregister_write = self._threadsafe(self._unregister_write)

    def _threadsafe(self, func: Callable[[socket.socket], None]) -> Callable[..., None]:
        # paho calls these from the connect thread too; the loop's own calls go straight through.
        def callback(client: mqtt.Client, userdata: object, sock: socket.socket) -> None:
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is self._loop:
                func(sock)
            elif not self._loop.is_closed():
                self._loop.call_soon_threadsafe(func, sock)
            # else: a client collected after its loop closed; the loop's readers went with it.

        return callback

    def _socket_open(self, sock: socket.socket) -> None:
        self._sock = sock
        self._polling = False
        if self._scheduled is not None:  # the old socket's
            self._scheduled.cancel()
            self._scheduled = None
        self._loop.add_reader(sock, self._readable)

    def _socket_close(self, sock: socket.socket) -> None:
        if sock.fileno() >= 0:  # after a silent cut we closed it already; paho closes it again
            self._loop.remove_reader(sock)
            self._loop.remove_writer(sock)
        if self._sock is sock:
            self._sock = None
            self._writer_on = False

    def _register_write(self, sock: socket.socket) -> None:
        # paho asks to write once per PUBACK; writing once per read (or loop turn) instead
        # saves an add_writer/remove_writer pair (two epoll_ctl calls) per message.
        if sock is self._sock and not self._write_soon:
            self._write_soon = True
            if not self._reading:
                self._loop.call_soon(self._write, sock)

    def _write(self, sock: socket.socket | None) -> None:
        self._write_soon = False
        if sock is not None and sock is self._sock:
            self._client.coalesce_acks()
            self._client.loop_write()
            if self._client.want_write() and sock is self._sock and not self._writer_on:
                # The socket was full: the loop writes the rest when it has room. Once: a
                # read while it waits writes again, and must not register it again.
                self._writer_on = True
                self._loop.add_writer(sock, self._client.loop_write)

    def _unregister_write(self, sock: socket.socket) -> None:
        # paho says so after every write that empties its queue: only a writer that is on
        # is taken off (a lookup in the loop's selector each time otherwise).
        if self._writer_on and sock.fileno() >= 0:
            self._writer_on = False
            self._loop.remove_writer(sock)

    def _readable(self) -> None:
        """The socket has bytes: read them now, or after the rest of READ_WAIT in a trickle."""
        sock = self._sock
        if sock is None:
            self._read()
            return
        if self._hold():
            self._wait(sock, HOLD_POLL)
            return
        wait = self._sparse_at + READ_WAIT - time.monotonic()
        if wait <= 0:
            self._read()
            return
        self._wait(sock, wait)

    def _wait(self, sock: socket.socket, seconds: float) -> None:
        """Read again in ``seconds`` (0: on the next loop turn), the socket's reader off until
        then: one scheduled read at a time is the socket's only reader."""
        if not self._polling:
            self._loop.remove_reader(sock)
            self._polling = True
        if self._scheduled is not None:
            self._scheduled.cancel()
        if seconds > 0:
            self._scheduled = self._loop.call_later(seconds, self._poll, sock)
        else:
            self._scheduled = self._loop.call_soon(self._poll, sock)

    def _poll(self, sock: socket.socket) -> None:
        self._scheduled = None
        if sock is not self._sock or not self._polling or sock.fileno() < 0:
            return  # closed meanwhile; a new socket has its own reader
        if self._hold():  # a flood stops within one wake-up's packets
            self._wait(sock, HOLD_POLL)
            return
        self._read()

    def _message(self, topic: str, payload: bytes) -> None:
        """One message from the broker, whichever path read it."""
        raise NotImplementedError

    def _read(self) -> None:
        """Read every packet already waiting, then send their PUBACKs at once (one send)."""
        began = self._last_in = time.monotonic()
        self.wakeups += 1
        client, sock = self._client, self._sock
        _bytes_arrived(client)
        packets = 0
        self._reading = True
        try:
            while packets < MAX_PACKETS_PER_WAKE and sock is not None and client.fill():
                taken = client.take_publishes(self._message, MAX_PACKETS_PER_WAKE - packets)
                if not taken:
                    client.loop_read()  # any other packet, or the rest of one cut in two
                packets += taken or 1
                if sock is not self._sock:  # the connection was dropped meanwhile
                    break
        finally:
            self._reading = False
            try:
                # PUBACKs queued before a handler failed too (take_publishes asks to write
                # only once it has taken them all).
                if self._write_soon or client.want_write():
                    self._write(sock)
            finally:
                # Whatever happened, the socket is read again: by a timer, or by its reader.
                self._next_read(sock, began, packets)

    def _next_read(self, sock: socket.socket | None, began: float, packets: int) -> None:
        if sock is None or sock is not self._sock or sock.fileno() < 0:
            return  # closed meanwhile; a new socket has its own reader
        if packets >= MAX_PACKETS_PER_WAKE or self._client.buffered():
            # More may be waiting: read it on the next loop turn, after the other buildings;
            # with the reader off meanwhile, so that it does not read more this turn. Bytes
            # TLS already decrypted never wake the selector again, so waiting on it would
            # stall the session until the broker happens to send something else; nor do
            # packets left in the buffer by a read that raised (a paho callback's error).
            self._wait(sock, 0)
            return
        if packets < SPARSE_READ:
            self._sparse_at = began
            if self._polling and packets:  # a trickle goes on: read again after READ_WAIT
                self._wait(sock, READ_WAIT)
                return
        if self._polling:  # nothing came, or a flood did: the reader wakes the next read
            self._polling = False
            # By its number: add_reader looks the socket up first, and the KeyError it
            # catches formats the socket's repr (getsockname and getpeername: two system
            # calls, twice) on every call; a number's repr costs nothing.
            self._loop.add_reader(sock.fileno(), self._readable)

    def _more_waiting(self, sock: socket.socket) -> bool:
        return self._client.buffered() or readable(sock)


def _never() -> bool:
    return False


def _bytes_arrived(client: mqtt.Client) -> None:
    """Tell paho's keepalive that the broker is sending.

    paho counts only the bytes its transport hands over, and its websocket transport hands
    over none until a whole frame is in: one large message can take longer than two
    keepalives (Mosquitto's websockets listener sends about 40 KB a second), and paho would
    then drop a working link, with every message in flight.
    """
    with client._msgtime_mutex:
        client._last_bytes_received = time.monotonic()


def readable(sock: SocketLike) -> bool:
    """Bytes wait on the socket, or inside TLS where the kernel cannot see them."""
    pending = getattr(sock, "pending", None)
    if pending is not None and pending() > 0:
        return True
    # poll(), not select(): select() refuses a descriptor of 1024 or more, and a web process
    # with its bridge and a thousand pages open has its broker sockets up there.
    poller = select.poll()
    try:
        poller.register(sock, select.POLLIN)
        return any(events & select.POLLIN for _, events in poller.poll(0))
    except (OSError, ValueError):  # closed meanwhile
        return False
