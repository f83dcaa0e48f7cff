"""Run daphne with companion services (the bridge, the demo's emulator) on its event loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol, cast

from django.conf import settings

logger = logging.getLogger(__name__)


class Service(Protocol):
    async def start(self) -> object: ...

    async def stop(self) -> None: ...


class Output(Protocol):
    """Where the server says where it listens: a command's stdout, or sys.stdout."""

    def write(self, text: str, /) -> object: ...

    def flush(self) -> object: ...


def run(
    stdout: Output,
    host: str,
    port: int,
    services: Sequence[Service] = (),
    notes: Sequence[str] = (),
) -> None:
    """Serve HTTP and WebSockets until Ctrl-C; start ``services`` in order, stop them reversed.

    Prints the URL (then ``notes``) once the port is open. A service that fails to start
    stops the server.
    """
    # Importing daphne.server installs Twisted's asyncio reactor; it must come first.
    from channels.routing import get_default_application
    from daphne.endpoints import build_endpoint_description_strings
    from daphne.server import Server, twisted_loop
    from twisted.internet import defer
    from twisted.internet import reactor as installed_reactor
    from twisted.internet.base import ReactorBase

    # The stubs type the module-level reactor as its module; it is the installed reactor.
    reactor = cast(ReactorBase, installed_reactor)

    started: list[Service] = []

    async def start_all() -> None:
        for service in services:
            await service.start()
            started.append(service)

    async def stop_all() -> None:
        for service in reversed(started):
            try:
                await service.stop()
            except Exception:
                logger.exception("could not stop %s cleanly", type(service).__name__)

    def on_started(task: asyncio.Future) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.error("could not start: %s", task.exception())
            reactor.stop()

    if services:
        reactor.callWhenRunning(
            lambda: asyncio.ensure_future(start_all(), loop=twisted_loop).add_done_callback(
                on_started
            )
        )
        reactor.addSystemEventTrigger(
            "before",
            "shutdown",
            lambda: defer.Deferred.fromFuture(asyncio.ensure_future(stop_all(), loop=twisted_loop)),
        )

    def ready() -> None:
        stdout.write(f"Gooee dashboard at http://{host}:{port}/ (Ctrl-C to stop)\n")
        for note in notes:
            stdout.write(note + "\n")
        stdout.flush()

    # Behind the trusted proxy, the client's address comes from X-Forwarded-For: login
    # throttling per address would otherwise count every client as the proxy.
    proxied = settings.TRUSTED_PROXY_SSL_HEADER
    Server(
        application=get_default_application(),
        endpoints=build_endpoint_description_strings(host=host, port=port),
        signal_handlers=True,
        ready_callable=ready,
        verbosity=0,
        proxy_forwarded_address_header="X-Forwarded-For" if proxied else None,
        proxy_forwarded_port_header="X-Forwarded-Port" if proxied else None,
    ).run()
    _finish_tasks(twisted_loop)


def _finish_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """Let the consumers daphne cancelled at shutdown actually finish.

    The reactor stops before their cancellation runs; left suspended, their coroutines are
    destroyed during interpreter shutdown, which crashed CPython 3.11 (SIGSEGV while
    garbage-collecting a pending ``Queue.get``).
    """
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in pending:
        task.cancel()
    if pending and not loop.is_closed():
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
