"""The dashboard as deployed, for end-to-end tests: ``manage.py serve`` in its own process,
DEBUG off, its own SQLite file, against a test broker; and the system Chromium to look at it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tests.brokers import free_port

ROOT = Path(__file__).resolve().parent.parent

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # This machine's network is closed; without these Chromium keeps trying Google's hosts.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def find_chromium() -> str | None:
    """The system Chromium (Debian's package ``chromium``), or CHROMIUM_PATH."""
    for candidate in (os.environ.get("CHROMIUM_PATH"), "chromium", "chromium-browser"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    return None


class ServedDashboard:
    """One ``serve`` process with its database; start, stop (Ctrl-C) and restart it."""

    def __init__(self, directory: Path, mqtt_url: str, **settings: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "SECRET_KEY": "insecure-key-for-end-to-end-tests",
            "DEBUG": "false",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": f"sqlite:///{directory / 'db.sqlite3'}",
            "STATIC_ROOT": str(directory / "static"),
            "MQTT_URL": mqtt_url,
            "LOG_LEVEL": "WARNING",
            "PYTHONFAULTHANDLER": "1",  # a crash prints every thread's stack
            "LIVE_COALESCE_MS": "100",
            "HISTORY_FLUSH_SECONDS": "0.2",
            "HISTORY_WRITER": "process",
            "INVENTORY_POLL_SECONDS": "1",
            **{key: str(value) for key, value in settings.items()},
        }
        self.process: subprocess.Popen[str] | None = None
        self.output: list[str] = []

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {args[0]} failed:\n{result.stderr}")
        return result.stdout

    def migrate(self) -> None:
        self.manage("migrate", "-v0")
        self.manage("collectstatic", "--noinput", "-v0")

    def prepare(self) -> dict[str, str]:
        """Migrate, collect static files, and add Headquarters with its people; return its ids."""
        self.migrate()
        script = (
            "import json; from tests.factories import make_building, make_people; "
            "hq = make_building(); make_people(hq['building']); "
            "print(json.dumps({str(k): str(v) for k, v in hq.items()}))"
        )
        return json.loads(self.manage("shell", "-c", script).strip().splitlines()[-1])

    @contextlib.contextmanager
    def serving(self, *setup: str) -> Iterator[dict[str, str]]:
        """Prepared (Headquarters and its people), each ``setup`` run in ``manage.py shell``,
        then served until the block ends; stopped with Ctrl-C, which must exit cleanly."""
        hq = self.prepare()
        for code in setup:
            self.manage("shell", "-c", code)
        self.start()
        try:
            yield hq
        finally:
            exit_code = self.stop()
        assert exit_code == 0, f"serve exited with {exit_code}"

    def start(
        self,
        command: str = "serve",
        *args: str,
        ready: str = "Gooee dashboard at",
        timeout: float = 30.0,
    ) -> ServedDashboard:
        """Run ``manage.py <command> [args] --port P`` until it prints ``ready``."""
        self.command, self.args, self.ready = command, args, ready
        argv = [command, *args]
        if command in ("serve", "demo"):
            argv += ["--port", str(self.port)]
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), *argv],
            env=self.env,
            # Ctrl-C reaches it as it reaches a server started at a prompt: a shell's
            # background job (a script's `make bench &`, say) passes SIGINT on ignored, and
            # the server, as it should, then leaves it ignored; stop() would wait in vain.
            preexec_fn=interruptible,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        ready = threading.Event()

        def drain(stream: Any) -> None:
            for line in stream:
                self.output.append(line)
                if line.startswith(self.ready):
                    ready.set()

        self.output = []
        threading.Thread(target=drain, args=(self.process.stdout,), daemon=True).start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.1):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("serve did not start:\n" + "".join(self.output))
        return self

    def stop(self, timeout: float = 20.0) -> int:
        """Ctrl-C, as a person stops it; returns the exit code."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(timeout)
            if code != 0:
                print("serve exited with", code, "\n", "".join(self.output[-200:]))
            return code
        except subprocess.TimeoutExpired:
            # Which signals it catches and has pending, every thread's stack (serving.py
            # registers SIGUSR1), then the kill.
            self.output.append(signal_state(self.process.pid))
            self.process.send_signal(signal.SIGUSR1)
            time.sleep(1.0)
            self.process.kill()
            self.process.wait()
            # What serve reported about the stop it was still waiting on (serving.py).
            raise RuntimeError(
                f"serve did not stop within {timeout:.0f} s; killed. It said:\n"
                + "".join(self.output[-120:])
            ) from None

    def restart(self) -> ServedDashboard:
        self.stop()
        return self.start(self.command, *self.args, ready=self.ready)

    def wait_for_output(self, pattern: str, timeout: float = 15.0) -> re.Match[str]:
        """The first match of ``pattern`` in what the process printed so far or soon."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, "".join(self.output), re.M)
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} never printed:\n{''.join(self.output)}")
            time.sleep(0.1)


def until_shown(
    publish: Callable[[], None], check: Callable[[], None], timeout: float = 15
) -> None:
    """Publish, then look in the browser; again until it shows (the bridge may still be
    subscribing to the building when the first message goes out)."""
    deadline = time.monotonic() + timeout
    while True:
        publish()
        try:
            check()
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise


def interruptible() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def signal_state(pid: int) -> str:
    """The Sig* lines of ``/proc/<pid>/status``: a stop that never began shows why here."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return ""
    return "".join(
        line + "\n" for line in status.splitlines() if line.startswith(("Sig", "ShdPnd"))
    )
