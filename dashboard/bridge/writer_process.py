"""History batches written in a child process instead of a thread of the bridge.

The ORM's and the database driver's Python work per row holds the GIL that the MQTT
sessions' event loop needs; in a process of its own it does not (docs/benchmarks.md,
"Ingest"). The child (``python -m dashboard.bridge.writer_process``) is started on the
first batch and again after it died; batches and answers cross its stdin and stdout as
length-prefixed pickles (the child is ours and trusts only its parent).
"""

from __future__ import annotations

import contextlib
import copyreg
import dataclasses
import io
import logging
import operator
import os
import pickle
import signal
import struct
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from dashboard.live.state import HeadcountValue, MetaValue

logger = logging.getLogger(__name__)

STOP_TIMEOUT = 30.0  # for the child's last batch, then it is killed
_LENGTH = struct.Struct("!Q")
ROOT = Path(__file__).resolve().parents[2]

Batch = list[tuple[uuid.UUID, object]]


def _by_fields(cls: type) -> Callable[[Any], tuple[type, tuple[Any, ...]]]:
    fields = operator.attrgetter(*(field.name for field in dataclasses.fields(cls)))
    return lambda record: (cls, fields(record))


# Pickling runs in a thread that holds the GIL the event loop needs, so it is kept cheap: a
# UUID pickles through a __getstate__ that reads an enum property, and a slots dataclass
# through copyreg's generic state; as an int and as a tuple of fields they cost a third
# (10.6 -> 3.7 µs per meta value; docs/benchmarks.md, "Ingest") and unpickle equal.
_DISPATCH = copyreg.dispatch_table.copy()
_DISPATCH[uuid.UUID] = lambda value: (uuid.UUID, (None, None, None, None, value.int))
_DISPATCH[MetaValue] = _by_fields(MetaValue)  # the bulk of every batch
_DISPATCH[HeadcountValue] = _by_fields(HeadcountValue)


def _send(stream: IO[bytes], obj: Any) -> None:
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = _DISPATCH
    pickler.dump(obj)
    data = buffer.getvalue()
    stream.write(_LENGTH.pack(len(data)) + data)
    stream.flush()


def _receive(stream: IO[bytes]) -> Any:
    header = stream.read(_LENGTH.size)
    if len(header) < _LENGTH.size:
        raise EOFError("the other end closed")
    (size,) = _LENGTH.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("the other end closed mid-message")
    return pickle.loads(data)  # only ever from our own parent or child


class WriterProcess:
    """Sends each batch to the child and blocks the calling (executor) thread for its answer."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def write(self, batch: Batch) -> int:
        """Rows written; raises when the child could not write the batch (it is retried)."""
        if self._process is None or self._process.poll() is not None:
            self._start()
        assert self._process is not None and self._process.stdin and self._process.stdout
        try:
            _send(self._process.stdin, batch)
            ok, result = _receive(self._process.stdout)
        except (EOFError, OSError) as exc:
            self.stop()
            raise RuntimeError(f"history writer process ended: {exc}") from None
        if not ok:
            raise RuntimeError(result)
        return result

    def _start(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", __name__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=ROOT,
        )

    def stop(self) -> None:
        """Let the child finish its batch and exit; kill it if it does not in time."""
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(OSError):
            process.stdin.close()  # type: ignore[union-attr]
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            logger.error("history writer process did not stop; killing it")
            process.kill()
            process.wait()
        process.stdout.close()  # type: ignore[union-attr]


def main() -> None:
    """The child: write each batch and answer (ok, rows or error) until stdin closes."""
    # Ctrl-C and a service manager's SIGTERM reach the whole process group; the parent
    # decides when history is done, so that its last batch is not lost mid-write.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    requests, answers = sys.stdin.buffer, os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed goes to stderr, never into the answers
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gooee_site.settings")
    import django

    django.setup()
    from django.db import close_old_connections, connections

    from dashboard.live import gc_tuning, store

    gc_tuning.tune(ingest_only=True)
    while True:
        try:
            batch = _receive(requests)
        except EOFError:  # the parent stopped us, or is gone
            break
        try:
            close_old_connections()  # a database that went away is reconnected, not reused
            answer: tuple[bool, Any] = (True, store.write_batch(batch))
        except Exception as exc:
            answer = (False, f"{type(exc).__name__}: {exc}")
        try:
            _send(answers, answer)
        except BrokenPipeError:
            # The parent was killed after handing over the batch (written, or not: its next
            # holder starts from the database either way). Nobody to answer, nothing to say;
            # leave at once, as a closing flush would hit the same pipe.
            connections.close_all()
            os._exit(0)
    connections.close_all()


if __name__ == "__main__":
    main()
