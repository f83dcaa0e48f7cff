"""What crosses Redis per frame, by number of open pages: two web processes on Redis.

Two ``serve --no-bridge`` processes on one Redis database (flushed before and after) and one
SQLite file; pages of a viewer take turns between them; frames are sent to the building's
group as the bridge's fan-out sends them (``layer.broadcast``), from this process. Redis
``INFO commandstats`` and ``INFO stats`` are read before and after the frames, with the pages
open and idle otherwise.

    .venv/bin/python -m bench.hub_redis --pages 100 1000 --frames 40 --out PATH

Prints one JSON line per page count, then the figures (part of ``make bench-scaled``): Redis
commands and bytes per frame at the largest page count against the smallest's, measured in
the same run (issue #20: at most 1.2 times), and the share of frames delivered.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.figures import Figure, Target, figure, table, write_results
from bench.harness import machine_info

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
FRAME = "<p>" + "x" * 600 + " {seq}</p>"  # about a busy window of one building, uncompressed
SESSIONS = (
    "import json; from django.contrib.auth import get_user_model, BACKEND_SESSION_KEY, "
    "HASH_SESSION_KEY, SESSION_KEY; from django.contrib.sessions.backends.db import SessionStore\n"
    "user = get_user_model().objects.get(username='victor'); session = SessionStore()\n"
    "session[SESSION_KEY] = str(user.pk)\n"
    "session[BACKEND_SESSION_KEY] = 'django.contrib.auth.backends.ModelBackend'\n"
    "session[HASH_SESSION_KEY] = user.get_session_auth_hash(); session.create()\n"
    "print(json.dumps(session.session_key))"
)


def redis_counts(store: Any) -> dict[str, int]:
    """Calls per command, and the bytes Redis read and wrote, so far."""
    counts = {
        name.removeprefix("cmdstat_"): stats["calls"]
        for name, stats in store.info("commandstats").items()
    }
    stats = store.info("stats")
    counts["net_input_bytes"] = stats["total_net_input_bytes"]
    counts["net_output_bytes"] = stats["total_net_output_bytes"]
    return counts


async def open_page(url: str, building: str, session: str, received: list[int]) -> Any:
    import websockets

    ws = await websockets.connect(
        url.replace("http://", "ws://") + f"/ws/buildings/{building}/",
        origin=url,
        additional_headers={"Cookie": f"sessionid={session}"},
        ping_interval=None,
        open_timeout=120,
    )

    async def read() -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for _ in ws:
                received[0] += 1
                await ws.send("ack")

    ws.reader = asyncio.create_task(read())
    return ws


async def measure(webs: list[Any], building: str, session: str, pages: int, frames: int) -> dict:
    import redis

    from dashboard.live import layer

    store = redis.Redis.from_url(REDIS_URL)
    received = [0]
    sockets = []
    for n in range(0, pages, 50):  # 50 at a time, as the benchmark's clients open
        sockets += await asyncio.gather(
            *(
                open_page(webs[i % len(webs)].url, building, session, received)
                for i in range(n, min(pages, n + 50))
            )
        )
    # Every page is followed once its hub joined: warm up until every page got a frame. The
    # same stream throughout, so no page sees a gap and asks for a snapshot.
    seq = 0
    while seq < 400:
        seq += 1
        await layer.broadcast(building, "<p>warm</p>", stream="m", seq=seq)
        await asyncio.sleep(0.25)
        if received[0] >= pages and seq > 5:
            break
    await asyncio.sleep(1)
    members = store.zcard(f"asgi:group:{layer.group_name(building)}")
    received[0] = 0
    before = redis_counts(store)
    began = time.monotonic()
    for n in range(seq + 1, seq + frames + 1):
        await layer.broadcast(building, FRAME.format(seq=n), stream="m", seq=n)
        await asyncio.sleep(0.25)  # the product's coalescing window
    deadline = time.monotonic() + 30
    while received[0] < pages * frames and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    seconds = time.monotonic() - began
    after = redis_counts(store)
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    delta = {k: v for k, v in delta.items() if v}
    # INFO itself is counted; the idle pages' blocking reads (BZPOPMIN) too.
    commands = sum(v for k, v in delta.items() if not k.startswith("net_"))
    closed = sum(ws.close_code is not None for ws in sockets)
    codes: dict[str, int] = {}
    for ws in sockets:
        codes[str(ws.close_code)] = codes.get(str(ws.close_code), 0) + 1
    if closed:
        print("close codes", codes, flush=True)
    for ws in sockets:
        await ws.close()
        ws.reader.cancel()
    return {
        "pages": pages,
        "web_processes": len(webs),
        "frames": frames,
        "frame_bytes": len(FRAME.format(seq=1)),
        "group_members": members,
        "delivered": received[0],
        "pages_closed": closed,
        "expected": pages * frames,
        "seconds": round(seconds, 1),
        "redis_commands_per_frame": round(commands / frames, 1),
        "redis_input_bytes_per_frame": round(delta.get("net_input_bytes", 0) / frames),
        "redis_output_bytes_per_frame": round(delta.get("net_output_bytes", 0) / frames),
        "by_command": {k: v for k, v in sorted(delta.items()) if not k.startswith("net_")},
    }


PER_FRAME = (
    ("redis_commands_per_frame", "commands"),
    ("redis_input_bytes_per_frame", "B"),
    ("redis_output_bytes_per_frame", "B"),
)


def figures(results: list[dict[str, Any]]) -> list[Figure]:
    """Per frame at the most pages against the fewest (issue #20: <= 1.2), and delivery."""
    small, large = min(results, key=lambda r: r["pages"]), max(results, key=lambda r: r["pages"])
    out = [
        figure(
            f"scaled.{key.removeprefix('redis_')}@{large['pages']}pages",
            large[key],
            unit,
            small[key],
            Target("ratio", "<=", 1.2),
        )
        for key, unit in PER_FRAME
    ]
    for result in results:
        # Baseline: the frames every page should have got.
        out.append(
            figure(
                f"scaled.delivered@{result['pages']}pages",
                result["delivered"],
                "frames",
                result["expected"],
                Target("ratio", ">=", 1.0),
            )
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--out", type=Path, help="results file, as bench.run writes them")
    args = parser.parse_args()
    machine = machine_info()
    started = time.monotonic()
    results: list[dict[str, Any]] = []

    import redis

    from tests.served import ServedDashboard

    directory = Path(tempfile.mkdtemp(prefix="hub-redis-"))
    settings = {
        "DATABASE_URL": f"sqlite:///{directory / 'db.sqlite3'}",
        "REDIS_URL": REDIS_URL,
        "LOG_LEVEL": "WARNING",
    }
    store = redis.Redis.from_url(REDIS_URL)
    store.flushdb()
    (directory / "a").mkdir()
    (directory / "b").mkdir()
    webs = [ServedDashboard(directory / name, "mqtt://127.0.0.1:9", **settings) for name in "ab"]
    hq = webs[0].prepare()
    webs[1].manage("collectstatic", "--noinput", "-v0")
    session = json.loads(webs[0].manage("shell", "-c", SESSIONS).strip().splitlines()[-1])
    os.environ.update(
        {**settings, "SECRET_KEY": "bench", "DJANGO_SETTINGS_MODULE": "gooee_site.settings"}
    )
    import django

    django.setup()
    try:
        for web in webs:
            web.start("serve", "--no-bridge", timeout=60)
        for pages in args.pages:
            result = asyncio.run(measure(webs, hq["building"], session, pages, args.frames))
            print(json.dumps(result), flush=True)
            results.append(result)
    finally:
        for web in webs:
            if web.process is not None and web.process.poll() is None:
                web.stop()
            if os.environ.get("BENCH_SHOW_OUTPUT"):
                print("".join(web.output)[-3000:])
        store.flushdb()
    found = figures(results) if len(results) > 1 else []
    print(table(found))
    if args.out:
        machine["run_seconds"] = round(time.monotonic() - started, 1)
        write_results(args.out, machine, found, {"runs": results})
        print(f"\nwrote {args.out}")
    return 0 if all(f.passed is not False for f in found) else 1


if __name__ == "__main__":
    sys.exit(main())
