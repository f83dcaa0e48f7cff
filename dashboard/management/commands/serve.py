"""``manage.py serve``: the dashboard on daphne, with the MQTT bridge in the same process."""

from __future__ import annotations

import asyncio
import logging
import os
import uuid

from django.core.management.base import BaseCommand, CommandError

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Serve the dashboard (HTTP and WebSockets) with the MQTT bridge, until Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--no-bridge", action="store_true", help="web side only")
        parser.add_argument("--buildings", nargs="+", metavar="ID", help="bridge only these")

    def handle(self, *args: object, **options: object) -> None:
        # Importing daphne.server installs Twisted's asyncio reactor; it must come first.
        from channels.routing import get_default_application
        from daphne.endpoints import build_endpoint_description_strings
        from daphne.server import Server, twisted_loop
        from twisted.internet import defer, reactor

        from dashboard.bridge.runner import BridgeService

        try:
            ids = [uuid.UUID(b) for b in options["buildings"]] if options["buildings"] else None
        except ValueError as exc:
            raise CommandError(f"--buildings: not a UUID ({exc})") from None
        host, port = options["host"], options["port"]

        if not options["no_bridge"]:
            service = BridgeService(ids)

            def start_bridge() -> None:
                task = asyncio.ensure_future(service.start(), loop=twisted_loop)
                task.add_done_callback(_exit_on_failure)

            def stop_bridge() -> defer.Deferred:
                return defer.Deferred.fromFuture(
                    asyncio.ensure_future(service.stop(), loop=twisted_loop)
                )

            reactor.callWhenRunning(start_bridge)
            reactor.addSystemEventTrigger("before", "shutdown", stop_bridge)

        def ready() -> None:
            self.stdout.write(f"Gooee dashboard at http://{host}:{port}/ (Ctrl-C to stop)")
            self.stdout.flush()

        Server(
            application=get_default_application(),
            endpoints=build_endpoint_description_strings(host=host, port=port),
            signal_handlers=True,
            ready_callable=ready,
            verbosity=0,
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


def _exit_on_failure(task: asyncio.Future) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("the bridge could not start: %s", task.exception())
        from twisted.internet import reactor

        reactor.stop()
