"""What every scenario shares: the machine, a private Mosquitto, the served dashboard with its
database, bench buildings with logged-in sessions, and helper processes.

The dashboard runs as deployed (``manage.py serve``, DEBUG off, its own SQLite file) through
``tests.served.ServedDashboard``; the broker is ``tests.brokers.MosquittoBroker`` with an
unbounded per-client queue, so a slow consumer shows up as lag, never as broker drops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from dashboard.contract.topics import subscription_topics
from dashboard.demo.inventory import building_inventory
from tests.brokers import MosquittoBroker
from tests.served import ServedDashboard

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SEQ_NAME = "bench_seq"  # a meta name the cloud's definitions do not know: shown raw

# Product defaults (gooee_site/settings.py), not the end-to-end tests' faster timings.
SERVE_SETTINGS = {
    "LIVE_COALESCE_MS": "250",
    "HISTORY_FLUSH_SECONDS": "2",
    "INVENTORY_POLL_SECONDS": "1",
    "HISTORY_HOLD": "true",  # BenchBroker keeps every unread message, as HISTORY_HOLD needs
}


class BenchBroker(MosquittoBroker):
    """Mosquitto with no cap on queued QoS 1 messages per client (the default drops past 1000)."""

    def _prepare(self) -> list[str]:
        argv = super()._prepare()
        text = self.config_file.read_text(encoding="utf-8")
        self.config_file.write_text("max_queued_messages 0\n" + text, encoding="utf-8")
        return argv


def machine_info() -> dict[str, Any]:
    """What the figures ran on; a figure means little without it."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mosquitto = ""
    with contextlib.suppress(Exception):
        out = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True, timeout=5)
        mosquitto = (out.stdout or out.stderr).splitlines()[0]
    commit = ""
    with contextlib.suppress(Exception):
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=5,
        ).stdout.strip()
    return {
        "cpu": model or platform.processor(),
        "logical_cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "mosquitto": mosquitto,
        "commit": commit,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def rss(pid: int) -> int:
    """Resident set size of a process, in bytes."""
    return psutil.Process(pid).memory_info().rss


def tree_cpu(process: psutil.Process) -> float:
    """CPU seconds of a process and of its children now alive (its history writer)."""
    total = sum(process.cpu_times()[:2])
    for child in process.children(recursive=True):
        with contextlib.suppress(psutil.Error):  # gone meanwhile
            total += sum(child.cpu_times()[:2])
    return total


async def quiet(pid: int, busy: float = 0.15, seconds: float = 0.5, timeout: float = 120) -> float:
    """Wait until the process and its children used under ``busy`` of a core over
    ``seconds`` (work left over from set-up, or the history writer's backlog from an earlier
    scenario, must not land in a measurement); the seconds waited."""
    process = psutil.Process(pid)
    loop = asyncio.get_running_loop()
    began = loop.time()
    while loop.time() - began < timeout:
        before = tree_cpu(process)
        await asyncio.sleep(seconds)
        if tree_cpu(process) - before < busy * seconds:
            break
    return loop.time() - began


@dataclass
class Building:
    """A bench building in the served database, with sessions of a viewer on it."""

    id: str
    devices: list[str]  # device ids (uuid strings), in inventory order
    sessions: list[str]
    inventory_file: Path
    topics: list[str] = field(default_factory=list)

    @property
    def device_hexes(self) -> list[str]:
        return [d.replace("-", "") for d in self.devices]


def write_inventory(directory: Path, devices: int, seed: int) -> tuple[Path, dict[str, Any]]:
    """The simulator's generated building (``building_inventory``) as an import file.

    The generator's ids come from its seed alone, so one seed at two sizes would be one
    building that grows (a 10,000-device one holding the 1,000-device one's devices), and
    the bridge would follow the change mid-measurement: each size gets its own seed.
    """
    data = building_inventory(
        devices, seed=seed * 1_000_003 + devices, name=f"Bench {devices} #{seed}"
    )
    path = directory / f"inventory-{devices}-{seed}.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path, data


def building_topics(data: dict[str, Any]) -> list[str]:
    """The exact topics the bridge subscribes to for the file's building."""
    b = data["buildings"][0]
    return subscription_topics(
        b["id"],
        [s["id"] for s in b["spaces"]],
        [a["id"] for a in b["areas"]],
        [d["id"] for d in b["devices"]],
    )


class VariantServed(ServedDashboard):
    """``serve`` through ``bench.serve_variant``: a prototype fix applied first."""

    def __init__(self, directory: Path, mqtt_url: str, variant: str, **settings: Any) -> None:
        super().__init__(directory, mqtt_url, **settings)
        self.variant = variant
        self.bench_directory = directory

    def start(self, command: str = "serve", *args: str, **kwargs: Any) -> ServedDashboard:
        import tests.served

        real = tests.served.ROOT
        # ServedDashboard runs ROOT / "manage.py"; point it at the launcher for this start.
        launcher = self.bench_directory / "variant"
        launcher.mkdir(exist_ok=True)
        (launcher / "manage.py").write_text(
            f"import runpy, sys\nsys.path.insert(0, {str(ROOT)!r})\n"
            f"sys.argv = ['bench.serve_variant', {self.variant!r}, *sys.argv[1:]]\n"
            "runpy.run_module('bench.serve_variant', run_name='__main__')\n",
            encoding="utf-8",
        )
        tests.served.ROOT = launcher
        try:
            return super().start(command, *args, **kwargs)
        finally:
            tests.served.ROOT = real


class Stack:
    """A private Mosquitto and ``manage.py serve`` with the bridge, against it."""

    def __init__(
        self,
        directory: Path,
        server_variant: str = "as-is",
        settings: dict[str, str] | None = None,
    ) -> None:
        self.directory = directory
        self.server_variant = server_variant
        self.settings = {**SERVE_SETTINGS, **(settings or {})}
        self.broker = BenchBroker()
        self.served: ServedDashboard | None = None
        self.buildings: dict[tuple[int, int], Building] = {}

    def start(self) -> Stack:
        self.broker.start()
        (self.directory / "served").mkdir(exist_ok=True)
        if self.server_variant == "as-is":
            served = ServedDashboard(self.directory / "served", self.broker.url, **self.settings)
        else:
            served = VariantServed(
                self.directory / "served", self.broker.url, self.server_variant, **self.settings
            )
        served.migrate()
        self.template_db = self.directory / "migrated.sqlite3"
        shutil.copy(self.directory / "served" / "db.sqlite3", self.template_db)
        served.start()
        self.served = served
        return self

    def stop(self) -> None:
        if self.served is not None:
            self.served.stop()
        self.broker.stop()

    @property
    def url(self) -> str:
        assert self.served is not None
        return self.served.url

    @property
    def server_pid(self) -> int:
        assert self.served is not None and self.served.process is not None
        return self.served.process.pid

    @property
    def urls(self) -> list[str]:
        """Where pages connect: every web process, in turn."""
        return [self.url]

    @property
    def server_pids(self) -> list[int]:
        """Every process of the dashboard (web and bridge), for CPU and quiet checks."""
        return [self.server_pid]

    async def until_quiet(self) -> None:
        """Every process of the dashboard quiet (``quiet``): in the scaled-out layout the
        bridge worker and the other web process too."""
        for pid in self.server_pids:
            await quiet(pid)

    def restart_server(self) -> None:
        """A fresh server process (same database), for measurements from a clean heap."""
        assert self.served is not None
        try:
            self.served.stop()
        finally:
            # A stop that failed (serve was killed) fails this scenario, not those after it.
            self.served.start(self.served.command, *self.served.args, ready=self.served.ready)

    def add_building(self, devices: int, seed: int, sessions: int) -> Building:
        """Import a generated building, give user ``bench`` a viewer role and ``sessions``
        logged-in sessions on it; reuses one made before (adding sessions if needed)."""
        assert self.served is not None
        known = self.buildings.get((devices, seed))
        if known is not None and len(known.sessions) >= sessions:
            return known
        path, data = write_inventory(self.directory, devices, seed)
        script = (
            "from bench.dbsetup import setup; "
            f"setup({str(path)!r}, {sessions - (len(known.sessions) if known else 0)})"
        )
        out = json.loads(self.served.manage("shell", "-c", script).strip().splitlines()[-1])
        if known is not None:
            known.sessions.extend(out["sessions"])
            return known
        building = Building(
            id=out["building"],
            devices=[d["id"] for d in data["buildings"][0]["devices"]],
            sessions=out["sessions"],
            inventory_file=path,
            topics=building_topics(data),
        )
        self.buildings[(devices, seed)] = building
        return building

    def db_path(self) -> Path:
        return self.directory / "served" / "db.sqlite3"


def workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="gooee-bench-"))


# ----------------------------------------------------------------------- helper processes


class Worker:
    """A helper process speaking lines: commands on stdin, JSON replies on stdout."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str) -> None:
        self.proc = proc
        self.name = name

    @classmethod
    async def start(cls, name: str, *args: str, env: dict[str, str] | None = None) -> Worker:
        proc = await asyncio.create_subprocess_exec(
            PYTHON,
            "-m",
            *args,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=64 * 2**20,
        )
        return cls(proc, name)

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def line(self, timeout: float = 60.0) -> str:
        """The next line the worker prints (a dead worker raises)."""
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not raw:
            code = await self.proc.wait()
            raise RuntimeError(f"{self.name} exited with {code}")
        return raw.decode().rstrip("\n")

    async def expect(self, prefix: str, timeout: float = 60.0) -> str:
        """Skip lines until one starts with ``prefix``; return the rest of it."""
        while True:
            text = await self.line(timeout)
            if text.startswith(prefix):
                return text[len(prefix) :].strip()

    async def ask(self, command: str, timeout: float = 120.0) -> Any:
        """Send a command; its JSON answer (a line starting with ``= ``)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        await self.proc.stdin.drain()
        return json.loads(await self.expect("=", timeout))

    async def close(self, timeout: float = 30.0) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
