"""A TCP relay between the bridge and the broker that fails on demand, as real paths do.

Modes, switched while connections are open:

- pass: bytes flow both ways as they come;
- cut: bytes vanish both ways and no connection closes (a dead path: no FIN, no RST);
- throttle: a slow link, ``bytes_per_second`` each way plus ``latency`` seconds added;
- reset after K bytes: the next K bytes from the broker go through, then both sides get a
  TCP reset (an RST, not a FIN), whatever packet those bytes were in the middle of.

``heal()`` goes back to pass and drops every connection, as a router reboot does.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from types import TracebackType
from typing import Self

from tests.brokers import HOST, free_port

CHUNK = 65536
RESET_SETTLE = 0.05  # seconds for the bytes before a reset to reach the peer first


class _Link:
    """One relayed connection: the bridge's side and the broker's side."""

    def __init__(self, client: asyncio.StreamWriter, broker: asyncio.StreamWriter) -> None:
        self.client = client
        self.broker = broker

    def abort(self, *, reset: bool = False) -> None:
        for writer in (self.client, self.broker):
            if reset:
                sock = writer.get_extra_info("socket")
                if sock is not None:
                    # Linger 0: close() sends an RST and discards whatever is unsent.
                    with contextlib.suppress(OSError):
                        sock.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
            writer.transport.abort()


class Relay:
    """Listens on ``port`` and relays each connection to ``target_port`` on 127.0.0.1."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self.url = f"mqtt://{HOST}:{self.port}"
        self._target = target_port
        self.mode = "pass"
        self._rate: float | None = None  # bytes per second each way, None: unlimited
        self._latency = 0.0
        self._reset_in: int | None = None  # bytes from the broker left before the reset
        self.connections = 0  # accepted so far
        self.resets = 0  # connections reset mid-stream so far
        self._links: set[_Link] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    # --- modes ------------------------------------------------------------------------

    def cut(self) -> None:
        """Swallow every byte both ways from now on; connections stay open."""
        self.mode = "cut"

    def throttle(self, bytes_per_second: float, latency: float = 0.0) -> None:
        """A slow link: each direction at most ``bytes_per_second``, ``latency`` s late."""
        self.mode = "throttle"
        self._rate, self._latency = bytes_per_second, latency

    def pass_through(self) -> None:
        """Bytes flow as they come (open connections are kept)."""
        self.mode = "pass"
        self._rate, self._latency = None, 0.0

    def reset_after(self, nbytes: int) -> None:
        """Let ``nbytes`` more bytes through from the broker, then reset the connection."""
        self._reset_in = nbytes

    def heal(self) -> None:
        """Bytes flow again; connections made before are dropped, as a router reboot does."""
        self.pass_through()
        for link in list(self._links):
            link.abort()
        self._links.clear()

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> Self:
        self._server = await asyncio.start_server(self._accept, HOST, self.port)
        return self

    async def close(self) -> None:
        self.heal()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._handlers:
            # Aborted connections end their handlers within a loop turn or two; cancelling
            # them instead would make asyncio log each as an unhandled error.
            await asyncio.wait(list(self._handlers), timeout=5)

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- relaying ---------------------------------------------------------------------

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            try:
                broker_r, broker_w = await asyncio.open_connection(HOST, self._target)
            except OSError:  # the broker is down: refuse as it would
                client_w.transport.abort()
                return
            self.connections += 1
            link = _Link(client_w, broker_w)
            self._links.add(link)
            try:
                await asyncio.gather(
                    self._pump(client_r, broker_w, link, from_broker=False),
                    self._pump(broker_r, client_w, link, from_broker=True),
                )
            finally:
                self._links.discard(link)
                link.abort()
        finally:
            self._handlers.discard(task)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        link: _Link,
        *,
        from_broker: bool,
    ) -> None:
        """Read one direction, queue each chunk with its due time; a sender delivers them."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        sender = asyncio.create_task(self._send(queue, writer, link, from_broker=from_broker))
        try:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await reader.read(CHUNK):
                    if self.mode == "cut":
                        continue  # swallowed, as a dead path would
                    queue.put_nowait((loop.time() + self._latency, data))
        finally:
            queue.put_nowait(None)
            with contextlib.suppress(OSError):
                await sender
            link.abort()  # one side gone (or reset): the other goes too

    async def _send(
        self,
        queue: asyncio.Queue[tuple[float, bytes] | None],
        writer: asyncio.StreamWriter,
        link: _Link,
        *,
        from_broker: bool,
    ) -> None:
        loop = asyncio.get_running_loop()
        while (item := await queue.get()) is not None:
            due, data = item
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            if from_broker and self._reset_in is not None:
                if len(data) >= self._reset_in:
                    writer.write(data[: self._reset_in])
                    await writer.drain()
                    self._reset_in = None
                    await asyncio.sleep(RESET_SETTLE)
                    self.resets += 1
                    link.abort(reset=True)
                    return
                self._reset_in -= len(data)
            await self._write(writer, data)

    async def _write(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        rate = self._rate
        if rate is None:
            writer.write(data)
            await writer.drain()
            return
        piece = max(1, int(rate / 20))  # twenty slices a second: a smooth trickle
        for start in range(0, len(data), piece):
            writer.write(data[start : start + piece])
            await writer.drain()
            await asyncio.sleep(piece / rate)
