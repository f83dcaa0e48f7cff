"""The garbage collector's settings for the long-running processes.

Under an ingest flood the bridge keeps every value it has not yet written to history, a few
hundred thousand small objects. With CPython's default thresholds the collector went
through all of them about once a second: 6.4 s of the bridge's 26 s of CPU (24 %), in
pauses of about 200 ms each (docs/benchmarks.md, "Garbage collection"). Nearly nothing
here makes reference cycles, so the oldest generation is collected far less often; the
objects that exist once startup is done are moved out of the collector's sight for good.
"""

from __future__ import annotations

import gc
import logging

logger = logging.getLogger(__name__)

# CPython's defaults are (700, 10, 10). A larger first threshold made each young
# collection slower per object (10,000: 2.5 times the time for the same objects), so only
# the older generations are collected less often.
THRESHOLDS = (1000, 20, 100)


def tune() -> None:
    """Freeze what startup made and collect the older generations less often.

    Called once a process has loaded what it keeps for its whole life (settings, apps,
    templates, schemas), just before it starts its work.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
    logger.debug("gc: %s objects frozen, thresholds %s", gc.get_freeze_count(), THRESHOLDS)
