"""Every Prometheus metric of the dashboard, in one place both the bridge and the web side import.

With ``PROMETHEUS_MULTIPROC_DIR`` set (before this module is first imported), prometheus_client
keeps each process's values in memory-mapped files in that directory, and ``/metrics`` adds up
every process's files: web processes, bridge workers and history writer processes alike
(docs/deploy.md). Without it, each process counts alone and ``/metrics`` shows its own.

Per-message paths keep a label's child (``messages_for``) rather than resolving labels again.
"""

from __future__ import annotations

import atexit
import os
import uuid

from prometheus_client import Counter, Gauge, Histogram

# What ingest decides for one message (dashboard/bridge/ingest.py).
OUTCOMES = ("accepted", "malformed", "duplicate", "unknown", "rejected")

MQTT_MESSAGES = Counter(
    "gooee_mqtt_messages",
    "MQTT messages received, by building and by what ingest made of them.",
    ["building", "outcome"],
)
MQTT_SESSION_CONNECTED = Gauge(
    "gooee_mqtt_session_connected",
    "1 while the building's broker session is connected, 0 otherwise (the highest of the "
    "live processes: only the lease holder runs a session).",
    ["building"],
    multiprocess_mode="livemax",
)
MQTT_RECONNECTS = Counter(
    "gooee_mqtt_reconnects",
    "Broker sessions connected again after having been connected.",
    ["building"],
)
FANOUT_FLUSH_SECONDS = Histogram(
    "gooee_fanout_flush_seconds",
    "Time to render what is left of a window's tiles and hand them to the channel layer.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
PAGE_FRAMES = Counter("gooee_page_frames", "Frames sent to pages over WebSockets.")
# Text frames are counted in characters: encoding each frame for each page only to measure it
# would cost more than the count is worth, and the HTML is nearly all ASCII.
PAGE_BYTES = Counter(
    "gooee_page_bytes",
    "Size of the frames sent to pages: bytes of binary frames, characters of text frames.",
)


def count_page_frames(frames: int, size: int) -> None:
    """``frames`` page-frames of ``size`` each written (the hub counts a frame's pages at once)."""
    PAGE_FRAMES.inc(frames)
    PAGE_BYTES.inc(frames * size)


PAGES_CONNECTED = Gauge(
    "gooee_pages_connected",
    "Pages connected over WebSockets and following at least one building.",
    multiprocess_mode="livesum",
)
PAGES_CUT_OFF = Counter(
    "gooee_pages_cut_off", "Pages closed for falling too many frames behind (slow readers)."
)
HISTORY_PENDING = Gauge(
    "gooee_history_queue_depth",
    "History records queued in the bridge and not written yet (sampled at each flush).",
    multiprocess_mode="livesum",
)
HISTORY_DROPPED = Counter(
    "gooee_history_dropped_records",
    "History records dropped because the queue was full or the database unavailable at stop.",
)
HISTORY_HOLDS = Counter(
    "gooee_history_holds",
    "Times the bridge stopped reading from the broker until the history writer caught up.",
)
ACTIONS = Counter(
    "gooee_actions",
    "Operators' actions by audit outcome: refused, acknowledged, failed, seen.",
    ["outcome"],
)
HTTP_SECONDS = Histogram(
    "gooee_http_request_duration_seconds",
    "HTTP request latency by URL name, method and status code.",
    ["view", "method", "status"],
)


def messages_for(building_id: uuid.UUID) -> dict[str, Counter]:
    """The building's message counters, one per outcome, resolved once."""
    building = str(building_id)
    return {outcome: MQTT_MESSAGES.labels(building, outcome) for outcome in OUTCOMES}


def _forget_live_gauges() -> None:
    # A process that stops cleanly takes its pages and queue out of the "live" sums.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(os.getpid())


if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    atexit.register(_forget_live_gauges)
