"""What the reliability tests share: the benchmark's stack (a private Mosquitto and
``manage.py serve`` as deployed), and what they check on it afterwards.

The stack, the publisher and the page clients are the benchmark harness's own
(``bench/harness.py``, ``bench/freshness.py``, ``bench/clients.py``; docs/benchmarks.md);
these tests only add the situations (a page that stops reading, half an hour of load) and
the verdicts (docs/reliability.md).
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bench.clients import PageClient
from bench.freshness import Stream, final_share
from bench.harness import Stack
from tests import brokers

# What the server must never print while it serves: logged errors and uncaught exceptions.
TROUBLE = re.compile(r"\bERROR\b|Traceback|CRITICAL")
STOP_SECONDS = 20.0  # as tests.served.ServedDashboard.stop waits after Ctrl-C


@contextmanager
def served_stack(directory: Path) -> Iterator[Stack]:
    """A private Mosquitto and ``manage.py serve`` with its bridge, as the benchmarks run it."""
    if brokers.find_mosquitto() is None:
        pytest.fail("mosquitto not found: install Debian's mosquitto package (see README)")
    # Ctrl-C reaches serve however pytest was started (tests.served.interruptible).
    stack = Stack(directory).start()
    try:
        yield stack
    finally:
        stuck = stop_as_a_person_does(stack)
        stack.stop()
        if stuck:
            pytest.fail(stuck)


def stop_as_a_person_does(stack: Stack) -> str:
    """Ctrl-C the server; when it has not stopped after STOP_SECONDS, what it was doing
    (py-spy's dump of every thread) and its last output, and it is killed."""
    process = stack.served.process if stack.served is not None else None
    if process is None or process.poll() is not None:
        return ""
    process.send_signal(signal.SIGINT)
    try:
        process.wait(STOP_SECONDS)
        return ""
    except subprocess.TimeoutExpired:
        pass
    dump = "(py-spy not installed)"
    py_spy = shutil.which("py-spy") or shutil.which("py-spy", path=Path(sys.executable).parent)
    if py_spy:
        dump = subprocess.run(
            [py_spy, "dump", "--pid", str(process.pid)], capture_output=True, text=True
        ).stdout
    process.kill()
    process.wait()
    return (
        f"serve did not stop within {STOP_SECONDS:g} s of Ctrl-C; it was doing:\n{dump}\n"
        f"its last output:\n{server_output(stack)[-3000:]}"
    )


def server_output(stack: Stack) -> str:
    assert stack.served is not None
    return "".join(stack.served.output)


def trouble_in(text: str) -> list[str]:
    """The lines of the server's output that report an error or an exception."""
    return [line for line in text.splitlines() if TROUBLE.search(line)]


def pages_missing_final_values(pages: list[PageClient], stream: Stream) -> dict[int, float]:
    """Page index -> percent of final values it shows, for every page not showing them all."""
    shares = {n: final_share(page.stats.latest, stream.last) for n, page in enumerate(pages)}
    return {n: share for n, share in shares.items() if share < 100.0}
