"""A TLS front for a broker's plain listener that cuts the broker's bytes into TLS records
its own way, as other brokers and proxies do: ``coalesce`` packs what arrives within a moment
into as few records as fit (many MQTT packets or websocket frames to a record, the last
record's rest already decrypted when a reader stops early), ``split`` sends every few bytes
as a record of its own (packets and frames cut across records).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from types import TracebackType
from typing import Literal, Self

from tests.brokers import HOST, TlsMaterial, free_port

Policy = Literal["coalesce", "split"]
CHUNK = 65536


class TlsRepacker:
    """Listens with TLS on ``port``; relays each connection to ``target_port`` in plain."""

    def __init__(
        self,
        target_port: int,
        tls: TlsMaterial,
        policy: Policy,
        *,
        gather: float = 0.05,
        piece: int = 7,
    ) -> None:
        self.port = free_port()
        self._target = target_port
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(tls.cert_file, tls.key_file)
        self.policy = policy
        self._gather = gather
        self._piece = piece
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._accept, HOST, self.port, ssl=self._context)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        broker_r, broker_w = await asyncio.open_connection(HOST, self._target)
        pumps = [
            asyncio.create_task(self._pass(client_r, broker_w)),
            asyncio.create_task(self._repack(broker_r, client_w)),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
                self._tasks.discard(task)
            for writer in (client_w, broker_w):
                writer.transport.abort()

    async def _pass(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()

    async def _repack(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(CHUNK):
            if self.policy == "coalesce":
                # Everything that follows within a moment goes out in one write: asyncio's
                # TLS writes one record per 16 KB of it.
                with contextlib.suppress(TimeoutError):
                    while more := await asyncio.wait_for(reader.read(CHUNK), self._gather):
                        data += more
                writer.write(data)
            else:
                for start in range(0, len(data), self._piece):
                    writer.write(data[start : start + self._piece])  # a record each
            await writer.drain()
