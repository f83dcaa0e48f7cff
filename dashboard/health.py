"""For the operations team: liveness, readiness, Prometheus metrics, and request latency.

None of these views needs a login; none shows a secret. ``/readyz`` names buildings only
with ``READYZ_DETAIL=true``, and ``/metrics`` answers only the bearer of ``METRICS_TOKEN``.
What "ready" means for each kind of process is in docs/deploy.md ("Health and metrics").
"""

from __future__ import annotations

import asyncio
import hmac
import os
import time
import uuid
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.utils.deprecation import MiddlewareMixin
from django.views.decorators.cache import never_cache
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)

from dashboard.live import metrics, readiness
from dashboard.live.layer import new_channel
from dashboard.models import Building

CHECK_TIMEOUT = 2.0  # seconds each dependency has to answer
# A label per method a client may invent would grow the metrics without bound.
METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


@never_cache
def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness: the process answers HTTP. Touches nothing else, the database included."""
    return HttpResponse("ok", content_type="text/plain")


@never_cache
async def readyz(request: HttpRequest) -> JsonResponse:
    """200 when this process can serve live pages; else 503 saying what is wrong."""
    checks: dict[str, str] = {}
    problems: list[str] = []
    buildings: dict[uuid.UUID, str] | None = None
    try:
        buildings = await asyncio.wait_for(sync_to_async(_buildings)(), CHECK_TIMEOUT)
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unavailable ({type(exc).__name__})"
    try:
        await asyncio.wait_for(_channel_layer_round_trip(), CHECK_TIMEOUT)
        checks["channel_layer"] = "ok"
    except Exception as exc:
        checks["channel_layer"] = f"unavailable ({type(exc).__name__})"
    down: dict[uuid.UUID, str] = {}  # building -> what is wrong with its session
    local = readiness.local_bridge()
    if local is not None:
        if not local.synced:
            problems.append("bridge: starting")
        down.update({b: s.state for b, s in local.sessions.items() if s.state != "connected"})
        checks["sessions"] = _share(len(down), len(local.sessions), "not connected")
    if settings.REDIS_URL and buildings is not None:
        elsewhere = [b for b in buildings if local is None or b not in local.sessions]
        try:
            held = await asyncio.wait_for(
                sync_to_async(readiness.fresh_lease_holders, thread_sensitive=False)(
                    settings.REDIS_URL, elsewhere, settings.BRIDGE_LEASE_SECONDS, CHECK_TIMEOUT
                ),
                CHECK_TIMEOUT * 2,
            )
        except Exception as exc:
            checks["leases"] = f"unavailable ({type(exc).__name__})"
        else:
            unheld = [b for b in elsewhere if b not in held]
            down.update(dict.fromkeys(unheld, "no bridge worker with a fresh heartbeat holds it"))
            checks["leases"] = _share(len(unheld), len(elsewhere), "without a live holder")
    elif local is None:
        problems.append("bridge: none runs in this process, and without REDIS_URL none can")
    problems[:0] = [f"{name}: {state}" for name, state in checks.items() if state != "ok"]
    ready = not problems
    body: dict[str, Any] = {"status": "ready" if ready else "unavailable", "checks": checks}
    if problems:
        body["problems"] = problems
    if settings.READYZ_DETAIL and down:
        names = buildings or {}
        body["buildings"] = [
            {"id": str(b), "name": names.get(b, ""), "session": state} for b, state in down.items()
        ]
    return JsonResponse(body, status=200 if ready else 503)


def _share(bad: int, total: int, what: str) -> str:
    return "ok" if bad == 0 else f"{bad} of {total} buildings {what}"


def _buildings() -> dict[uuid.UUID, str]:
    return dict(Building.objects.values_list("id", "name"))


async def _channel_layer_round_trip() -> None:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")
    # Under the default prefix (layer.new_channel): a "readyz." channel of its own waited
    # behind the pages' blocking read (5 s), and every check timed out while a page was open
    # on a quiet building.
    channel = await new_channel()
    await layer.send(channel, {"type": "readyz.ping"})
    await layer.receive(channel)


@never_cache
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus text format, for the bearer of ``METRICS_TOKEN`` only."""
    token = settings.METRICS_TOKEN
    if token is None:
        return HttpResponse("Not found", status=404, content_type="text/plain")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        response = HttpResponse("Bearer token required", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        return HttpResponse("Wrong token", status=403, content_type="text/plain")
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Every process's values, from their files; this process's registry would hold only its own.
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


class RequestMetricsMiddleware(MiddlewareMixin):
    """Observes each HTTP request's latency, labelled by URL name (bounded), method and status."""

    def process_request(self, request: HttpRequest) -> None:
        request._metrics_started = time.perf_counter()  # type: ignore[attr-defined]

    def process_response(
        self, request: HttpRequest, response: HttpResponseBase
    ) -> HttpResponseBase:
        started = getattr(request, "_metrics_started", None)
        if started is not None:
            match = request.resolver_match
            view = match.view_name if match is not None else "unmatched"
            method = request.method if request.method in METHODS else "other"
            metrics.HTTP_SECONDS.labels(view, method, str(response.status_code)).observe(
                time.perf_counter() - started
            )
        return response
