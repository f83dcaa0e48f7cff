"""Page clients in several processes, so the harness is not what is measured.

A thousand ``PageClient`` pages in the harness's own process take a core of their own to read
and acknowledge their frames, and on two cores that core is the server's. ``PageFleet``
spreads the pages over ``processes`` helper processes (``python -m bench.pagefleet``), each
an event loop of its own; they report what the measurement needs, never every value: frames
and bytes per page, the share of final values each page shows, and a histogram of freshness
(publish → shown, 0.1 ms bins) against the publisher's times file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from array import array
from collections import Counter
from pathlib import Path
from typing import Any

import psutil

from bench.freshness import GRACE_SECONDS
from bench.harness import Worker

BIN_MS = 0.1


class PageFleet:
    """``pages`` open pages of one building, spread over helper processes."""

    def __init__(self, workers: list[Worker]) -> None:
        self.workers = workers

    @classmethod
    async def open(
        cls, url: str, building_id: str, sessions: list[str], processes: int, directory: Path
    ) -> PageFleet:
        shares = [sessions[n::processes] for n in range(processes)]
        workers = []
        for n, part in enumerate(s for s in shares if s):
            path = directory / f"fleet-sessions-{n}.json"
            path.write_text(json.dumps(part))
            worker = await Worker.start(
                f"pages {n}", "bench.pagefleet", "--url", url, "--building", building_id,
                "--sessions", str(path), "--concurrency", str(max(5, 50 // processes)),
            )  # fmt: skip
            workers.append(worker)
        fleet = cls(workers)
        try:
            for worker in workers:
                await worker.expect("READY", timeout=300)
        except BaseException:
            await fleet.close()
            raise
        return fleet

    @property
    def pids(self) -> list[int]:
        return [w.pid for w in self.workers]

    def cpu_seconds(self) -> float:
        return sum(sum(psutil.Process(pid).cpu_times()[:2]) for pid in self.pids)

    async def _all(self, command: str, timeout: float = 120.0) -> list[Any]:
        return list(await asyncio.gather(*(w.ask(command, timeout) for w in self.workers)))

    async def record_from(self, seq: int) -> None:
        await self._all(f"RECORD {seq}")

    async def counts(self) -> tuple[int, int]:
        """Frames and wire bytes over every page so far."""
        answers = await self._all("COUNTS")
        return sum(a["frames"] for a in answers), sum(a["bytes"] for a in answers)

    async def shares(self, last_file: Path) -> list[float]:
        """Per page, percent of devices whose last published value it shows."""
        return [s for a in await self._all(f"SHARES {last_file}") for s in a]

    async def settle(self, last_file: Path, seconds: float) -> list[float]:
        """Until every page shows every final value, or ``seconds`` pass; the last shares."""
        deadline = time.monotonic() + seconds
        await asyncio.sleep(GRACE_SECONDS)  # before the pages' first read: see there
        while True:
            shares = await self.shares(last_file)
            if min(shares, default=100.0) == 100.0 or time.monotonic() > deadline:
                return shares
            await asyncio.sleep(0.25)

    async def freshness(self, times_file: Path, first: int) -> Counter[int]:
        """Freshness of every value the pages were shown: a histogram of BIN_MS bins."""
        merged: Counter[int] = Counter()
        for answer in await self._all(f"FRESHNESS {times_file} {first}", timeout=600):
            merged.update({int(k): v for k, v in answer.items()})
        return merged

    async def late(self, times_file: Path, first: int, over_ms: float) -> Counter[int]:
        """Values shown more than ``over_ms`` after publishing, by when in the stream they were
        published (tenths of a second from its first value): a stall shows as a cluster."""
        merged: Counter[int] = Counter()
        for answer in await self._all(f"LATE {times_file} {first} {over_ms}", timeout=600):
            merged.update({int(k): v for k, v in answer.items()})
        return merged

    async def reconnects(self) -> dict[str, int]:
        answers = await self._all("RECONNECTS")
        return {k: sum(a[k] for a in answers) for k in ("reconnects", "cut_off", "resyncs")}

    async def close(self) -> None:
        await asyncio.gather(*(w.close() for w in self.workers), return_exceptions=True)


def percentile_of(histogram: Counter[int], q: float) -> float | None:
    """The q-th percentile (nearest rank) of a BIN_MS histogram, in ms."""
    total = sum(histogram.values())
    if not total:
        return None
    rank, seen = max(1, -(-q * total // 100)), 0
    for key in sorted(histogram):
        seen += histogram[key]
        if seen >= rank:
            return key * BIN_MS
    return None


# ------------------------------------------------------------------------- the helper


async def serve(args: argparse.Namespace) -> None:
    from bench.clients import close_all, open_pages, stats_of

    sessions = json.loads(Path(args.sessions).read_text())
    # As many handshakes at once over all processes as one harness process makes.
    pages = await open_pages(args.url, args.building, sessions, args.concurrency)
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[str] = asyncio.Queue()
    loop.add_reader(sys.stdin.fileno(), lambda: commands.put_nowait(sys.stdin.readline().strip()))

    def reply(value: Any) -> None:
        print("= " + json.dumps(value), flush=True)

    print("READY", flush=True)
    while (command := await commands.get()) not in ("STOP", ""):
        name, _, rest = command.partition(" ")
        if name == "RECORD":
            for page in pages:
                page.record_from = int(rest)
            reply(True)
        elif name == "COUNTS":
            stats = await stats_of(pages)
            reply(
                {"frames": sum(s.frames for s in stats), "bytes": sum(s.wire_bytes for s in stats)}
            )
        elif name == "SHARES":
            from bench.freshness import final_share

            last = json.loads(Path(rest).read_text())
            reply([final_share(s.latest, last) for s in await stats_of(pages)])
        elif name == "FRESHNESS":
            path, first = rest.rsplit(" ", 1)
            times = array("d")
            times.frombytes(Path(path).read_bytes())
            start = int(first)
            histogram: Counter[int] = Counter()
            for stats in await stats_of(pages):
                for seq, at in zip(stats.seqs, stats.times, strict=True):
                    if 0 <= seq - start < len(times):
                        histogram[int((at - times[seq - start]) * 1000 / BIN_MS)] += 1
            reply(histogram)
        elif name == "LATE":
            path, first, over = rest.rsplit(" ", 2)
            times = array("d")
            times.frombytes(Path(path).read_bytes())
            start, over_s = int(first), float(over) / 1000
            late: Counter[int] = Counter()
            for stats in await stats_of(pages):
                for seq, at in zip(stats.seqs, stats.times, strict=True):
                    if 0 <= seq - start < len(times) and at - times[seq - start] > over_s:
                        late[int((times[seq - start] - times[0]) * 10)] += 1
            reply(late)
        elif name == "RECONNECTS":
            stats = await stats_of(pages)
            reply(
                {
                    "reconnects": sum(s.connects - 1 for s in stats),
                    "cut_off": sum(s.cut_off for s in stats),
                    "resyncs": sum(s.resyncs for s in stats),
                }
            )
    loop.remove_reader(sys.stdin.fileno())
    await close_all(pages)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pagefleet")
    parser.add_argument("--url", required=True)
    parser.add_argument("--building", required=True)
    parser.add_argument("--sessions", required=True)
    parser.add_argument("--concurrency", type=int, default=50)
    asyncio.run(serve(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
