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
"""

from __future__ import annotations

import gc
import logging

logger = logging.getLogger(__name__)

# CPython's defaults are (700, 10, 10). A larger first threshold made each young
# collection slower per object (10,000: 2.5 times the time for the same objects), so only
# the older generations are collected less often.
INGEST_THRESHOLDS = (1000, 20, 100)


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
    logger.debug("gc: %s objects frozen, thresholds %s", gc.get_freeze_count(), gc.get_threshold())
