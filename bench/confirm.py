"""Scenario 7, confirm: from the last lamp's report to "confirmed" on an open page.

An operator dims a space of a generated building through the action form (HTTP, a session
and CSRF token as a browser has them); once the form has answered (the broker acknowledged
the action), every lamp of the space reports the level on its meta topic (one connection,
QoS 1); the figure is the time from that publish to an open page receiving the attempt's
card saying "confirmed: N of N lamps". Baseline, on the same page in the same trial: a plain
value's freshness, publish → the page showing it, through the same ingest and coalesced
fan-out; the ratio is what following the lamps adds.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import secrets
import string
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from bench.clients import PageClient, close_all, open_pages
from bench.figures import Figure, figure, percentile
from bench.freshness import SEQUENCER, until_bridged
from bench.harness import SEQ_NAME, Building, Stack
from bench.mqttwire import publish_all
from dashboard.demo.inventory import is_sensor
from dashboard.demo.simulator import meta_item, timestamp

SEED = 7000
DEVICES = 40
SPACE = "Open Office"  # the generator's largest space: 15 lamps in a 40-device building
WAIT_SECONDS = 30.0
ATTEMPT = re.compile(r'id="attempt-(\d+)"')
CONFIRMED = 'class="confirmation-text">confirmed: '  # not "partly" nor "not confirmed"
PENDING = re.compile(r"Confirmed \d+ of (\d+) lamps?")


@dataclass
class Confirm:
    lamps: int
    trials: int
    latencies_ms: list[float] = field(default_factory=list)
    bare_latencies_ms: list[float] = field(default_factory=list)
    missed: int = 0  # trials whose page never said "confirmed" within WAIT_SECONDS

    def summary(self) -> dict[str, Any]:
        data: dict[str, Any] = {"lamps": self.lamps, "trials": self.trials, "missed": self.missed}
        for name in ("latencies_ms", "bare_latencies_ms"):
            values = getattr(self, name)
            data[name] = {f"p{q}": percentile(values, q) for q in (50, 99, 100)}
        return data


def operator_session(stack: Stack, building_id: str) -> str:
    """One logged-in session of an operator of the building (``bench.dbsetup``)."""
    assert stack.served is not None
    script = f"from bench.dbsetup import operator_session; operator_session({building_id!r})"
    return json.loads(stack.served.manage("shell", "-c", script).strip().splitlines()[-1])


def post_action(port: int, building_id: str, space_id: str, session: str, level: int) -> str:
    """Dim the space to ``level`` through the action form; the answer's HTML."""
    prefix = f"space-{space_id}"
    token = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(32))
    body = urllib.parse.urlencode(
        {
            "csrfmiddlewaretoken": token,
            f"{prefix}-target": f"space:{space_id}",
            f"{prefix}-idempotency_key": secrets.token_urlsafe(16),
            f"{prefix}-action": "dim",
            f"{prefix}-level": level,
            f"{prefix}-transition_time": 0,
        }
    )
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(
            "POST",
            f"/buildings/{building_id}/actions/",
            body,
            {
                "Cookie": f"sessionid={session}; csrftoken={token}",
                "Content-Type": "application/x-www-form-urlencoded",
            },
        )
        response = conn.getresponse()
        html = response.read().decode()
    finally:
        conn.close()
    if response.status != 200:
        raise RuntimeError(f"the action form answered {response.status}: {html[:300]}")
    return html


async def measure(stack: Stack, trials: int) -> Confirm:
    building: Building = stack.add_building(DEVICES, SEED, 1)
    data = json.loads(building.inventory_file.read_text())["buildings"][0]
    space = next(s for s in data["spaces"] if s["name"] == SPACE)
    lamps = [
        d["id"] for d in data["devices"] if d["space"] == space["id"] and not is_sensor(d["name"])
    ]
    other = next(d for d in data["devices"] if d["space"] != space["id"])["id"]
    session = await asyncio.to_thread(operator_session, stack, building.id)
    port = urllib.parse.urlsplit(stack.url).port or 80
    pages: list[PageClient] = []
    seen: dict[int, float] = {}  # attempt id -> when the page read "confirmed"

    def on_frame(html: str, received: float) -> None:
        for match in ATTEMPT.finditer(html):
            attempt = int(match.group(1))
            card = html[match.start() : html.find("</li>", match.start())]
            if CONFIRMED in card and attempt not in seen:
                seen[attempt] = received

    def report(level: int) -> list[tuple[str, bytes]]:
        body = json.dumps([meta_item("dim", level, timestamp())]).encode()
        return [(f"devices/{lamp}/meta", body) for lamp in lamps]

    result = Confirm(len(lamps), trials)
    try:
        pages = await open_pages(stack.urls, building.id, building.sessions[:1])
        page = pages[0]
        page.on_frame = on_frame
        await until_bridged(stack, building, page)
        # The lamps report once, so the dashboard knows them as lamps (stored meta).
        await asyncio.to_thread(publish_all, stack.broker.port, report(100))
        for trial in range(trials):
            level = 20 + trial % 60
            await stack.until_quiet()
            html = await _post_until_followed(port, building.id, space["id"], session, level)
            attempt = int(ATTEMPT.search(html).group(1))  # type: ignore[union-attr]
            sent = time.monotonic()
            await asyncio.to_thread(publish_all, stack.broker.port, report(level))
            bare = SEQUENCER.take(building.id, 1)
            page.record_from = bare
            bare_sent = time.monotonic()
            body = json.dumps([{"name": SEQ_NAME, "value": bare}]).encode()
            await asyncio.to_thread(
                publish_all, stack.broker.port, [(f"devices/{other}/meta", body)]
            )
            deadline = time.monotonic() + WAIT_SECONDS
            hexid = other.replace("-", "")
            while attempt not in seen or page.stats.latest.get(hexid, -1) < bare:
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.01)
            if attempt in seen:
                result.latencies_ms.append((seen[attempt] - sent) * 1000)
            else:
                result.missed += 1
            stats = page.stats
            shown = [t for s, t in zip(stats.seqs, stats.times, strict=True) if s == bare]
            if shown:
                result.bare_latencies_ms.append((shown[0] - bare_sent) * 1000)
            await asyncio.sleep(2.1)  # under the operator's rate limit (30 a minute)
    finally:
        await close_all(pages)
    return result


async def _post_until_followed(
    port: int, building_id: str, space_id: str, session: str, level: int
) -> str:
    """Post the action; again while the dashboard does not yet know the space's lamps (their
    first reports are stored with the next history write)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        html = await asyncio.to_thread(post_action, port, building_id, space_id, session, level)
        if PENDING.search(html) or time.monotonic() > deadline:
            return html
        await asyncio.sleep(2.1)


def figures(result: Confirm) -> list[Figure]:
    figures = []
    for q in (50, 99):
        value = percentile(result.latencies_ms, q)
        bare = percentile(result.bare_latencies_ms, q)
        figures.append(figure(f"confirm.latency_p{q}", value, "ms", bare))
    return figures
