"""Run daphne with companion services (the bridge, the demo's emulator) on its event loop."""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, cast

from django.conf import settings
from django.contrib.staticfiles import finders
from django.contrib.staticfiles.storage import ManifestFilesMixin, staticfiles_storage
from django.core.management import call_command
from django.core.management.base import CommandError

logger = logging.getLogger(__name__)

# A stop still going after this long reports what it waits for: the tasks not done, then
# every thread's stack (in case the loop itself is blocked). Service managers and the tests
# kill a process that takes 20-30 s; by then the report is in its output.
STOP_REPORT_SECONDS = 12.0


class Service(Protocol):
    async def start(self) -> object: ...

    async def stop(self) -> None: ...


class Output(Protocol):
    """Where the server says where it listens: a command's stdout, or sys.stdout."""

    def write(self, text: str, /) -> object: ...

    def flush(self) -> object: ...


def static_files_state() -> str | None:
    """``missing`` or ``stale`` when pages would fail on static files now, else None.

    With DEBUG off, pages link to the hashed names in collectstatic's manifest; a file that
    is not in STATIC_ROOT makes every page answer 500.
    """
    storage = staticfiles_storage
    if not isinstance(storage, ManifestFilesMixin):
        return None  # DEBUG: served from the sources as they are
    manifest = Path(storage.path(storage.manifest_name))
    if not manifest.exists():
        return "missing"
    collected = manifest.stat().st_mtime
    for finder in finders.get_finders():
        for path, source in finder.list(["CVS", ".*", "*~"]):
            if Path(source.path(path)).stat().st_mtime > collected:
                return "stale"
    return None


def not_collected_line() -> str:
    """The one line a server that cannot collect static files stops with."""
    return (
        f"static files are not collected in {settings.STATIC_ROOT}: "
        "run `python manage.py collectstatic --noinput` first"
    )


def collect_static_files(stdout: Output) -> None:
    """Collect static files when they were never collected, or the sources changed since."""
    state = static_files_state()
    if state is None:
        return
    stdout.write(f"Collecting static files into {settings.STATIC_ROOT} ({state} manifest)\n")
    stdout.flush()
    try:
        call_command("collectstatic", interactive=False, verbosity=0)
    except (OSError, ValueError) as exc:
        raise CommandError(
            f"could not collect static files: {exc}; {not_collected_line()}"
        ) from None


def run(
    stdout: Output,
    host: str,
    port: int,
    services: Sequence[Service] = (),
    notes: Sequence[str] = (),
) -> None:
    """Serve HTTP and WebSockets until Ctrl-C; start ``services`` in order, stop them reversed.

    Prints the URL (then ``notes``) once the port is open. A service that fails to start
    stops the server. Static files are collected first when they need to be.
    """
    collect_static_files(stdout)
    # Importing daphne.server installs Twisted's asyncio reactor; it must come first.
    from channels.routing import get_default_application
    from daphne.endpoints import build_endpoint_description_strings
    from daphne.server import twisted_loop
    from twisted.internet import defer
    from twisted.internet import reactor as installed_reactor
    from twisted.internet.base import ReactorBase

    from dashboard.live import gc_tuning
    from dashboard.wire_server import WireServer

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

    def stopping() -> None:
        twisted_loop.call_later(STOP_REPORT_SECONDS, report_stuck_tasks, twisted_loop)
        faulthandler.dump_traceback_later(STOP_REPORT_SECONDS + 1, file=sys.stderr)

    reactor.addSystemEventTrigger("before", "shutdown", stopping)
    # SIGUSR1 prints every thread's stack, from C: it answers even when the loop never runs
    # Python again (a stop whose "stopping" never began).
    faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)
    if services:
        reactor.callWhenRunning(
            lambda: twisted_loop.create_task(start_all(), name="start-services").add_done_callback(
                on_started
            )
        )
        reactor.addSystemEventTrigger(
            "before",
            "shutdown",
            lambda: defer.Deferred.fromFuture(
                twisted_loop.create_task(stop_all(), name="stop-services")
            ),
        )

    def announce() -> None:
        stdout.write(f"Gooee dashboard at http://{host}:{port}/ (Ctrl-C to stop)\n")
        for note in notes:
            stdout.write(note + "\n")
        stdout.flush()

    def ready() -> None:
        # daphne calls this just before it runs the reactor; announced once it runs, when
        # Ctrl-C already stops it cleanly (a person or script may press it right away).
        reactor.callWhenRunning(announce)
        gc_tuning.tune(ingest_only=False)

    # Behind the trusted proxy, the client's address comes from X-Forwarded-For: login
    # throttling per address would otherwise count every client as the proxy.
    proxied = settings.TRUSTED_PROXY_SSL_HEADER
    WireServer(
        application=get_default_application(),
        endpoints=build_endpoint_description_strings(host=host, port=port),
        signal_handlers=True,
        ready_callable=ready,
        verbosity=0,
        proxy_forwarded_address_header="X-Forwarded-For" if proxied else None,
        proxy_forwarded_port_header="X-Forwarded-Port" if proxied else None,
    ).run()
    _finish_tasks(twisted_loop)
    faulthandler.cancel_dump_traceback_later()


def _finish_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """Let the consumers daphne cancelled at shutdown actually finish.

    The reactor stops before their cancellation runs; left suspended, their coroutines are
    destroyed during interpreter shutdown, which crashed CPython 3.11 (SIGSEGV while
    garbage-collecting a pending ``Queue.get``).
    """
    from dashboard.live import layer

    pending = {task for task in asyncio.all_tasks(loop) if not task.done()}
    if not pending or loop.is_closed():
        return
    # Cancelled again while any is left (layer.cancel_until_done): the page hub's receive
    # was seen to lose its cancellation and never end.
    pending = loop.run_until_complete(layer.cancel_until_done(pending))
    if pending:
        logger.warning("%d tasks did not end at shutdown", len(pending))


def report_stuck_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """Log each task not done yet and where it waits: why a stop takes this long."""
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    if not pending:
        return
    logger.error(
        "still stopping after %.0f s; %d tasks not done:", STOP_REPORT_SECONDS, len(pending)
    )
    for task in pending:
        logger.error("  %s waits at %s", task.get_name(), " -> ".join(awaiting(task)) or "?")


def awaiting(task: asyncio.Task[Any]) -> list[str]:
    """``file:line in function`` of the task's coroutine and each coroutine it awaits."""
    where = []
    coro: Any = task.get_coro()
    while coro is not None and getattr(coro, "cr_frame", None) is not None:
        frame = coro.cr_frame
        where.append(
            f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno} in {frame.f_code.co_name}"
        )
        coro = coro.cr_await
    return where
