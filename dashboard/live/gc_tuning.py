"""The garbage collector's settings for the long-running processes.

Under an ingest flood the bridge keeps every value it has not yet written to history, a few
hundred thousand small objects. With CPython's default thresholds the collector went
through all of them about once a second: 6.4 s of the bridge's 26 s of CPU (24 %), in
pauses of about 200 ms each (docs/benchmarks.md, "Garbage collection"). Ingest makes
hardly any reference cycles, so there the oldest generation is collected far less often.

Pages do leave cycles behind when they close: with the same settings a web process held
131 MB more after ten rounds of 1,000 pages closing and opening again. A web process
keeps CPython's thresholds. Every process moves what exists once startup is done out of
the collector's sight for good.

A web process's oldest generation is then mostly its open pages (about 180 objects each):
at 1,000 pages each full collection took 90-160 ms every 7-10 s, and the values waiting
meanwhile were the late ones of every page (docs/benchmarks.md, "2026-12-04, late"). So a
web process also freezes what survives each full collection: the next one looks only at
what came since. Freezing hides garbage cycles among what it froze, so a page that closes
and, in any case, ``UNFREEZE_EVERY`` seconds bring everything back into sight: the next
full collection frees those cycles, and what survives it is frozen again. Nothing is
frozen just after a page closed, while its objects are still dying.
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

logger = logging.getLogger(__name__)

# CPython's defaults are (700, 10, 10). A larger first threshold made each young
# collection slower per object (10,000: 2.5 times the time for the same objects), so only
# the older generations are collected less often.
INGEST_THRESHOLDS = (1000, 20, 100)


# How long what survived full collections stays frozen at most while no page closes: the
# cycles of what died frozen meanwhile wait this long to be freed.
UNFREEZE_EVERY = 600.0
# Nothing is frozen this long after a page closed: its objects take a moment to die, and
# frozen they would wait for the next close, while the next pages take new memory (12-16 MB
# more at 1,000 pages, once, when each pass froze).
QUIET_AFTER_CLOSE = 5.0


class _Refreeze:
    """Freezes what survives each full collection; ``thaw`` lets the next one see it all."""

    def __init__(self) -> None:
        self.thaw_at = time.monotonic() + UNFREEZE_EVERY
        self.installed = False
        self.closed_at = -QUIET_AFTER_CLOSE

    def install(self) -> None:
        if not self.installed:
            self.installed = True
            self.thaw_at = time.monotonic() + UNFREEZE_EVERY
            gc.callbacks.append(self.after)

    def after(self, phase: str, info: dict[str, Any]) -> None:
        if phase != "stop" or info["generation"] != 2:
            return
        now = time.monotonic()
        if now >= self.thaw_at:
            self.thaw()  # this collection saw only what came since the last one: see it all
        elif now - (closed_at := self.closed_at) >= QUIET_AFTER_CLOSE:
            gc.freeze()  # a list splice, however many objects
            if self.closed_at != closed_at:
                gc.unfreeze()  # a page closed meanwhile, on another thread's collection

    def thaw(self) -> None:
        if self.installed:
            gc.unfreeze()  # also a splice; the next full collection pays for the look
            self.thaw_at = time.monotonic() + UNFREEZE_EVERY


_refreeze = _Refreeze()


def page_closed() -> None:
    """A page closed in this process: the next full collection sees all, and frees its cycles."""
    if _refreeze.installed:
        _refreeze.closed_at = time.monotonic()
        _refreeze.thaw()


def tune(*, ingest_only: bool) -> None:
    """Freeze what startup made; in a process that only ingests, collect less often.

    Called once a process has loaded what it keeps for its whole life (settings, apps,
    templates, schemas), just before it starts its work. ``ingest_only``: the process serves
    no page (``run_bridge``, the history writer).
    """
    gc.collect()
    gc.freeze()
    if ingest_only:
        gc.set_threshold(*INGEST_THRESHOLDS)
    else:
        _refreeze.install()
    logger.debug("gc: %s objects frozen, thresholds %s", gc.get_freeze_count(), gc.get_threshold())
